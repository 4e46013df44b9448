"""tools/train_twin.py: 10 Adam steps of w2x agree with PyTorch autograd + torch.optim.Adam."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="PyTorch not installed (the twin is an optional reference)")

TWIN_TOL = 1e-5   # the bound; float64 on both sides gives ~1e-13


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vgg_7", "upconv_7"])
def test_ten_adam_steps_agree_with_pytorch(arch):
    spec = importlib.util.spec_from_file_location("train_twin", Path(__file__).parents[1] / "tools/train_twin.py")
    twin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twin)
    import torch
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        worst, moved = twin.compare(arch, steps=10)
    finally:
        torch.set_default_dtype(old)
    assert moved > 100 * TWIN_TOL          # the weights did move: the agreement means something
    assert worst <= TWIN_TOL
