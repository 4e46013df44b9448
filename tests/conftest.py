"""Shared test fixtures: where ../shared is, the model directory, and the backends.

Models come from $W2X_MODEL_DIR, falling back to ../shared/weights beside the checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("W2X_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
MODEL_DIR = Path(os.environ.get("W2X_MODEL_DIR", SHARED / "weights"))
IMAGES = SHARED / "images"
REFERENCE = SHARED / "reference"

# Library code finds models through W2X_MODEL_DIR: point it at the shared weights.
os.environ["W2X_MODEL_DIR"] = str(MODEL_DIR)


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
