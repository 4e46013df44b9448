"""Convolution and transposed convolution (im2col/col2im + GEMM) against loop references."""
from __future__ import annotations

import numpy as np
import pytest

from naive import conv2d_naive, conv_transpose2d_naive
from w2x.nn import ops
from w2x.nn.backend import get_backend
from w2x.nn.layers import KN2ROW_MIN_RATIO, Conv2d, ConvTranspose2d

# float32 GEMM vs float64 loops over <= 128*9 products of O(1) terms: ~1e-6 rounding.
FLOAT32_ATOL = 1e-4

CONV_CASES = [  # (N, C, H, W, OC, k, stride)
    (1, 3, 9, 11, 5, 3, 1), (2, 4, 8, 8, 3, 2, 2), (3, 6, 5, 7, 4, 1, 1),
    (1, 2, 13, 6, 2, 4, 1), (2, 1, 7, 9, 3, 3, 2),
    (2, 12, 9, 8, 3, 3, 1),  # C >= 4*OC: kn2row on the CPU backends
    (1, 5, 6, 10, 4, 3, 1),  # 3x3 stride 1: Winograd on numba, odd and even output sizes
    (1, 3, 7, 9, 4, 2, 2),   # k == stride on odd sizes: the last row and column unused
    (2, 7, 8, 11, 32, 3, 1),  # 32 outputs: written channel-last, numba packs the weight (winograd_panels)
]
DECONV_CASES = [  # (N, C, H, W, OC, k, stride, pad)
    (1, 4, 6, 5, 3, 4, 2, 3), (2, 3, 4, 4, 2, 2, 2, 0), (1, 2, 5, 7, 3, 3, 1, 1),
    (2, 5, 3, 6, 2, 4, 2, 0), (1, 3, 7, 4, 4, 3, 2, 1),
]


def _rng(seed):
    return np.random.default_rng(seed)


def test_im2col_matches_index_definition():
    x = _rng(0).standard_normal((3, 2, 7, 8)).astype(np.float32)  # (C, N, H, W)
    k, s = 3, 2
    cols = ops.im2col(x, k, k, s)
    oh, ow = ops.out_size(7, k, s), ops.out_size(8, k, s)
    for c in range(3):
        for i in range(k):
            for j in range(k):
                for n in range(2):
                    for r in range(oh):
                        for q in range(ow):
                            assert cols[(c * k + i) * k + j, (n * oh + r) * ow + q] == x[c, n, r * s + i, q * s + j]


ORDERS = ["channel-major", "channel-last"]   # an activation's memory order (ops.to_channels_last)


def _activation(x: np.ndarray, order: str, be) -> np.ndarray:
    """x (N, C, H, W) as a (C, N, H, W) activation on ``be`` in memory order ``order``."""
    x = np.ascontiguousarray(x.transpose(1, 0, 2, 3), dtype=np.float32)     # (C, N, H, W)
    return be.to_device(ops.to_channels_last(x) if order == "channel-last" else x)


def _leaky(y: np.ndarray, slope: float) -> np.ndarray:
    return np.maximum(y, slope * y)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("write_last", [False, True], ids=["write-major", "write-last"])
def test_conv2d_matches_naive_loop(case, backend, order, write_last):
    """Read in either memory order, and written channel-last where asked for and the backend
    can (on numba: Winograd layers, and k x k stride-k ones by ``_space_to_depth``), with
    LeakyReLU."""
    n, c, h, w, oc, k, s = case
    rng = _rng(sum(case))
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((oc, c, k, k))
    b = rng.standard_normal(oc)
    be = get_backend(backend)
    layer = Conv2d(wt.reshape(oc, -1).astype(np.float32), b.astype(np.float32), k, s).on(be, channels_last=write_last)
    # the path this backend takes: kn2row for narrow layers, Winograd for other 3x3 stride-1
    kn2row = be.kn2row and k > 1 and s == 1 and c >= KN2ROW_MIN_RATIO * oc
    assert (layer.kn2row_w is not None) == kn2row
    assert (layer.winograd_u is not None) == (be.winograd_conv3x3 is not None and k == 3 and s == 1 and not kn2row)
    can_write_last = layer.winograd_u is not None or k == s > 1
    assert layer.channels_last == (write_last and be.channels_last and can_write_last)
    y = layer(_activation(x, order, be), be, 0.1)                  # (OC, N, OH, OW)
    written = y.transpose(1, 2, 3, 0) if layer.channels_last else y   # as it lies in memory
    assert written.flags.c_contiguous
    y = be.to_host(y).transpose(1, 0, 2, 3)                          # (OC, N, ..) -> (N, OC, ..)
    np.testing.assert_allclose(y, _leaky(conv2d_naive(x, wt, b, s), 0.1), atol=FLOAT32_ATOL)


