"""w2x.resize against a literal per-pixel transcription of GraphicsMagick's ResizeImage.

The reference below is written from magick/resize.c (HorizontalFilter/VerticalFilter,
ResizeImage) one output sample at a time in plain Python floats, sharing no code with
w2x.resize. Both sum the taps in the same order in float64, so results must be *identical*,
not merely close. (A one-off check against `gm convert` 1.3.40 Q16 is described in the
report that introduced this module; tests do not need GraphicsMagick.)
"""
import math

import numpy as np
import pytest

from w2x.resize import FILTERS, filter_taps, gm_resize

Q16 = 65535
EPSILON = 1.0e-12  # magick/studio.h MagickEpsilon
WEIGHT_SUM_ATOL = 1e-12  # renormalised float64 weights: a few ulps off 1
FLOAT32_ATOL = 1e-6  # float64 result cast to float32 output (values ~1, ulp 6e-8)


# --- scalar kernels, transcribed from resize.c -------------------------------------------

def ref_box(x):
    return 0.0 if x < -0.5 else 1.0 if x < 0.5 else 0.0


def ref_triangle(x):
    return 0.0 if x < -1.0 else 1.0 + x if x < 0.0 else 1.0 - x if x < 1.0 else 0.0


def ref_catrom(x):
    if x < -2.0:
        return 0.0
    if x < -1.0:
        return 0.5 * (4.0 + x * (8.0 + x * (5.0 + x)))
    if x < 0.0:
        return 0.5 * (2.0 + x * x * (-5.0 - 3.0 * x))
    if x < 1.0:
        return 0.5 * (2.0 + x * x * (-5.0 + 3.0 * x))
    if x < 2.0:
        return 0.5 * (4.0 + x * (-8.0 + x * (5.0 - x)))
    return 0.0


def ref_sinc(x):
    return 1.0 if x == 0.0 else math.sin(math.pi * x) / (math.pi * x)


def ref_lanczos(x):
    if x < -3.0:
        return 0.0
    if x < 0.0:
        return ref_sinc(-x) * ref_sinc(-x / 3.0)
    if x < 3.0:
        return ref_sinc(x) * ref_sinc(x / 3.0)
    return 0.0


def ref_blackman_sinc(x):
    t = x / 4.0
    return (0.42 + 0.5 * math.cos(math.pi * t) + 0.08 * math.cos(2 * math.pi * t)) * ref_sinc(x)


REF_FILTERS = {"box": (ref_box, 0.5), "triangle": (ref_triangle, 1.0),
               "catrom": (ref_catrom, 2.0), "lanczos": (ref_lanczos, 3.0),
               "sinc": (ref_blackman_sinc, 4.0)}


def ref_pass(rows, n_out, name, blur=1.0):
    """resize.c HorizontalFilter on a list of rows (lists of floats), one output at a time."""
    function, filter_support = REF_FILTERS[name]
    n_in = len(rows[0])
    factor = n_out / n_in
    scale = blur * max(1.0 / factor, 1.0)
    support = scale * filter_support
    if not support > 0.5:
        support, scale = 0.5 + EPSILON, 1.0
    scale = 1.0 / scale
    out = [[0.0] * n_out for _ in rows]
    for x in range(n_out):
        center = (x + 0.5) / factor
        start = int(max(center - support + 0.5, 0))
        stop = int(min(center + support + 0.5, n_in))
        weights = [function(scale * (float(start) + n - center + 0.5)) for n in range(stop - start)]
        density = 0.0
        for w in weights:
            density += w
        if density != 0.0 and density != 1.0:
            density = 1.0 / density
            weights = [w * density for w in weights]
        for r, row in enumerate(rows):
            pixel = 0.0
            for n, w in enumerate(weights):
                pixel += w * row[start + n]
            out[r][x] = pixel
    return out


def ref_quantum(v):
    """magick/image.h RoundDoubleToQuantum."""
    return 0 if v < 0.0 else Q16 if v > Q16 else int(v + 0.5)


