"""Whole-image behaviour of the original: tiling, alpha, grey, 16-bit and TTA, on real images.

Expectations come from docs/waifu2x-reference.md (§1.3-§1.6), restated here as independent
loops rather than by calling the code under test twice.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from conftest import IMAGES, model_path
from w2x import load_model, reconstruct
from w2x.alpha import make_border
from w2x.cli.main import main as cli_main
from w2x.io import read_image
from reference_net import sequential_net, to_integers
from w2x.nn.ops import pad_replicate
from w2x.tiling import snap_tile_size, tile_grid

# BLAS blocks GEMMs differently for different tile widths, reordering float32 sums.
TILE_INVARIANCE_ATOL = 1e-5
# make_border: float32 box sums vs the float64 loop below.
MAKE_BORDER_ATOL = 1e-5
TTA_ATOL = 1e-6  # same arithmetic, only the order of the mean's additions differs


def _float(path, size=None):
    im = Image.open(path).convert("RGB")
    a = np.asarray(im, dtype=np.float32) / 255
    if size:
        a = a[:size[0], :size[1]]
    return np.ascontiguousarray(a.transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)


@pytest.mark.parametrize("rel", ["vgg_7/art/scale2.0x_model.json.gz", "upconv_7/art/scale2.0x_model.json.gz"])
def test_local_nets_do_not_depend_on_tile_size(rel):
    model = load_model(model_path(rel))
    x = _float(IMAGES / "miku_small_noisy.png", (70, 90))
    net_in = 2 * max(x.shape[1:]) if model.config.scale_factor == 1 else max(x.shape[1:])
    whole = net_in + 2 * model.config.input_offset          # one tile holds everything
    outs = [reconstruct.upscale2x(model, x, tile_size=t) for t in (64, 256, whole)]
    assert len(tile_grid(*(np.array(x.shape[1:]) * (2 // model.config.scale_factor)), model.config, whole)) == 1
    for y in outs[1:]:
        assert y.shape == (3, 140, 180)
        assert np.abs(y - outs[0]).max() <= TILE_INVARIANCE_ATOL


def test_cunet_tile_sizes_snap_like_find_valid_block_size():
    up = load_model(model_path("cunet/art/scale2.0x_model.json.gz")).config
    assert snap_tile_size(up, 256) == 256
    assert snap_tile_size(up, 254) == 252        # tie: the first (smaller) valid size wins
    assert snap_tile_size(up, 10) == 76 and snap_tile_size(up, 4000) == 512
    g = tile_grid(100, 33, up, 256)
    assert (g.tile, g.step, g.pad_lo, g.out_tile) == (256, 220, 18, 440)
    assert g.pad_bottom == 220 + 18 - 100 and g.pad_right == 220 + 18 - 33


def _make_border_loop(rgb, alpha, offset):
    """alpha_util.lua:9-46 as literal loops, float64."""
    rgb = rgb.astype(np.float64).copy()
    mask = (alpha[0] > 0).astype(np.float64)
    rgb[:, mask == 0] = 0
    h, w = mask.shape
    for _ in range(offset):
        weight = np.zeros((h, w))
        border = np.zeros_like(rgb)
        for r in range(h):
            for q in range(w):
                r0, r1, q0, q1 = max(r - 1, 0), min(r + 2, h), max(q - 1, 0), min(q + 2, w)
                weight[r, q] = mask[r0:r1, q0:q1].sum()
                border[:, r, q] = rgb[:, r0:r1, q0:q1].sum(axis=(1, 2))
        border /= weight + 1e-7
        hidden = mask == 0
        rgb[:, hidden] = border[:, hidden]
        mask = (weight > 0).astype(np.float64)
    return np.clip(rgb, 0, 1)


def test_make_border_matches_literal_loop():
    pic = read_image(IMAGES / "neko_alpha.png")
    rgb, alpha = pic.rgb[:, :40, :50], pic.alpha[:, :40, :50]
    assert 0 < (alpha == 0).mean() < 1
    got = make_border(rgb, alpha, 7)
    np.testing.assert_allclose(got, _make_border_loop(rgb, alpha, 7), atol=MAKE_BORDER_ATOL)
    far = got[:, alpha[0] > 0]
    np.testing.assert_array_equal(far, rgb[:, alpha[0] > 0])  # visible pixels untouched


def test_alpha_scale_mode_rgba_output(tmp_path):
    out = tmp_path / "neko.png"
    rel = "upconv_7/art"
    assert cli_main(["-i", str(IMAGES / "neko_alpha.png"), "-o", str(out), "-m", "scale",
                     "--model-dir", str(model_path(rel))]) == 0
    src = np.asarray(Image.open(IMAGES / "neko_alpha.png"))
    res = Image.open(out)
    assert res.mode == "RGBA" and res.size == (200, 174)
    a_out = np.asarray(res)[:, :, 3].astype(int)
    a_nn = np.repeat(np.repeat(src[:, :, 3], 2, 0), 2, 1).astype(int)  # nearest 2x of the alpha
    # alpha is upscaled by the scale model: interior of opaque/transparent areas is kept
    win = np.lib.stride_tricks.sliding_window_view(np.pad(a_nn, 3, mode="edge"), (7, 7))
    interior = (win.min(axis=(2, 3)) == win.max(axis=(2, 3))) & ((a_nn == 0) | (a_nn == 255))
    # (the net rings a little near thin shapes: measured max 8 levels, mean < 0.1)
    assert np.abs(a_out - a_nn)[interior].max() <= 16
    assert np.abs(a_out - a_nn)[interior].mean() <= 0.5
    # ...and it was not simply copied by nearest neighbour: edges are resampled
    assert (a_out != a_nn).mean() > 0.01
    # make_border ran: RGB under alpha 0 near opaque pixels is not the loader's 0.5 grey
    rgb_out = np.asarray(res)[:, :, :3].astype(int)
    near_edge = (a_nn == 0) & ~interior
    assert np.abs(rgb_out[near_edge] - 128).mean() > 10


def test_alpha_noise_mode_keeps_alpha_exactly(tmp_path):
    out = tmp_path / "neko.png"
    assert cli_main(["-i", str(IMAGES / "neko_alpha.png"), "-o", str(out), "-m", "noise", "-n", "1",
                     "--style", "vgg_7/art"]) == 0
    src = np.asarray(Image.open(IMAGES / "neko_alpha.png"))
    res = np.asarray(Image.open(out))
    np.testing.assert_array_equal(res[:, :, 3], src[:, :, 3])


def test_grey_input_gives_grey_output(tmp_path):
    src = Image.open(IMAGES / "tone.png")
    a = np.asarray(src)
    assert (a[:, :, 0] == a[:, :, 1]).all() and (a[:, :, 1] == a[:, :, 2]).all() and (a[:, :, 3] == 255).all()
    out = tmp_path / "tone.png"
    assert cli_main(["-i", str(IMAGES / "tone.png"), "-o", str(out), "-m", "scale", "--style", "vgg_7/art"]) == 0
    res = Image.open(out)
    assert res.mode == "L" and res.size == (496, 152)
    # the grey written is the luma of the RGB result (independent whole-image reference)
    y = sequential_net(model_path("vgg_7/art/scale2.0x_model.json.gz"), a[:, :, :3].transpose(2, 0, 1) / 255, 2)
    luma = 0.299 * y[0] + 0.587 * y[1] + 0.114 * y[2]
    assert np.abs(np.asarray(res).astype(int) - to_integers(luma, 8)).max() <= 1


def test_16bit_input_keeps_precision_and_depth_16_output(tmp_path):
    import png
    rng = np.random.default_rng(0)
    base = np.asarray(Image.open(IMAGES / "lena.png").convert("RGB"))[:48, :48].astype(np.uint16) * 257
    img16 = (base + rng.integers(-120, 120, base.shape)).clip(0, 65535).astype(np.uint16)
    src = tmp_path / "in16.png"
    png.from_array(img16.reshape(48, -1), "RGB;16").save(str(src))
    out = tmp_path / "out16.png"
    assert cli_main(["-i", str(src), "-o", str(out), "-m", "noise", "-n", "1", "--style", "vgg_7/photo",
                     "--depth", "16"]) == 0
    w, h, rows, info = png.Reader(filename=str(out)).asDirect()
    assert info["bitdepth"] == 16
    got = np.array(list(rows), dtype=np.int64).reshape(h, w, 3)
    # expected: the net on the exact 16-bit values (independent whole-image reference),
    # rounded by encode_png's 16-bit rule
    path = model_path("vgg_7/photo/noise1_model.json.gz")
    y = sequential_net(path, img16.transpose(2, 0, 1) / 65535, 1)
    assert np.abs(got - to_integers(y, 16).transpose(1, 2, 0)).max() <= 1
    # the input's low bits mattered: an 8-bit-truncated input gives a different result
    y8 = sequential_net(path, (img16 // 257).transpose(2, 0, 1) / 255, 1)
    assert np.abs(y8 - y).max() > 1e-3


# TTA patterns of reconstruct.lua:253-292 spelled out on (C, H, W): (forward, backward).
def _tta_expected(f, x, ids):
    hf = lambda a: a[:, :, ::-1]   # noqa: E731  image.hflip: mirror columns
    vf = lambda a: a[:, ::-1, :]   # noqa: E731  image.vflip: mirror rows
    tr = lambda a: np.swapaxes(a, 1, 2)  # noqa: E731
    table = {1: (lambda a: a, lambda a: a), 2: (hf, hf), 3: (vf, vf),
             4: (lambda a: hf(vf(a)), lambda a: vf(hf(a))), 5: (tr, tr),
             6: (lambda a: hf(tr(a)), lambda a: tr(hf(a))), 7: (lambda a: vf(tr(a)), lambda a: tr(vf(a))),
             8: (lambda a: hf(vf(tr(a))), lambda a: tr(vf(hf(a))))}
    return np.mean([table[i][1](f(np.ascontiguousarray(table[i][0](x)))) for i in ids], axis=0)


@pytest.mark.parametrize("level, ids", [(2, (1, 5)), (4, (1, 5, 2, 7)), (8, tuple(range(1, 9)))])
def test_tta_levels_average_the_original_patterns(level, ids):
    model = load_model(model_path("vgg_7/photo/noise2_model.json.gz"))
    x = _float(IMAGES / "lena.png", (40, 56))
    plain = lambda a: reconstruct.denoise(model, a, tile_size=64)  # noqa: E731
    got = reconstruct.denoise(model, x, tile_size=64, tta_level=level)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, _tta_expected(plain, x, ids), atol=TTA_ATOL)
    assert np.abs(got - plain(x)).max() > 1e-3  # TTA changes the result


def test_y_model_scale_luma_from_net_chroma_from_lanczos():
    """scale_y (reconstruct.lua:147-173): Y from the net on the nearest-2x luma, U/V from a
    GraphicsMagick Lanczos 2x, torch's analog YUV."""
    from w2x.resize import gm_resize
    model = load_model(model_path("vgg_7/art_y_chainer/scale2.0x_model.json.gz"))
    x = _float(IMAGES / "lena.png", (30, 40))
    got = reconstruct.upscale2x(model, x)
    to_yuv = np.array([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])
    luma_nn = np.repeat(np.repeat(np.tensordot(to_yuv[0], x, 1), 2, 0), 2, 1)   # (60, 80)
    padded = np.pad(luma_nn, 7, mode="edge")[None, None].astype(np.float32)    # one whole tile
    y_net = np.clip(model.forward(padded)[0, 0], 0, 1)
    uv = np.tensordot(to_yuv[1:], gm_resize(x, 60, 80, "lanczos"), 1)
    yuv = np.tensordot(to_yuv, got.astype(np.float64), 1)
    unclipped = ((got > 0) & (got < 1)).all(axis=0)
    assert unclipped.mean() > 0.9
    assert np.abs(yuv[0] - y_net)[unclipped].max() < 1e-4
    assert np.abs(yuv[1:] - uv)[:, unclipped].max() < 1e-4


