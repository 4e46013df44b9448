"""Network stage: where the kernels are, installed or in a source checkout.

The top-level ``kernels/`` folder holds the Numba kernels (``cpu_numba.py``) and the CUDA
sources (``*.cu``).  ``pip install`` ships it as the package ``w2x.kernels``
(pyproject.toml ``package-dir``); a checkout run with ``PYTHONPATH=.`` has no such package.
``package()`` takes the folder beside ``w2x/`` when there is one (so code and kernels come
from the same tree even where another w2x is installed) and registers it under that name,
else the installed package.  Either way the rest of w2x imports ``w2x.kernels.cpu_numba``
and reads ``*.cu`` through ``importlib.resources``, and a missing *dependency* (Numba) is not
mistaken for a missing folder.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = "w2x.kernels"
CHECKOUT_DIR = Path(__file__).resolve().parents[2] / "kernels"   # w2x/nn/ -> repository root


def package() -> ModuleType:
    """The ``w2x.kernels`` package: the checkout's ``kernels/``, else the installed one."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    init = CHECKOUT_DIR / "__init__.py"
    if not (init.is_file() and (CHECKOUT_DIR / "cpu_numba.py").is_file()):
        try:
            return importlib.import_module(PACKAGE)
        except ModuleNotFoundError as e:
            if e.name != PACKAGE:
                raise
            raise ModuleNotFoundError(f"no {PACKAGE} package and no kernels folder at {CHECKOUT_DIR}; "
                                      "reinstall w2x", name=PACKAGE) from None
    spec = importlib.util.spec_from_file_location(PACKAGE, init,
                                                  submodule_search_locations=[str(CHECKOUT_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


def module(name: str) -> ModuleType:
    """Import ``w2x.kernels.<name>`` (ImportError names a missing dependency such as numba)."""
    package()
    return importlib.import_module(f"{PACKAGE}.{name}")


def source(filename: str) -> str:
    """The text of ``kernels/<filename>`` (a ``.cu`` file)."""
    root = importlib.resources.files(package())
    return root.joinpath(filename).read_text(encoding="utf-8")
