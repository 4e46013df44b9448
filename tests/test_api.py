"""The library entry point ``w2x.convert``: NumPy arrays and PIL images in, the same kind out."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import w2x
from conftest import IMAGES, model_path
from w2x import load_model, reconstruct

STYLE = "upconv_7/art"   # the cheapest 2x model
# float32 path vs the same float32 path: identical up to the final rounding
ROUND_LEVELS = 1


def _lena(h=24, w=32):
    return np.asarray(Image.open(IMAGES / "lena.png").convert("RGB"))[:h, :w]


def test_uint8_rgb_array_matches_reconstruct_and_original_rounding():
    img = _lena()
    out = w2x.convert(img, mode="scale", style=STYLE)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    y = reconstruct.scale(load_model(model_path(STYLE + "/scale2.0x_model.json.gz")),
                          img.transpose(2, 0, 1).astype(np.float32) / 255)
    want = np.floor(np.clip(y + (0.5 - 0.5e-7) / 255, 0, 1) * 255).transpose(1, 2, 0)
    assert np.abs(out.astype(int) - want).max() <= ROUND_LEVELS


def test_float_grey_and_uint16_arrays_keep_their_kind():
    grey = _lena()[:, :, 1].astype(np.float32) / 255                     # (H, W) float
    out = w2x.convert(grey, mode="scale", style=STYLE)
    assert out.shape == (48, 64) and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
    deep = _lena().astype(np.uint16) * 257
    out16 = w2x.convert(deep, mode="noise", noise_level=1, style=STYLE)  # upconv_7 noise -> vgg_7
    assert out16.dtype == np.uint16 and out16.shape == deep.shape


def test_pil_rgba_in_pil_rgba_out_with_model_alpha():
    im = Image.open(IMAGES / "neko_alpha.png")
    out = w2x.convert(im, mode="scale", style=STYLE)
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (200, 174)


def test_bad_array_is_a_clear_error():
    with pytest.raises(ValueError, match="expected an image array"):
        w2x.convert(np.zeros((4, 4, 5), np.uint8), style=STYLE)
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        w2x.convert(np.zeros((4, 4, 3), np.int32), style=STYLE)
