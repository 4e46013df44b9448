"""The CPU twins' primitives (numba, ``kernels/cpu_numba.py``) against their ``w2x/nn/ops.py``
reference twins; the CuPy twins have theirs in tests/test_cuda.py.

One test body per primitive, over the CPU backends that are not the reference itself.
Shapes are random and include the edges: 1x1 outputs, odd sizes with stride 2, one channel,
several tiles, non-contiguous views.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import available_backends
from w2x.nn import ops
from w2x.nn.backend import get_backend

TWIN_BACKENDS = [p for p in available_backends() if p.id not in ("numpy", "cupy")]

# im2col, crop_add, se_scale and bias_leaky_relu are single IEEE operations per element
# (copy, add, multiply, add then max): any correct kernel is bit-identical.
EXACT = 0.0
# col2im sums <= kh*kw/stride^2 (<= 4 here) O(1) terms; the numba kernel gathers them in
# the reference's (i, j) order, but the compiler may contract or reorder the adds.
COL2IM_ATOL = 1e-5
# channel_mean: float32 means of O(1) values summed in another order (NumPy sums pairwise).
MEAN_RTOL = 1e-5
# float32 GEMM / Winograd vs float64: K <= 576 products of O(1) terms, ~1e-6 rounding each
# way; Winograd's transforms add a few more roundings of the same size, F(4x4)'s larger
# coefficients (B^T up to 5, A^T up to 8) more, F(6x6)'s (B^T up to 21, A^T up to 32) more
# still (measured: F(2x2) <= 1.0e-6, F(4x4) <= 4.1e-6, F(6x6) <= 1.5e-5 on these cases,
# padded or not; tools/winograd_error.py: up to 3e-5 and 1e-4 on 128-input-channel layers).
GEMM_ATOL = 1e-4
WINOGRAD_TILES = (2, 4, 6)   # F(2x2, 3x3), F(4x4, 3x3) and F(6x6, 3x3)
CHANNEL_LAST_TILES = (4, 6)  # those with channel-last transforms


def _rng(seed):
    return np.random.default_rng(seed)


def _randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _on(be, *arrays):
    """Copies on the backend's device (never the caller's arrays: some primitives work in place)."""
    return [be.to_device(np.array(a, dtype=np.float32, order="C")) for a in arrays]


IM2COL_CASES = [  # (C, N, H, W, k, stride)
    (3, 1, 9, 11, 3, 1), (4, 2, 8, 8, 2, 2), (2, 3, 7, 9, 2, 2), (1, 1, 3, 3, 3, 1),
    (5, 2, 7, 6, 3, 2), (6, 1, 5, 5, 1, 1), (2, 2, 4, 13, 4, 1),
]


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("case", IM2COL_CASES, ids=str)
def test_im2col_matches_reference(backend, case):
    c, n, h, w, k, s = case
    be = get_backend(backend)
    x = _randn(_rng(1), c, n, h, w)
    got = be.to_host(be.im2col(*_on(be, x), k, k, s))
    np.testing.assert_array_equal(got, ops.im2col(x, k, k, s))


def test_numba_im2col_reads_non_contiguous_views():
    pytest.importorskip("numba")
    be = get_backend("numba")
    x = _randn(_rng(2), 4, 2, 12, 12)[:, :, 1:10, 2:11]      # (C, N, 9, 9) strided view
    np.testing.assert_array_equal(be.im2col(x, 3, 3, 2), ops.im2col(x, 3, 3, 2))


COL2IM_CASES = [  # (OC, N, H, W, k, stride, pad)
    (3, 1, 6, 5, 4, 2, 3),     # upconv_7's last layer (FullConv 4x4 s2 p3)
    (4, 2, 4, 4, 2, 2, 0),     # the cunet branch up (FullConv 2x2 s2)
    (2, 1, 5, 7, 3, 1, 1), (2, 2, 3, 6, 4, 2, 0), (4, 1, 7, 4, 3, 2, 1),
    (1, 1, 1, 1, 4, 2, 1),     # a 1x1 input: one scattered 2x2 patch
]


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("case", COL2IM_CASES, ids=str)
def test_col2im_matches_reference(backend, case):
    oc, n, h, w, k, s, pad = case
    be = get_backend(backend)
    cols = _randn(_rng(3), oc * k * k, n * h * w)
    got = be.to_host(be.col2im(*_on(be, cols), (oc, n, h, w), k, k, s, pad))
    np.testing.assert_allclose(got, ops.col2im(cols, (oc, n, h, w), k, k, s, pad), rtol=0, atol=COL2IM_ATOL)


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("slope", [0.1, None])
@pytest.mark.parametrize("case", COL2IM_CASES + [(3, 2, 23, 9, 4, 2, 3), (16, 1, 30, 7, 2, 2, 0)], ids=str)
def test_conv_transpose_matches_reference(backend, slope, case, monkeypatch):
    """Also with blocks of 1-3 output rows (a tiny DECONV_BLOCK_BYTES), whose input rows
    overlap where 4x4 kernels do."""
    oc, n, h, w, k, s, pad = case
    be = get_backend(backend)
    if getattr(be, "conv_transpose", None) is None:
        pytest.skip(f"backend {backend!r} has no fused conv_transpose")
    rng = _rng(13)
    c = 5
    x, wt, bias = _randn(rng, c, n, h, w), _randn(rng, oc * k * k, c), _randn(rng, oc)
    want = ops.conv_transpose(x, wt, bias, k, s, pad, slope)
    got = be.to_host(be.conv_transpose(*_on(be, x, wt, bias), k, s, pad, slope))
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=GEMM_ATOL)
    if backend == "numba":
        from w2x.nn import kernel_files
        monkeypatch.setattr(kernel_files.module("cpu_numba"), "DECONV_BLOCK_BYTES", 1)
        small = be.conv_transpose(*_on(be, x, wt, bias), k, s, pad, slope)
        np.testing.assert_allclose(small, want, rtol=0, atol=GEMM_ATOL)


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("slope", [0.1, 0.0, None])
@pytest.mark.parametrize("shape", [(5, 2, 7, 9), (3, 1000), (7, 1, 1, 1)], ids=str)
def test_bias_leaky_relu_matches_reference_in_place(backend, slope, shape):
    be = get_backend(backend)
    rng = _rng(4)
    y, bias = _randn(rng, *shape), _randn(rng, shape[0])
    yd, bd = _on(be, y, bias)
    out = be.bias_leaky_relu(yd, bd, slope)
    assert out is yd
    np.testing.assert_array_equal(be.to_host(yd), ops.bias_leaky_relu(y.copy(), bias, slope))


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("shape", [(64, 2, 9, 11), (3, 1, 1, 1), (8, 3, 256, 200)], ids=str)
def test_channel_mean_matches_reference(backend, shape):
    be = get_backend(backend)
    x = _rng(5).random(shape, dtype=np.float32)
    got = be.to_host(be.channel_mean(*_on(be, x)))
    assert got.shape == shape[:2] and got.dtype == np.float32
    np.testing.assert_allclose(got, ops.channel_mean(x), rtol=MEAN_RTOL)


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
def test_se_scale_matches_reference_in_place(backend):
    be = get_backend(backend)
    rng = _rng(6)
    x, z = _randn(rng, 6, 3, 5, 4), rng.random((6, 3), dtype=np.float32)
    xd, zd = _on(be, x, z)
    assert be.se_scale(xd, zd) is xd
    np.testing.assert_array_equal(be.to_host(xd), ops.se_scale(x.copy(), z))


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("crop", [0, 4, 20])
def test_crop_add_matches_reference_and_returns_a_new_array(backend, crop):
    be = get_backend(backend)
    rng = _rng(7)
    a, b = _randn(rng, 4, 2, 6, 5), _randn(rng, 4, 2, 6 + 2 * crop, 5 + 2 * crop)
    ad, bd = _on(be, a, b)
    got = be.crop_add(ad, bd, crop)
    assert got is not ad and got is not bd
    np.testing.assert_array_equal(be.to_host(got), ops.crop_add(a, b, crop))
    np.testing.assert_array_equal(be.to_host(ad), a)          # inputs untouched


@pytest.mark.parametrize("backend", ["numpy"] + TWIN_BACKENDS)
def test_primitives_read_channel_last_activations(backend):
    """What ``ops.py`` promises: an activation in channel-last memory order (a channel-last
    layer's output, ``ops.to_channels_last``) gives every primitive the values of the
    C-contiguous one, and those that work in place write into it."""
    be = get_backend(backend)
    rng = _rng(16)
    x, bias, z = _randn(rng, 6, 2, 9, 8), _randn(rng, 6), rng.random((6, 2), dtype=np.float32)
    last = ops.to_channels_last
    np.testing.assert_array_equal(be.im2col(last(x), 3, 3, 1), ops.im2col(x, 3, 3, 1))
    np.testing.assert_allclose(be.channel_mean(last(x)), ops.channel_mean(x), rtol=MEAN_RTOL)
    np.testing.assert_array_equal(be.crop_add(last(x[:, :, 2:-2, 2:-2]), last(x), 2),
                                  ops.crop_add(x[:, :, 2:-2, 2:-2], x, 2))
    for in_place, want in [(lambda y: be.bias_leaky_relu(y, bias, 0.1), ops.bias_leaky_relu(x.copy(), bias, 0.1)),
                           (lambda y: be.se_scale(y, z), ops.se_scale(x.copy(), z))]:
        y = last(x)
        assert in_place(y) is y
        np.testing.assert_array_equal(y, want)
    if be.conv_transpose is not None:
        wt = _randn(rng, 3 * 16, 6)
        np.testing.assert_allclose(be.conv_transpose(last(x), wt, bias[:3], 4, 2, 3, 0.1),
                                   ops.conv_transpose(x, wt, bias[:3], 4, 2, 3, 0.1), rtol=0, atol=GEMM_ATOL)


REGROUP_CASES = [  # (C, N, H, W, k): odd sizes (a row and a column past the last window), k = 3
    (5, 2, 9, 7, 2), (3, 1, 6, 6, 3), (16, 1, 12, 10, 2), (1, 3, 4, 5, 2),
]


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("case", REGROUP_CASES, ids=str)
@pytest.mark.parametrize("order", ["channel-major", "channel-last"])
def test_space_to_depth_and_depth_to_space_match_reference(backend, case, order):
    """The regroupings of a channel-last k x k stride-k conv and transposed conv, the latter
    with bias + LeakyReLU, also with their rows split between 3 workers."""
    be = get_backend(backend)
    if be.space_to_depth is None:
        pytest.skip(f"backend {backend!r} keeps no activations channel-last")
    c, n, h, w, k = case
    rng = _rng(19)
    x = _randn(rng, c, n, h, w)
    x = ops.to_channels_last(x) if order == "channel-last" else x
    p, bias = _randn(rng, n * h * w, k * k * 4), _randn(rng, 4)
    np.testing.assert_array_equal(be.space_to_depth(x, k), ops.space_to_depth(x, k))
    y = be.depth_to_space(p, (n, h, w), k, bias, 0.1)
    assert y.transpose(1, 2, 3, 0).flags.c_contiguous
    np.testing.assert_array_equal(y, ops.depth_to_space(p, (n, h, w), k, bias, 0.1))


def test_reference_space_to_depth_is_the_index_definition():
    x = _randn(_rng(20), 3, 2, 7, 5)
    k, oh, ow = 2, 3, 2
    cols = ops.space_to_depth(x, k)
    for n in range(2):
        for oy in range(oh):
            for ox in range(ow):
                for i in range(k):
                    for j in range(k):
                        for c in range(3):
                            assert cols[(n * oh + oy) * ow + ox, (i * k + j) * 3 + c] == x[c, n, oy * k + i, ox * k + j]


MATMUL_CASES = [  # (M, K, N): SE 1x1 (N = tiles), the deconv GEMM, a wide split one, K = 1,
    # a long-K backward product split by rows
    (8, 64, 3), (48, 256, 1000), (32, 27, 70001), (5, 1, 9000), (257, 3000, 27),
]


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("case", MATMUL_CASES, ids=str)
def test_matmul_matches_float64(backend, case):
    m, k, n = case
    be = get_backend(backend)
    rng = _rng(8)
    a, b = _randn(rng, m, k) / np.float32(np.sqrt(k)), _randn(rng, k, n)
    got = be.to_host(be.matmul(*_on(be, a, b)))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=0, atol=GEMM_ATOL)


def _conv3x3_float64(x, w2d, bias, slope):
    """Valid 3x3 stride-1 conv through the reference im2col, in float64."""
    c, n, h, w = x.shape
    y = w2d.astype(np.float64) @ ops.im2col(x.astype(np.float64), 3, 3, 1) + bias[:, None]
    if slope is not None:
        y = np.maximum(y, y * slope)
    return y.reshape(-1, n, h - 2, w - 2)


WINOGRAD_CASES = [  # (C, N, H, W, OC): outputs that are and are not whole 2x2 / 4x4 tiles,
    # a 1x1 output, several blocks
    (3, 1, 10, 10, 32), (16, 2, 9, 12, 8), (1, 1, 3, 3, 1), (4, 3, 4, 3, 5), (64, 2, 66, 37, 64),
    (8, 1, 7, 13, 4), (5, 2, 6, 6, 3),
]


def _winograd_backend(name):
    be = get_backend(name)
    if getattr(be, "winograd_conv3x3", None) is None:
        pytest.skip(f"backend {name!r} has no winograd_conv3x3 (backend.py without the field)")
    return be


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("tile", WINOGRAD_TILES)
@pytest.mark.parametrize("slope", [0.1, None])
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=str)
def test_winograd_conv3x3_matches_float64_convolution(backend, tile, slope, case):
    c, n, h, w, oc = case
    be = _winograd_backend(backend)
    rng = _rng(9)
    x, w2d, bias = rng.random((c, n, h, w), dtype=np.float32), _randn(rng, oc, c * 9) / np.float32(np.sqrt(c * 9)), _randn(rng, oc)
    u = ops.winograd_weight(w2d, c, tile)
    got = be.to_host(be.winograd_conv3x3(*_on(be, x, u, bias), slope))
    assert got.shape == (oc, n, h - 2, w - 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, _conv3x3_float64(x, w2d, bias, slope), rtol=0, atol=GEMM_ATOL)


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("tile", WINOGRAD_TILES)
@pytest.mark.parametrize("pad", [1, 2, 4])
def test_winograd_conv3x3_reads_its_padding_as_zeros(backend, tile, pad):
    """``pad`` (the input gradient's dY padded by 2): the same as the valid conv of x padded."""
    be = _winograd_backend(backend)
    rng = _rng(12)
    for c, n, h, w, oc in WINOGRAD_CASES:
        x, w2d, bias = rng.random((c, n, h, w), dtype=np.float32), _randn(rng, oc, c * 9) / np.float32(np.sqrt(c * 9)), _randn(rng, oc)
        u = ops.winograd_weight(w2d, c, tile)
        got = be.to_host(be.winograd_conv3x3(*_on(be, x, u, bias), 0.1, pad=pad))
        padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        assert got.shape == (oc, n, h + 2 * pad - 2, w + 2 * pad - 2)
        np.testing.assert_allclose(got, _conv3x3_float64(padded, w2d, bias, 0.1), rtol=0, atol=GEMM_ATOL)


@pytest.mark.parametrize("backend", TWIN_BACKENDS)
@pytest.mark.parametrize("tile", CHANNEL_LAST_TILES)
@pytest.mark.parametrize("order", ["read", "written", "both", "both, packed"])
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_winograd_conv3x3_in_channel_last_order_matches_float64_convolution(backend, tile, order, pad):
    """x read channel-last, y written channel-last (``channels_last``, u transposed), or
    both: the same convolution, and y in the memory order asked for.  "packed": u in the
    backend's own form (``winograd_panels``: on numba, packed for kernels/cpu_gemm.py where
    OC is a multiple of its panel width, as OC = 32 and 64 are here)."""
    be = _winograd_backend(backend)
    if not be.channels_last:
        pytest.skip(f"backend {backend!r} writes no channel-last output")
    rng = _rng(14)
    for c, n, h, w, oc in WINOGRAD_CASES:
        x, w2d, bias = rng.random((c, n, h, w), dtype=np.float32), _randn(rng, oc, c * 9) / np.float32(np.sqrt(c * 9)), _randn(rng, oc)
        written = order != "read"
        xd = ops.to_channels_last(x) if order != "written" else x
        u = ops.winograd_weight(w2d, c, tile, channels_last=written)
        if order.endswith("packed"):
            u = be.winograd_panels(u)
        got = be.winograd_conv3x3(xd, u, bias, 0.1, pad=pad, channels_last=written)
        assert (got.transpose(1, 2, 3, 0) if written else got).flags.c_contiguous
        padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        np.testing.assert_allclose(be.to_host(got), _conv3x3_float64(padded, w2d, bias, 0.1), rtol=0, atol=GEMM_ATOL)


def test_numba_winograd_orders_and_shapes(numba_backend):
    """F(2x2) has no channel-last kernels: asking for that output is an error, and a
    channel-last input is read through a channel-major copy.  F(4x4) reads a channel-major
    x (a first layer) as it lies, F(6x6) through a channel-last copy.  A u whose shape does
    not fit x and ``channels_last`` is refused."""
    rng = _rng(15)
    x, w2d, bias = rng.random((4, 1, 9, 9), dtype=np.float32), _randn(rng, 3, 36), _randn(rng, 3)
    want = _conv3x3_float64(x, w2d, bias, 0.1)
    with pytest.raises(ValueError, match="channel-major output"):
        numba_backend.winograd_conv3x3(x, ops.winograd_weight(w2d, 4, 2, channels_last=True), bias, 0.1,
                                       channels_last=True)
    for tile, xd in [(2, ops.to_channels_last(x)), (4, x), (6, x)]:
        got = numba_backend.winograd_conv3x3(xd, ops.winograd_weight(w2d, 4, tile, channels_last=tile > 2), bias,
                                             0.1, channels_last=tile > 2)
        np.testing.assert_allclose(got, want, rtol=0, atol=GEMM_ATOL)
    with pytest.raises(ValueError, match="expected u of shape"):
        numba_backend.winograd_conv3x3(x, ops.winograd_weight(w2d, 4, 4), bias, 0.1, channels_last=True)
    # packed weights (winograd_panels) write channel-major where asked, and must fit x too
    from w2x.kernels.cpu_gemm import NR
    w2d, bias = _randn(rng, NR, 36) / 6, _randn(rng, NR)
    packed = numba_backend.winograd_panels(ops.winograd_weight(w2d, 4, 6, channels_last=True))
    got = numba_backend.winograd_conv3x3(x, packed, bias, 0.1)
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, _conv3x3_float64(x, w2d, bias, 0.1), rtol=0, atol=GEMM_ATOL)
    with pytest.raises(ValueError, match="expected u of shape"):
        numba_backend.winograd_conv3x3(x[:3], packed, bias, 0.1, channels_last=True)
    f2 = ops.winograd_weight(w2d, 4, 2, channels_last=True)                  # (16, C, OC)
    with pytest.raises(ValueError, match="packed u .* F.2x2. takes u"):
        numba_backend.winograd_conv3x3(x, numba_backend.cpu_gemm.panels(f2), bias, 0.1)


# --- numba only: kernels/cpu_gemm.py, the products by packed weights ---------------------------
PANEL_CASES = [  # (P, M, K, panels): M below, at and past the kernel's MR = 6 rows, not a
    # multiple of it (the last rows by a smaller kernel); K = 1 and odd K; several panels
    (1, 1, 1, 1), (1, 2, 5, 1), (2, 5, 3, 1), (3, 6, 17, 2), (2, 10, 9, 3), (2, 13, 64, 1), (4, 42, 128, 4),
    (2, 63, 32, 2), (1, 7, 256, 8),
]


@pytest.mark.parametrize("case", PANEL_CASES, ids=str)
def test_panel_matmul_matches_float64(case):
    """On stacks laid out as a Winograd block's (``cpu_numba._stack``: each matrix
    C-contiguous, matrices further apart than their size), and on a stack of transposed
    views, which it copies."""
    cpu_gemm = pytest.importorskip("w2x.kernels.cpu_gemm")
    p, m, k, s = case
    n = s * cpu_gemm.NR
    rng = _rng(sum(case))
    a_rows = _randn(rng, p, m * k + 24)                          # 24 values of skew after each matrix
    a = a_rows[:, :m * k].reshape(p, m, k)                       # (P, M*K + 24) -> (P, M, K) view
    b = _randn(rng, p, k, n) / np.float32(np.sqrt(k))
    out_rows = np.full((p, m * n + 24), np.nan, np.float32)
    out = out_rows[:, :m * n].reshape(p, m, n)                   # (P, M*N + 24) -> (P, M, N) view
    want = a.astype(np.float64) @ b
    assert cpu_gemm.panel_matmul(a, cpu_gemm.panels(b), out) is out
    np.testing.assert_allclose(out, want, rtol=0, atol=GEMM_ATOL)
    assert np.isnan(out_rows[:, m * n:]).all()                   # nothing written past a matrix
    a_t = np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1)   # rows not contiguous
    np.testing.assert_allclose(cpu_gemm.panel_matmul(a_t, cpu_gemm.panels(b), np.empty((p, m, n), np.float32)),
                               want, rtol=0, atol=GEMM_ATOL)


