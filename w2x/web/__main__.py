"""``python -m w2x.web``: the same as ``w2x serve``."""
import sys

from w2x.web.cli import main

sys.exit(main())