def ref_resize(plane, out_h, out_w, name):
    """ResizeImage on one float32 plane (H, W) as waifu2x's iproc.scale sees it."""
    in_h, in_w = plane.shape
    q = [[ref_quantum(Q16 * float(v)) for v in row] for row in plane]

    def horizontal(rows):
        return [[ref_quantum(v) for v in row] for row in ref_pass(rows, out_w, name)]

    def vertical(rows):
        cols = [list(c) for c in zip(*rows)]
        return [list(r) for r in zip(*[[ref_quantum(v) for v in c]
                                        for c in ref_pass(cols, out_h, name)])]

    if out_w * (in_h + out_h) > out_h * (in_w + out_w):
        q = vertical(horizontal(q))
    else:
        q = horizontal(vertical(q))
    return np.array(q, np.float64) / Q16


# --- tests -------------------------------------------------------------------------------

def test_catrom_kernel_values():
    catrom = FILTERS["catrom"][0]
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, -0.5, -1.5, 2.5])
    expected = [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.5625, -0.0625, 0.0]  # Keys a = -0.5 by hand
    assert catrom(x).tolist() == expected


def test_other_kernel_values():
    assert FILTERS["mitchell"][0](np.array([0.0, 1.0])).tolist() == pytest.approx([8 / 9, 1 / 18])
    assert FILTERS["hermite"][0](np.array([0.0, 0.5, 1.0])).tolist() == [1.0, 0.5, 0.0]
    assert FILTERS["triangle"][0](np.array([-0.25, 0.75])).tolist() == [0.75, 0.25]
    assert FILTERS["box"][0](np.array([-0.5, 0.49, 0.5])).tolist() == [1.0, 1.0, 0.0]
    lanczos = FILTERS["lanczos"][0](np.array([0.0, 1.0, 2.0, 1.5, -3.0, 3.0]))
    assert lanczos[0] == 1.0 and np.all(np.abs(lanczos[[1, 2]]) < 1e-15)
    assert lanczos[3] == pytest.approx((-1 / (1.5 * math.pi)) * (1 / (0.5 * math.pi)))
    assert lanczos[4] != 0.0 and lanczos[5] == 0.0  # GM's window is [-3, 3)
    sinc = FILTERS["sinc"][0](np.array([0.0, 4.0]))
    assert sinc[0] == 0.42 + 0.5 + 0.08  # Blackman(0) in float64 is 1 - 1 ulp, as in GM
    assert abs(sinc[1]) < 1e-17  # the window is ~0 at the support


@pytest.mark.parametrize("name", sorted(FILTERS))
@pytest.mark.parametrize("n_in, n_out", [(7, 14), (14, 7), (5, 8), (9, 4), (3, 3), (1, 5), (6, 1)])
def test_filter_taps_weights_sum_to_one(name, n_in, n_out):
    index, weight = filter_taps(n_in, n_out, name)
    assert index.shape == weight.shape and index.shape[0] == n_out
    assert index.min() >= 0 and index.max() < n_in
    np.testing.assert_allclose(weight.sum(axis=1), 1.0, rtol=0, atol=WEIGHT_SUM_ATOL)


def test_catrom_2x_interior_weights_are_the_dyadic_cubic():
    index, weight = filter_taps(10, 20, "catrom")
    # Output 8 has centre 4.25: taps 2..5 at distances 1.75, 0.75, 0.25, 1.25 (hand-computed).
    assert index[8].tolist() == [2, 3, 4, 5]
    assert weight[8].tolist() == [-0.0234375, 0.2265625, 0.8671875, -0.0703125]


def test_catrom_half_has_eight_taps_stretched_kernel():
    index, weight = filter_taps(20, 10, "catrom")
    assert index[4].tolist() == list(range(5, 13))  # centre 9, support 4
    expected = [-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125,
                -0.0234375]
    assert weight[4].tolist() == [w / 2 for w in expected]


def test_edge_taps_are_dropped_and_renormalised():
    index, weight = filter_taps(10, 20, "catrom")
    # Output 1 has centre 0.75: source pixels -1..2 lie within the support, -1 is dropped.
    assert index[1, :3].tolist() == [0, 1, 2] and weight[1, 3] == 0.0
    raw = np.array([0.8671875, 0.2265625, -0.0234375])
    np.testing.assert_array_equal(weight[1, :3], raw * (1.0 / raw.sum()))