def test_panels_are_the_weights_regrouped_and_checked():
    cpu_gemm = pytest.importorskip("w2x.kernels.cpu_gemm")
    nr = cpu_gemm.NR
    b = _randn(_rng(16), 3, 5, 2 * nr)
    bp = cpu_gemm.panels(b)
    assert bp.shape == (3, 2, 5, nr) and bp.flags.c_contiguous
    np.testing.assert_array_equal(bp[1, 1], b[1, :, nr:])         # panel s: columns s*NR to (s+1)*NR
    np.testing.assert_array_equal(cpu_gemm.unpanel(bp), b)
    assert cpu_gemm.fits(2 * nr) and not cpu_gemm.fits(nr + 3)
    with pytest.raises(ValueError, match="not a multiple of the panel width"):
        cpu_gemm.panels(b[:, :, :nr + 3])
    a = _randn(_rng(17), 3, 4, 5)
    with pytest.raises(ValueError, match="needs panels"):
        cpu_gemm.panel_matmul(a, bp, np.empty((3, 4, nr), np.float32))
    with pytest.raises(ValueError, match="needs panels"):
        cpu_gemm.panel_matmul(a[:, :, :4], bp, np.empty((3, 4, 2 * nr), np.float32))
    with pytest.raises(ValueError, match="each matrix C-contiguous"):
        cpu_gemm.panel_matmul(a, bp, np.empty((3, 2 * nr, 4), np.float32).transpose(0, 2, 1))
    with pytest.raises(ValueError, match="panels must be C-contiguous float32"):
        cpu_gemm.panel_matmul(a, bp.astype(np.float64), np.empty((3, 4, 2 * nr), np.float32))
    with pytest.raises(ValueError, match="expected a"):
        cpu_gemm.panel_matmul(a[0], bp, np.empty((3, 4, 2 * nr), np.float32))
    for bad_out in (np.empty((3, 4, 2 * nr)),                                            # float64
                    np.broadcast_to(np.empty((1, 4, 2 * nr), np.float32), (3, 4, 2 * nr)),  # read-only, overlapping
                    np.lib.stride_tricks.as_strided(np.empty(4 * 2 * nr + 8, np.float32), (3, 4, 2 * nr),
                                                    (32, 8 * nr, 4))):                      # matrices overlap
        with pytest.raises(ValueError, match="out must be writeable float32"):
            cpu_gemm.panel_matmul(a, bp, bad_out)
    empty = np.empty((3, 0, 2 * nr), np.float32)
    assert cpu_gemm.panel_matmul(a[:, :0], bp, empty) is empty


