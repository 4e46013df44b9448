"""tools/layer_profile.py: its self-time accounting and its count of the multiplications each layer's
algorithm does, against hand counts (no timing: the clock is a fake)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from w2x.nn.backend import get_backend
from w2x.nn.layers import Conv2d, ConvTranspose2d
from w2x.nn.ops import WINOGRAD_TILES

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _profile_tool():
    sys.path.insert(0, str(TOOLS))      # layer_profile.py imports its sibling speed.py
    try:
        spec = importlib.util.spec_from_file_location("w2x_profile_tool", TOOLS / "layer_profile.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(TOOLS))
    return module


def test_self_time_excludes_the_timed_calls_inside(monkeypatch):
    tool = _profile_tool()
    clock = [0.0]
    monkeypatch.setattr(tool.time, "perf_counter", lambda: clock[0])
    timer = tool.SelfTimer()

    def tick(seconds):
        clock[0] += seconds

    inner = timer.wrap("gemm", lambda: tick(3.0))

    def outer_body():
        tick(1.0)
        inner()
        inner()
        tick(0.5)

    timer.wrap("winograd blocks (scratch, threads)", outer_body)()
    assert timer.seconds["gemm"] == 6.0
    assert timer.seconds["winograd blocks (scratch, threads)"] == 1.5


def test_counted_multiplications_follow_each_layers_algorithm():
    tool = _profile_tool()
    rng = np.random.default_rng(0)
    plain = Conv2d(rng.standard_normal((8, 4 * 9)).astype(np.float32), np.zeros(8, np.float32), 3)
    deconv = ConvTranspose2d(rng.standard_normal((3 * 16, 4)).astype(np.float32), np.zeros(3, np.float32), 4, 2, 3)
    x = rng.random((4, 2, 11, 10), dtype=np.float32)                 # (C, N, H, W): 9 x 8 outputs
    dense_conv = 8 * 4 * 9 * 2 * 9 * 8                               # OC * C * k*k * N * OH * OW
    numpy_be = get_backend("numpy")
    layers, counts = tool.counting_layers({"conv": plain.on(numpy_be), "deconv": deconv.on(numpy_be)})
    layers["conv"](x, numpy_be, None)                                # numpy: im2col + GEMM, dense
    assert counts == [dense_conv, dense_conv]
    layers["deconv"](x, numpy_be, None)                              # GEMM on every input pixel
    assert counts == [dense_conv + 3 * 16 * 4 * 2 * 11 * 10] * 2

    pytest.importorskip("numba")
    numba_be = get_backend("numba")
    layers, counts = tool.counting_layers({"conv": plain.on(numba_be)})
    layers["conv"](x, numba_be, None)
    m = WINOGRAD_TILES[plain.on(numba_be).winograd_u.shape[0]]      # 9 x 8 outputs in m x m tiles
    assert counts == [(m + 2) ** 2 * 8 * 4 * 2 * -(-9 // m) * -(-8 // m), dense_conv]


def test_every_winograd_transform_kernel_is_timed_as_a_transform():
    """A transform the tool does not wrap would be billed to "winograd blocks" unseen."""
    numba_kernels = pytest.importorskip("w2x.kernels.cpu_numba")
    transforms = {name for name in vars(numba_kernels)
                  if name.startswith("_winograd") and name.endswith(("_input", "_output", "_input_cl", "_output_cl"))}
    assert transforms and transforms <= set(_profile_tool().KERNEL_KINDS)


def test_every_backend_primitive_is_timed():
    """A primitive the tool does not wrap would be billed to "numpy glue" unseen."""
    from dataclasses import fields

    from w2x.nn.backend import Backend
    # the ones that put a model on the backend (``Model.on``) run before any forward
    preparing = {"to_device", "to_host", "winograd_panels"}
    primitives = {f.name for f in fields(Backend) if "Callable" in str(f.type)} - preparing
    assert primitives and primitives <= set(_profile_tool().PRIMITIVE_KINDS)
