"""The package version: the installed distribution's, else pyproject.toml's in a checkout."""
from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _version() -> str:
    try:
        return importlib.metadata.version("w2x")
    except importlib.metadata.PackageNotFoundError:     # a plain checkout on sys.path
        pass
    try:
        found = re.search(r'^version\s*=\s*"([^"]+)"', _PYPROJECT.read_text(encoding="utf-8"), re.M)
    except OSError:
        found = None
    return found.group(1) if found else "unknown"


__version__ = _version()
