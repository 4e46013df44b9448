"""Pictures of every layer's output for one image: ``w2x visualize`` as a script
(the original's tools/visualize_layer_output.lua).

    python tools/visualize.py -i docs/sample.jpg -o layer_outputs --model upconv_7/photo/scale2.0x
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from w2x.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["visualize", *sys.argv[1:]]))