@pytest.mark.parametrize("name", sorted(REF_FILTERS))
@pytest.mark.parametrize("in_hw, out_hw", [
    ((12, 16), (24, 32)),   # 2x (vertical first)
    ((16, 12), (8, 6)),     # 0.5x
    ((11, 13), (22, 26)),   # odd sizes, 2x
    ((10, 15), (16, 24)),   # 1.6x
    ((13, 9), (7, 5)),      # odd downscale
    ((8, 9), (8, 20)),      # width only: horizontal first
    ((9, 8), (17, 6)),      # mixed up/down
    ((4, 6), (6, 9)),       # 1.5x: some centres are integers, where Box's point sampling
                            # depends on MagickEpsilon
])
def test_gm_resize_matches_loop_reference(name, in_hw, out_hw):
    rng = np.random.default_rng(sum(in_hw) * 31 + sum(out_hw))
    x = rng.random((2,) + in_hw, dtype=np.float32)
    got = gm_resize(x, *out_hw, filter=name)
    assert got.dtype == np.float32 and got.shape == (2,) + out_hw
    for c in range(2):
        expected = ref_resize(x[c], *out_hw, name).astype(np.float32)
        np.testing.assert_array_equal(got[c], expected)


def test_gm_resize_output_is_on_the_16bit_grid_and_clamped():
    x = np.random.default_rng(0).random((3, 10, 10), dtype=np.float32)
    y = gm_resize(x, 20, 20)
    q = np.round(y.astype(np.float64) * Q16)
    np.testing.assert_array_equal(y, (q / Q16).astype(np.float32))  # float32(q / 65535)
    assert q.min() == 0 and q.max() == Q16  # Catrom overshoots on noise and is clamped


def test_gm_resize_without_quantum_is_the_unrounded_linear_map():
    x = np.random.default_rng(1).random((1, 9, 7), dtype=np.float32)
    y = gm_resize(x, 18, 14, quantum=None).astype(np.float64)
    iy, wy = filter_taps(9, 18)
    ix, wx = filter_taps(7, 14)
    my, mx = np.zeros((18, 9)), np.zeros((14, 7))
    np.add.at(my, (np.arange(18)[:, None], iy), wy)  # dense (out, in) weight matrices
    np.add.at(mx, (np.arange(14)[:, None], ix), wx)
    expected = my @ x[0].astype(np.float64) @ mx.T
    np.testing.assert_allclose(y[0], expected, rtol=0, atol=FLOAT32_ATOL)
    assert not np.array_equal(y, gm_resize(x, 18, 14))  # the rounding really was skipped


@pytest.mark.parametrize("factor", [2, 3])
def test_box_integer_upscale_is_pixel_replication(factor):
    q = np.random.default_rng(factor).integers(0, Q16 + 1, (3, 7, 5))
    x = (q / Q16).astype(np.float32)
    y = gm_resize(x, 7 * factor, 5 * factor, "box")
    expected = np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)
    np.testing.assert_array_equal(y, expected)


def test_same_size_returns_the_quantised_input():
    x = np.array([[[0.0, 0.3, 1.0], [0.5, 1e-6, 0.99999]]], np.float32)
    y = gm_resize(x, 2, 3)
    np.testing.assert_array_equal(y, (np.floor(x.astype(np.float64) * Q16 + 0.5) / Q16)
                                  .astype(np.float32))


def test_8bit_values_survive_the_16bit_round_trip():
    k = np.arange(256, dtype=np.float32).reshape(1, 16, 16)
    x = k / np.float32(255)
    np.testing.assert_array_equal(gm_resize(x, 16, 16), x)  # 257 k / 65535 == k / 255


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=np.zeros((4, 4), np.float32), out_h=2, out_w=2), "expects a \\(C, H, W\\)"),
    (dict(x=np.zeros((1, 4, 4), np.float32), out_h=0, out_w=2), "positive"),
    (dict(x=np.zeros((1, 4, 4), np.float32), out_h=2, out_w=2, filter="bicubic"), "unknown resize filter"),
    (dict(x=np.zeros((1, 4, 4), np.float32), out_h=2, out_w=2, blur=0.0), "blur"),
])
def test_gm_resize_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gm_resize(**kwargs)