def test_gemm_kernel_takes_the_features_numba_compiles_for(monkeypatch):
    """$NUMBA_CPU_FEATURES (a cache shared between machines; "" with NUMBA_CPU_NAME=generic)
    decides the vector width and whether the kernel runs at all, not the host's features."""
    cpu_gemm = pytest.importorskip("w2x.kernels.cpu_gemm")
    from numba.core import config
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma,-avx512f")
    assert cpu_gemm._compiled_for() >= {"avx2", "fma"} and "avx512f" not in cpu_gemm._compiled_for()
    monkeypatch.setattr(config, "CPU_FEATURES", "")
    assert cpu_gemm._compiled_for() == set()


def test_panel_matmul_reads_an_a_that_shares_out_before_writing_it():
    """As ``np.matmul`` does: a product written over its own left operand is still a @ b."""
    cpu_gemm = pytest.importorskip("w2x.kernels.cpu_gemm")
    n = cpu_gemm.NR
    a = _randn(_rng(19), 2, 9, n)
    b = _randn(_rng(20), 2, n, n) / np.float32(np.sqrt(n))
    want = a.astype(np.float64) @ b
    np.testing.assert_allclose(cpu_gemm.panel_matmul(a, cpu_gemm.panels(b), a), want, rtol=0, atol=GEMM_ATOL)