def test_local_net_tiles_shrink_to_small_images_cunet_tiles_do_not():
    vgg = load_model(model_path("vgg_7/art/scale2.0x_model.json.gz")).config
    g = tile_grid(24, 30, vgg, 256)
    assert (g.tile, g.n_h, g.n_w) == (44, 1, 1)
    up = load_model(model_path("cunet/art/scale2.0x_model.json.gz")).config
    assert tile_grid(24, 30, up, 256).tile == 256


def test_local_net_tiles_are_balanced_no_more_of_them_than_the_originals():
    """``balanced_tile``: as many tiles as the original's grid of ``tile_size`` tiles, each as
    small as still covers the input (2x of lena by vgg_7: 5 x 5 tiles of 219, not 256)."""
    vgg = load_model(model_path("vgg_7/art/scale2.0x_model.json.gz")).config
    g = tile_grid(1024, 1024, vgg, 256)
    assert (g.tile, g.n_h, g.n_w) == (219, 5, 5)
    pad = vgg.input_offset
    for h, w, size in [(1024, 1024, 256), (500, 77, 128), (242, 243, 256), (1, 999, 40), (700, 700, 700)]:
        g, step = tile_grid(h, w, vgg, size), size - 2 * pad
        assert (g.n_h, g.n_w) == (math.ceil(h / step), math.ceil(w / step))   # the original's count
        assert g.n_h * g.step >= h and g.n_w * g.step >= w                     # the input covered
        if g.step > 1:                                                         # one px less needs more tiles
            assert math.ceil(h / (g.step - 1)) > g.n_h or math.ceil(w / (g.step - 1)) > g.n_w
        assert g.tile <= size


