"""Slow, obvious loop references for the network primitives (tests only).

Written from the definitions, in float64, sharing no code with w2x/nn/ops.py.
"""
from __future__ import annotations

import numpy as np


def conv2d_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1) -> np.ndarray:
    """Cross-correlation, no padding.  x (N, C, H, W), w (OC, C, k, k), b (OC,) -> (N, OC, OH, OW)."""
    n, c, h, wd = x.shape
    oc, _, k, _ = w.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    y = np.zeros((n, oc, oh, ow))
    for i in range(n):
        for o in range(oc):
            for r in range(oh):
                for q in range(ow):
                    window = x[i, :, r * stride:r * stride + k, q * stride:q * stride + k]
                    y[i, o, r, q] = np.sum(window * w[o]) + b[o]
    return y


def conv_transpose2d_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """torch SpatialFullConvolution by scattering every input pixel.

    x (N, C, H, W), w (C, OC, k, k), b (OC,) -> (N, OC, (H-1)*stride - 2*pad + k, ...)."""
    n, c, h, wd = x.shape
    _, oc, k, _ = w.shape
    full = np.zeros((n, oc, (h - 1) * stride + k, (wd - 1) * stride + k))
    for i in range(n):
        for ci in range(c):
            for r in range(h):
                for q in range(wd):
                    full[i, :, r * stride:r * stride + k, q * stride:q * stride + k] += x[i, ci, r, q] * w[ci]
    oh, ow = (h - 1) * stride - 2 * pad + k, (wd - 1) * stride - 2 * pad + k
    return full[:, :, pad:pad + oh, pad:pad + ow] + b[None, :, None, None]