def test_numba_winograd_panels_pack_only_what_the_kernel_can_multiply(numba_backend, monkeypatch):
    """``winograd_panels``: a weight with OC a multiple of the panel width packed, any other
    (an image layer's 1 or 3 outputs) left to BLAS as it is, and every weight on a CPU
    without fused multiply-add."""
    from w2x.kernels import cpu_gemm
    u = _randn(_rng(18), 36, 8, 2 * cpu_gemm.NR)
    image = _randn(_rng(18), 36, 8, 3)
    assert numba_backend.winograd_panels(image) is image
    monkeypatch.setattr(cpu_gemm, "HAS_FMA", False)
    assert numba_backend.winograd_panels(u) is u
    monkeypatch.setattr(cpu_gemm, "HAS_FMA", True)
    np.testing.assert_array_equal(cpu_gemm.unpanel(numba_backend.winograd_panels(u)), u)


@pytest.mark.parametrize("tile", WINOGRAD_TILES)
def test_reference_winograd_conv3x3_matches_float64_convolution(tile):
    rng = _rng(10)
    for c, n, h, w, oc in WINOGRAD_CASES:
        x, w2d, bias = rng.random((c, n, h, w), dtype=np.float32), _randn(rng, oc, c * 9) / np.float32(np.sqrt(c * 9)), _randn(rng, oc)
        for pad in (0, 2):
            got = ops.winograd_conv3x3(x, ops.winograd_weight(w2d, c, tile), bias, 0.1, pad=pad)
            padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            np.testing.assert_allclose(got, _conv3x3_float64(padded, w2d, bias, 0.1), rtol=0, atol=GEMM_ATOL)
            last = ops.winograd_conv3x3(x, ops.winograd_weight(w2d, c, tile, channels_last=True), bias, 0.1,
                                        pad=pad, channels_last=True)
            assert last.transpose(1, 2, 3, 0).flags.c_contiguous
            np.testing.assert_array_equal(last, got)


