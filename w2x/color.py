"""Pre/post-processing: torch ``image`` package colour transforms used by the Y (luma) models,
the original's float -> integer rounding (``quantize``) and its inverse (``to_unit_float``).

These are torch's *analog* YUV (no offsets, not YCbCr), taken from torch/image ``init.lua``
(docs/waifu2x-reference.md §1.4, "Y (luma) models"); waifu2x-caffe and converter-cpp use
other constants, so only these reproduce the original.
"""
from __future__ import annotations

import numpy as np

# image.rgb2yuv
RGB2YUV = np.array([[0.299, 0.587, 0.114],
                    [-0.14713, -0.28886, 0.436],
                    [0.615, -0.51499, -0.10001]], dtype=np.float32)
# image.yuv2rgb
YUV2RGB = np.array([[1.0, 0.0, 1.13983],
                    [1.0, -0.39465, -0.58060],
                    [1.0, 2.03211, 0.0]], dtype=np.float32)


def _apply(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-pixel colour matrix: m (K, 3) applied to x (3, H, W) -> (K, H, W)."""
    c, h, w = x.shape
    return (m @ x.reshape(c, h * w)).reshape(m.shape[0], h, w)  # (K, H*W) -> (K, H, W)


def rgb2yuv(x: np.ndarray) -> np.ndarray:
    """(3, H, W) RGB -> (3, H, W) YUV, float32."""
    return _apply(RGB2YUV, x)


def yuv2rgb(x: np.ndarray) -> np.ndarray:
    """(3, H, W) YUV -> (3, H, W) RGB, float32 (not clamped)."""
    return _apply(YUV2RGB, x)


def rgb2y(x: np.ndarray) -> np.ndarray:
    """(3, H, W) RGB -> (1, H, W) luma: image.rgb2y, 0.299R + 0.587G + 0.114B."""
    return _apply(RGB2YUV[:1], x)


# image_loader.lua:8-9: half a step minus a relative 1e-7, so x.5 rounds down ("round half
# down by epsilon")
CLIP_EPS8 = (0.5 - 0.5e-7) / 255
CLIP_EPS16 = (0.5 - 0.5e-7) / 65535
QUANTIZE_BLOCK = 1 << 20   # samples rounded at a time by quantize (4 MB of float32)


def quantize(x: np.ndarray, depth: int) -> np.ndarray:
    """Float samples in [0, 1] -> integers, with the original's rounding.

    Parameters
    ----------
    x : np.ndarray
        Float array of any shape; computed in float32, as the original's FloatTensor.
    depth : int
        8 or 16.

    Returns
    -------
    np.ndarray
        ``floor(clip(x + CLIP_EPS, 0, 1) * (2**depth - 1))`` as uint8 (depth 8) or uint16,
        C-contiguous.  Computed :data:`QUANTIZE_BLOCK` samples at a time (element by element,
        so the same numbers), so that no float copy of a large image is ever made: for an
        8000x8000 RGB output that copy was 768 MB.

    References
    ----------
    nagadomi/waifu2x lib/image_loader.lua:8-9 (CLIP_EPS8/16), :21-34 (encode_png).
    """
    if depth not in (8, 16):
        raise ValueError(f"depth must be 8 or 16, got {depth!r}")
    eps, top, dtype = (CLIP_EPS8, 255, np.uint8) if depth == 8 else (CLIP_EPS16, 65535, np.uint16)
    x = np.asarray(x)
    out = np.empty(x.shape, dtype)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)      # a copy of x only if it is not contiguous
    for start in range(0, flat_in.size, QUANTIZE_BLOCK):
        y = flat_in[start:start + QUANTIZE_BLOCK].astype(np.float32) + np.float32(eps)
        np.clip(y, 0, 1, out=y)
        y *= np.float32(top)
        flat_out[start:start + QUANTIZE_BLOCK] = np.floor(y, out=y)
    return out


def check_unit_range(x: np.ndarray) -> None:
    """Raise a ValueError that says what was expected unless every value of the float array
    ``x`` is finite and in [0, 1] (w2x refuses rather than clips: a 0..255 float image
    clipped to [0, 1] would come out washed out)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("the image contains NaN or infinite values; expected floats in [0, 1]")
    if lo < 0 or hi > 1:
        hint = "; it looks like 0..255: divide by 255 first" if lo >= 0 and hi <= 255 else ""
        raise ValueError(f"expected pixel values in [0, 1], got {lo:g}..{hi:g}{hint}")


def to_unit_float(samples: np.ndarray) -> np.ndarray:
    """Samples as float32 in [0, 1]: uint8 / 255 and uint16 / 65535 (image_loader.lua:94),
    float samples as they are once ``check_unit_range`` accepts them."""
    if samples.dtype in (np.uint8, np.uint16):
        return samples.astype(np.float32) / np.float32(np.iinfo(samples.dtype).max)
    check_unit_range(samples)
    return samples.astype(np.float32, copy=False)