@pytest.mark.parametrize("prescale", [1, 2])
def test_gather_tile_is_pad_replicate_of_nearest(prescale):
    """run_net's stage 1 reads each tile through clamped, divided indices instead of building
    the pre-scaled, padded image: the same pixels as ``pad_replicate(nearest(x))``."""
    model = load_model(model_path("vgg_7/art/scale2.0x_model.json.gz"))
    x = np.random.default_rng(3).random((3, 13, 17), dtype=np.float32)
    h, w = 13 * prescale, 17 * prescale
    grid = tile_grid(h, w, model.config, 20)
    nearest = np.repeat(np.repeat(x, prescale, axis=1), prescale, axis=2)
    padded = pad_replicate(nearest, grid.pad_lo, grid.pad_bottom, grid.pad_lo, grid.pad_right)
    assert len(grid) > 4                       # corner, edge and inner tiles
    for r, q in grid.tiles():
        np.testing.assert_array_equal(reconstruct.gather_tile(x, grid, r, q, prescale),
                                      padded[:, r:r + grid.tile, q:q + grid.tile])


@pytest.mark.parametrize("prescale", [1, 2])
def test_gather_tile_with_a_halo_reads_the_neighbours_and_replicates_only_past_them(prescale):
    """A chunk with ``halo`` pixels of its neighbours (w2x.distributed): its tiles are the
    whole image's tiles at the same place, so context comes from the neighbours, and only
    what lies past the chunk's halo is replicated from the chunk's edge."""
    model = load_model(model_path("vgg_7/art/scale2.0x_model.json.gz"))
    x = np.random.default_rng(4).random((3, 30, 34), dtype=np.float32)
    halo = 4                                          # rows/cols 0..3 and the last 4: context
    core = x[:, halo:-halo, halo:-halo]
    grid = tile_grid(core.shape[1] * prescale, core.shape[2] * prescale, model.config, 20)
    extended = np.repeat(np.repeat(x, prescale, axis=1), prescale, axis=2)
    lo = grid.pad_lo - halo * prescale               # replicated beyond the halo
    padded = pad_replicate(extended, max(lo, 0), grid.pad_bottom + 7, max(lo, 0), grid.pad_right + 7)
    start = max(-lo, 0)
    for r, q in grid.tiles():
        np.testing.assert_array_equal(
            reconstruct.gather_tile(x, grid, r, q, prescale, halo),
            padded[:, start + r:start + r + grid.tile, start + q:start + q + grid.tile])