# --- numba only: the worker threads and blocks ---------------------------------------------
@pytest.fixture
def numba_backend():
    pytest.importorskip("numba")
    from w2x.kernels import cpu_numba
    return cpu_numba


@pytest.mark.parametrize("tile, last, packed", [(t, False, False) for t in WINOGRAD_TILES]
                         + [(t, True, p) for t in CHANNEL_LAST_TILES for p in (False, True)])
def test_numba_winograd_is_the_same_for_any_block_size_and_thread_count(numba_backend, monkeypatch, tile, last,
                                                                         packed):
    """Bit for bit, in either memory order (``last``: read and written channel-last), the
    channel-last products by BLAS or by kernels/cpu_gemm.py (``packed``).  F(2x2)
    on a row of 8 tiles (8 * 2 output columns): OpenBLAS's sgemm rounds the last N % 8
    columns of a product in another order than the rest, and its products (OC, C) @ (C, tiles)
    have the tiles as N, so with other widths a block's GEMM may legitimately differ in the
    last bit from the whole one's.  F(4x4) and F(6x6) multiply (tiles, C) @ (C, OC): any
    width, padded by 1 here so that blocks meet the zero rows and the right edge."""
    import numba
    from w2x.kernels.cpu_gemm import NR
    be = _winograd_backend("numba")
    rng = _rng(11)
    width, pad = (8 * tile + 2, 0) if tile == 2 else (8 * tile - 3, 1)
    oc = 2 * NR if packed else 6
    x, w2d, bias = rng.random((8, 2, 21, width), dtype=np.float32), _randn(rng, oc, 72) / 8, _randn(rng, oc)
    x = ops.to_channels_last(x) if last else x
    u = ops.winograd_weight(w2d, 8, tile, channels_last=last)
    u = numba_backend.winograd_panels(u) if packed else u
    assert u.ndim == (4 if packed else 3)
    whole = be.winograd_conv3x3(x, u, bias, 0.1, pad=pad, channels_last=last)
    monkeypatch.setattr(numba_backend, "WINOGRAD_BLOCK_BYTES", 1)   # one tile row per block
    before = numba.get_num_threads()
    try:
        for threads in (1, before):
            numba.set_num_threads(threads)
            np.testing.assert_array_equal(be.winograd_conv3x3(x, u, bias, 0.1, pad=pad, channels_last=last), whole)
    finally:
        numba.set_num_threads(before)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    np.testing.assert_allclose(whole, _conv3x3_float64(padded, w2d, bias, 0.1), rtol=0, atol=GEMM_ATOL)


