"""Pre/post-processing: torch ``image`` package colour transforms used by the Y (luma) models.

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
