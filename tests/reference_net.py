"""An independent whole-image reference for the sequential waifu2x nets (tests only).

Reads the original JSON itself (no w2x loader), edge-pads the whole image once and runs
every layer in float64 as a ``tensordot`` over ``sliding_window_view`` windows: no tiles, no
im2col, no code shared with w2x.  For vgg_7 and upconv_7, which see only a fixed
neighbourhood of each pixel, that is what the original's tiled reconstruction computes
(lib/reconstruct.lua:5-66 with iproc.padding "clamp").
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LEAKY_SLOPE = 0.1   # nn.LeakyReLU(0.1) after every layer but the last (lib/srcnn.lua)


def load_layers(path: Path) -> list[dict]:
    raw = Path(path).read_bytes()
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid cross-correlation: x (C, H, W), w (OC, C, k, k) -> (OC, H-k+1, W-k+1)."""
    k = w.shape[-1]
    windows = sliding_window_view(x, (k, k), axis=(1, 2))                # (C, OH, OW, k, k)
    y = np.tensordot(windows, w, axes=([0, 3, 4], [1, 2, 3]))            # (OH, OW, OC)
    return y.transpose(2, 0, 1) + b[:, None, None]


def _full_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """SpatialFullConvolution: x (C, H, W), w (C, OC, k, k) scattered with ``stride``, cropped by ``pad``."""
    c, h, wd = x.shape
    oc, k = w.shape[1], w.shape[-1]
    full = np.zeros((oc, (h - 1) * stride + k, (wd - 1) * stride + k))
    for i in range(k):
        for j in range(k):
            full[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (wd - 1) + 1:stride] += \
                np.tensordot(w[:, :, i, j], x, axes=([0], [0]))         # (OC, H, W)
    oh, ow = (h - 1) * stride - 2 * pad + k, (wd - 1) * stride - 2 * pad + k
    return full[:, pad:pad + oh, pad:pad + ow] + b[:, None, None]


def sequential_net(path: Path, x: np.ndarray, prescale: int) -> np.ndarray:
    """The whole image through a vgg_7 / upconv_7 JSON model: x float (C, H, W) in [0, 1],
    pixel-replicated ``prescale`` times (vgg_7 in a scale mode) and edge-padded by 7 (both
    nets lose 7 input pixels per side); returns float64 (C, H*s, W*s), clipped to [0, 1]."""
    layers = load_layers(path)
    x = np.repeat(np.repeat(np.asarray(x, np.float64), prescale, axis=1), prescale, axis=2)
    x = np.pad(x, ((0, 0), (7, 7), (7, 7)), mode="edge")
    for n, layer in enumerate(layers):
        w, b = np.asarray(layer["weight"], np.float64), np.asarray(layer["bias"], np.float64)
        if "FullConvolution" in layer.get("class_name", ""):
            x = _full_conv(x, w, b, layer["dW"], layer["padW"])
        else:
            x = _conv(x, w, b)
        if n < len(layers) - 1:
            x = np.maximum(x, LEAKY_SLOPE * x)
    return np.clip(x, 0.0, 1.0)


def to_integers(y: np.ndarray, depth: int) -> np.ndarray:
    """The original's rounding, ``floor(v*(2^d-1) + 0.5 - 0.5e-7)`` (image_loader.lua:8-34)."""
    top = 2 ** depth - 1
    return np.floor(np.clip(y + (0.5 - 0.5e-7) / top, 0, 1) * top).astype(np.int64)