def test_numba_gemm_primitives_restore_the_blas_thread_count_under_concurrent_calls(numba_backend):
    if numba_backend._BLAS_THREADS is None:
        pytest.skip("NumPy's BLAS is not the bundled OpenBLAS: its threads are left alone")
    get, _ = numba_backend._BLAS_THREADS
    before = get()
    rng = _rng(12)
    a, b = _randn(rng, 16, 64), _randn(rng, 64, 50000)
    expected = a.astype(np.float64) @ b
    errors = []

    def call():
        for _ in range(5):
            errors.append(np.abs(numba_backend.matmul(a, b) - expected).max())

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 15 and max(errors) <= GEMM_ATOL
    assert get() == before


@pytest.mark.parametrize("case", MATMUL_CASES, ids=str)
def test_numba_matmul_runs_every_product_with_blas_at_one_thread(numba_backend, monkeypatch, case):
    """Split or not, no BLAS call of the primitive threads itself: OpenBLAS's threads would
    spin on the cores the worker threads need next."""
    if numba_backend._BLAS_THREADS is None:
        pytest.skip("NumPy's BLAS is not the bundled OpenBLAS: its threads are left alone")
    get, _ = numba_backend._BLAS_THREADS
    seen = []

    def gemm(*args, **kwargs):
        seen.append(get())
        return np.matmul(*args, **kwargs)

    monkeypatch.setattr(numba_backend, "_gemm", gemm)
    m, k, n = case
    rng = _rng(17)
    a, b = _randn(rng, m, k) / np.float32(np.sqrt(k)), _randn(rng, k, n)
    np.testing.assert_allclose(numba_backend.matmul(a, b), a.astype(np.float64) @ b, rtol=0, atol=GEMM_ATOL)
    np.testing.assert_allclose(numba_backend.matmul(a[None], b[None])[0], a.astype(np.float64) @ b,
                               rtol=0, atol=GEMM_ATOL)                  # a stack of products
    assert seen and set(seen) == {1}
    split = n >= numba_backend.MATMUL_SPLIT_MIN_COLUMNS or m >= numba_backend.MATMUL_SPLIT_MIN_ROWS
    assert (len(seen) > 2) == split             # the 2-D product in blocks, then the stack in one


