"""The library entry points ``w2x.convert`` and ``w2x.load_model``: NumPy arrays and PIL images
in, the same kind out, checked against an independent whole-image reference
(tests/reference_net.py); and every refusal of a common mistake."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import w2x
from conftest import IMAGES, model_path
from reference_net import sequential_net, to_integers
from w2x import reconstruct

pytestmark = pytest.mark.skipif(not (IMAGES / "lena.png").is_file(), reason="needs ../shared/images")

STYLE = "upconv_7/art"   # the cheapest 2x model
# w2x in float32 against the float64 reference: a value within float32 error of a rounding
# boundary may land on the other side, one level away
ROUND_LEVELS = 1
# float outputs: float32 GEMMs against float64 sums of O(1000) products
FLOAT_ATOL = 1e-4
LUMA = np.array([0.299, 0.587, 0.114])


def _lena(h=24, w=32):
    return np.asarray(Image.open(IMAGES / "lena.png").convert("RGB"))[:h, :w]


def test_uint8_rgb_array_matches_the_reference_and_original_rounding():
    img = _lena()
    out = w2x.convert(img, mode="scale", style=STYLE)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    y = sequential_net(model_path(STYLE + "/scale2.0x_model.json.gz"), img.transpose(2, 0, 1) / 255, 1)
    want = to_integers(y, 8).transpose(1, 2, 0)                                 # (C, H, W) -> (H, W, C)
    assert np.abs(out.astype(int) - want).max() <= ROUND_LEVELS


def test_float_grey_array_is_the_luma_of_the_reference():
    grey = _lena()[:, :, 1].astype(np.float32) / 255                     # (H, W) float
    out = w2x.convert(grey, mode="scale", style=STYLE)
    assert out.shape == (48, 64) and out.dtype == np.float32
    y = sequential_net(model_path(STYLE + "/scale2.0x_model.json.gz"), np.repeat(grey[None], 3, axis=0), 1)
    np.testing.assert_allclose(out, np.tensordot(LUMA, y, 1), atol=FLOAT_ATOL)


def test_uint16_array_keeps_its_depth_and_matches_the_reference():
    deep = _lena().astype(np.uint16) * 257
    out16 = w2x.convert(deep, mode="noise", noise_level=1, style=STYLE)  # upconv_7 noise -> vgg_7
    assert out16.dtype == np.uint16 and out16.shape == deep.shape
    y = sequential_net(model_path("vgg_7/art/noise1_model.json.gz"), deep.transpose(2, 0, 1) / 65535, 1)
    assert np.abs(out16.astype(int) - to_integers(y, 16).transpose(1, 2, 0)).max() <= ROUND_LEVELS


def test_pil_rgba_in_pil_rgba_out_with_model_alpha():
    im = Image.open(IMAGES / "neko_alpha.png")
    out = w2x.convert(im, mode="scale", style=STYLE)
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (200, 174)


def test_convert_takes_any_scale_a_batch_size_and_reports_progress():
    calls = []
    out = w2x.convert(_lena(), mode="scale", style=STYLE, scale=1.5, batch_size=2,
                      progress=lambda done, total: calls.append((done, total)))
    assert out.shape == (36, 48, 3)
    assert calls and calls[-1][0] == calls[-1][1]


def test_load_model_takes_a_model_name():
    by_name = w2x.load_model("upconv_7/art/scale2.0x")
    by_path = w2x.load_model(model_path("upconv_7/art/scale2.0x_model.json.gz"))
    assert by_name.config.arch_name == "upconv_7"
    np.testing.assert_array_equal(by_name.layers["conv1"].w2d, by_path.layers["conv1"].w2d)
    with pytest.raises(FileNotFoundError, match="<arch>/<style>/<file>"):
        w2x.load_model("scale2.0x")


# --- refusals: what a user gets wrong, each a ValueError saying what was expected ---------------
@pytest.mark.parametrize("array, message", [
    (np.full((4, 4, 3), 200.0, np.float32), r"\[0, 1\], got 200\.\.200; .*divide by 255"),
    (np.full((4, 4, 3), -0.5, np.float32), r"\[0, 1\], got -0.5"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN or infinite"),
    (np.full((4, 4), np.inf, np.float64), "NaN or infinite"),
    (np.zeros((0, 4, 3), np.uint8), r"got shape \(0, 4, 3\)"),
    (np.zeros((4, 4, 5), np.uint8), "expected an image array"),
    (np.zeros((4, 4, 3), np.int32), "uint8, uint16 or float"),
])
def test_convert_refuses_arrays_it_would_have_to_guess_about(array, message):
    with pytest.raises(ValueError, match=message):
        w2x.convert(array, style=STYLE)


def test_convert_refuses_a_path():
    with pytest.raises(ValueError, match="got a path .* open it first"):
        w2x.convert(str(IMAGES / "lena.png"), style=STYLE)


@pytest.mark.parametrize("x, message", [
    (np.zeros((3, 8, 8), np.uint8), r"expected float pixels in \[0, 1\], got uint8; divide by 255"),
    (np.full((3, 8, 8), 255.0, np.float32), r"got 255\.\.255; .*divide by 255"),
    (np.full((3, 8, 8), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((3, 0, 8), np.float32), r"shape \(3, H, W\)"),
    ("lena.png", "got a path"),
])
@pytest.mark.parametrize("step", [reconstruct.denoise, reconstruct.upscale2x])
def test_reconstruct_refuses_what_is_not_a_float_image_in_0_1(step, x, message):
    model = w2x.load_model(model_path("vgg_7/art/scale2.0x_model.json.gz"))
    with pytest.raises(ValueError, match=message):
        step(model, x)
