"""Shared test fixtures: where ../shared is, the model directory, and the backends.

Models come from $W2X_MODEL_DIR, falling back to ../shared/weights beside the checkout.
Where ../shared is absent (a user's fresh clone), the tests that need it skip with that
reason: modules and tests say so with ``needs_shared``, and a test that still reaches for a
file under ../shared is reported as skipped, not failed (``_skip_if_shared_is_missing``).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("W2X_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
MODEL_DIR = Path(os.environ.get("W2X_MODEL_DIR", SHARED / "weights"))
IMAGES = SHARED / "images"
REFERENCE = SHARED / "reference"

HAVE_SHARED = (SHARED / "reference" / "manifest.json").is_file()
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason=f"needs the shared test data at {SHARED}")

# Library code finds models through W2X_MODEL_DIR: point it at the shared weights (where
# there are none, leave it unset: the bundled models are found last, as for a user).
if MODEL_DIR.is_dir():
    os.environ["W2X_MODEL_DIR"] = str(MODEL_DIR)
else:
    os.environ.pop("W2X_MODEL_DIR", None)


# The user cache (downloaded models, parsed weights) is a fresh folder for the whole session,
# removed at exit: the tests never read nor write the real one.  Subprocesses inherit it.
_CACHE = tempfile.mkdtemp(prefix="w2x-test-cache-")
os.environ["W2X_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def _skip_if_shared_is_missing(outcome) -> None:
    """Without ../shared, a test (or its fixture) that fails on a file under it (not found,
    or w2x's own "cannot read" error naming it) skips with that reason; with ../shared
    present nothing changes."""
    if HAVE_SHARED or outcome.excinfo is None:
        return
    error = outcome.excinfo[1]
    if isinstance(error, (OSError, ValueError, AssertionError)) and str(SHARED) in str(error):
        outcome.force_exception(pytest.skip.Exception(f"needs the shared test data at {SHARED}",
                                                      _use_item_location=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _skip_if_shared_is_missing((yield))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _skip_if_shared_is_missing((yield))


def available_backends() -> list:
    """numpy always; numba where installed; cupy (marked gpu) where a device exists."""
    from w2x.nn.backend import BackendUnavailableError, get_backend
    params = []
    for name in ("numpy", "numba", "cupy"):
        marks = [pytest.mark.gpu] if name == "cupy" else []
        try:
            get_backend(name)
        except BackendUnavailableError as e:
            marks.append(pytest.mark.skip(reason=str(e)))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=available_backends())
def backend(request) -> str:
    """The name of each compute backend usable here."""
    return request.param


def model_path(rel: str) -> Path:
    return MODEL_DIR / rel