def test_numba_winograd_stacks_are_skewed_views_of_their_rows(numba_backend):
    """Consecutive matrices of a stack start one cache line apart modulo 4 KiB, and the BLAS
    view reads what the kernels write at [k, row * cols + col]."""
    for rows, cols in [(64, 64), (128, 256), (3, 7), (256, 144)]:
        stack = numba_backend._stack("test_stack", 5, rows, cols)
        assert stack.flags.c_contiguous and stack.shape[1] * 4 % 4096 == 64
        stack[:] = np.arange(stack.size, dtype=np.float32).reshape(stack.shape)
        mats = numba_backend._matrices(stack, rows, cols)
        assert mats.shape == (5, rows, cols) and np.shares_memory(mats, stack)
        np.testing.assert_array_equal(mats, stack[:, :rows * cols].reshape(5, rows, cols))


@pytest.mark.parametrize("channels", [1, 2, 5])
@pytest.mark.parametrize("order", ["channel-major", "channel-last"])
def test_numba_elementwise_kernels_split_between_the_workers_are_their_twins(numba_backend, monkeypatch, channels, order):
    """Every copy and elementwise kernel with its work split between the workers (the
    threshold at 1 value: channel-major arrays by channels, channel-last ones by rows)
    against its ops.py twin, on activations in either memory order."""
    monkeypatch.setattr(numba_backend, "ELEMENTWISE_SPLIT_MIN", 1)
    monkeypatch.setattr(numba_backend, "_threads", lambda: 3)   # 3 ranges where 3+ channels or rows
    rng = _rng(18)
    x, b = _randn(rng, channels, 2, 9, 8), _randn(rng, channels, 2, 13, 12)
    if order == "channel-last":
        x, b = ops.to_channels_last(x), ops.to_channels_last(b)
    z, bias = _randn(rng, channels, 2), _randn(rng, channels)
    np.testing.assert_array_equal(numba_backend.im2col(x, 2, 2, 2), ops.im2col(x, 2, 2, 2))
    np.testing.assert_array_equal(numba_backend.im2col(x, 3, 3, 1), ops.im2col(x, 3, 3, 1))
    cols = _randn(rng, channels * 16, 2 * 9 * 8)
    np.testing.assert_allclose(numba_backend.col2im(cols, (channels, 2, 9, 8), 4, 4, 2, 1),
                               ops.col2im(cols, (channels, 2, 9, 8), 4, 4, 2, 1), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(numba_backend.bias_leaky_relu(x.copy(order="K"), bias, 0.1),   # "K": in x's order
                                  ops.bias_leaky_relu(x.copy(), bias, 0.1))
    np.testing.assert_allclose(numba_backend.channel_mean(x), ops.channel_mean(x), rtol=1e-6)
    np.testing.assert_array_equal(numba_backend.se_scale(x.copy(order="K"), z), ops.se_scale(x.copy(), z))
    np.testing.assert_array_equal(numba_backend.crop_add(x, b, 2), ops.crop_add(x, b, 2))
    np.testing.assert_array_equal(numba_backend.space_to_depth(b, 2), ops.space_to_depth(b, 2))
    p = _randn(rng, 2 * 9 * 8, 4 * channels)
    np.testing.assert_array_equal(numba_backend.depth_to_space(p, (2, 9, 8), 2, bias, 0.1),
                                  ops.depth_to_space(p, (2, 9, 8), 2, bias, 0.1))


def test_numba_matmul_works_without_blas_thread_control(numba_backend, monkeypatch):
    """Another BLAS than NumPy's bundled OpenBLAS: the blocks run on the calling thread only."""
    monkeypatch.setattr(numba_backend, "_BLAS_THREADS", None)
    rng = _rng(15)
    a, b = _randn(rng, 9, 40), _randn(rng, 40, 20000)
    np.testing.assert_allclose(numba_backend.matmul(a, b), a.astype(np.float64) @ b, rtol=0, atol=GEMM_ATOL)


@pytest.mark.parametrize("tile", WINOGRAD_TILES)
def test_numba_winograd_works_without_blas_thread_control(numba_backend, monkeypatch, tile):
    be = _winograd_backend("numba")
    monkeypatch.setattr(numba_backend, "_BLAS_THREADS", None)
    rng = _rng(16)
    x, w2d, bias = rng.random((5, 1, 30, 31), dtype=np.float32), _randn(rng, 7, 45) / 7, _randn(rng, 7)
    got = be.winograd_conv3x3(x, ops.winograd_weight(w2d, 5, tile), bias, None)
    np.testing.assert_allclose(got, _conv3x3_float64(x, w2d, bias, None), rtol=0, atol=GEMM_ATOL)