@pytest.mark.parametrize("c, oc, tile", [(16, 32, 4), (32, 32, 6), (64, 128, 6), (128, 256, 6), (256, 128, 4)])
def test_big_3x3_layers_take_the_bigger_winograd_tile(c, oc, tile):
    """``winograd_tile``: F(6x6) from 32 x 32 channels on (64 matrices), F(4x4) below and
    from 256 input channels on (36), and either matches the loop reference."""
    pytest.importorskip("numba")
    be = get_backend("numba")
    rng = _rng(c + oc)
    x, wt, b = rng.random((1, c, 9, 14)), rng.standard_normal((oc, c, 3, 3)) / np.sqrt(9 * c), rng.standard_normal(oc)
    from w2x.kernels.cpu_gemm import NR, fits
    plain = Conv2d(wt.reshape(oc, -1).astype(np.float32), b.astype(np.float32), 3, 1)
    layer, last = plain.on(be), plain.on(be, channels_last=True)
    assert layer.winograd_u.shape == ((tile + 2) ** 2, oc, c)
    packed = ((tile + 2) ** 2, oc // NR, c, NR)                          # kernels/cpu_gemm.py's form
    assert last.winograd_u.shape == (packed if fits(oc) else ((tile + 2) ** 2, c, oc))
    x_in = np.ascontiguousarray(x.transpose(1, 0, 2, 3), dtype=np.float32)  # (N, C, H, W) -> (C, N, H, W)
    for written in (layer(x_in, be, None), last(x_in, be, None)):
        np.testing.assert_allclose(written.transpose(1, 0, 2, 3), conv2d_naive(x, wt, b), atol=FLOAT32_ATOL)


def test_kn2row_matches_its_shifted_planes_loop():
    """kn2row (layers.Conv2d._kn2row) against a loop over its own definition: one product
    per kernel offset (i, j), each plane shifted by (i, j) and summed."""
    rng = _rng(7)
    n, c, h, w, oc, k = 2, 16, 7, 9, 3, 3
    x = rng.standard_normal((c, n, h, w))
    wt = rng.standard_normal((oc, c, k, k))
    b = rng.standard_normal(oc)
    be = get_backend("numpy")
    layer = Conv2d(wt.reshape(oc, -1).astype(np.float32), b.astype(np.float32), k).on(be)
    assert layer.kn2row_w is not None
    want = np.zeros((oc, n, h - k + 1, w - k + 1))
    for i in range(k):
        for j in range(k):
            plane = np.einsum("oc,cnhw->onhw", wt[:, :, i, j], x)               # (OC, N, H, W)
            want += plane[:, :, i:i + h - k + 1, j:j + w - k + 1]
    want += b[:, None, None, None]
    got = layer(x.astype(np.float32), be, None)
    np.testing.assert_allclose(got, want, atol=FLOAT32_ATOL)


@pytest.mark.parametrize("case", DECONV_CASES, ids=str)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("write_last", [False, True], ids=["write-major", "write-last"])
def test_conv_transpose2d_matches_scatter_loop(case, backend, order, write_last):
    """Read in either memory order, and written channel-last where asked for and the backend
    can (on numba: k x k stride-k unpadded ones, by ``_depth_to_space``), with LeakyReLU."""
    n, c, h, w, oc, k, s, p = case
    rng = _rng(sum(case))
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((c, oc, k, k))
    b = rng.standard_normal(oc)
    be = get_backend(backend)
    layer = ConvTranspose2d(np.ascontiguousarray(wt.reshape(c, -1).T, dtype=np.float32),
                            b.astype(np.float32), k, s, p).on(be, channels_last=write_last)
    assert layer.channels_last == (write_last and be.channels_last and k == s and p == 0)
    y = layer(_activation(x, order, be), be, 0.1)                  # (OC, N, OH, OW)
    assert (y.transpose(1, 2, 3, 0) if layer.channels_last else y).flags.c_contiguous
    y = be.to_host(y).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(y, _leaky(conv_transpose2d_naive(x, wt, b, s, p), 0.1), atol=FLOAT32_ATOL)


def test_leaky_relu_slope_and_bias():
    y = np.array([[-1.0, 2.0], [-3.0, 0.5]], dtype=np.float32)
    ops.bias_leaky_relu(y, np.array([0.5, -1.0], dtype=np.float32), ops.LEAKY_SLOPE)
    np.testing.assert_allclose(y, [[-0.05, 2.5], [-0.4, -0.05]], rtol=1e-6)


def test_pad_replicate_copies_edges():
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    p = ops.pad_replicate(x, 1, 2, 2, 1)
    assert p.shape == (1, 5, 6)
    np.testing.assert_array_equal(p[0, 0], [0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(p[0, -1], [3, 3, 3, 4, 5, 5])


# float64 sums of O(1) products with coefficients up to 8: ~1e-15 rounding.
FLOAT64_ATOL = 1e-12


@pytest.mark.parametrize("m", sorted(ops.WINOGRAD_BT))
def test_winograd_matrices_compute_the_correlation(m):
    """F(m, 3) from the matrices alone, in float64: ``A^T [(G g) * (B^T d)]`` is the valid
    correlation ``y[i] = sum_k d[i + k] g[k]``, in 1-D and nested into 2-D (Lavin & Gray eq. 8)."""
    bt, g_t, at = ops.WINOGRAD_BT[m], ops.WINOGRAD_G[m], ops.WINOGRAD_AT[m]
    assert bt.shape == (m + 2, m + 2) and g_t.shape == (m + 2, 3) and at.shape == (m, m + 2)
    rng = _rng(20 + m)
    for _ in range(5):
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        want = [d[i:i + 3] @ g for i in range(m)]
        np.testing.assert_allclose(at @ ((g_t @ g) * (bt @ d)), want, rtol=0, atol=FLOAT64_ATOL)
        d2, g2 = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
        want2 = [[(d2[i:i + 3, j:j + 3] * g2).sum() for j in range(m)] for i in range(m)]
        got2 = at @ ((g_t @ g2 @ g_t.T) * (bt @ d2 @ bt.T)) @ at.T
        np.testing.assert_allclose(got2, want2, rtol=0, atol=FLOAT64_ATOL)
    assert ops.WINOGRAD_TILES[(m + 2) ** 2] == m
