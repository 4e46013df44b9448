"""Training stage: the loss, ``ClippedWeightedHuberCriterion`` (lib/ClippedWeightedHuberCriterion.lua,
train.lua:343-359), and the validation metric ``ClippedMSECriterion``.

Activations are (C, N, H, W) as in ``w2x/nn/ops.py``.
"""
from __future__ import annotations

import numpy as np

HUBER_DELTA = 0.1
# luma-weighted channel weights, x3 so that they average 1 (train.lua:343-359)
RGB_WEIGHTS = (0.29891 * 3, 0.58661 * 3, 0.11448 * 3)


def channel_weights(channels: int, dtype=np.float32) -> np.ndarray:
    """(C, 1, 1, 1) weights: the RGB luma weights, or 1 for a Y model."""
    w = RGB_WEIGHTS if channels == 3 else (1.0,) * channels
    return np.asarray(w, dtype=dtype).reshape(channels, 1, 1, 1)


def clipped_weighted_huber(out, target):
    """Loss and its gradient: ``d = (clamp(out, 0, 1) - target) * w``, Huber(δ = 0.1)
    (0.5 d² if |d| < δ, else δ(|d| - δ/2)), summed and divided by the element count.

    out, target : (C, N, H, W).  Returns (loss: float, dloss/dout with out's shape); the
    gradient is 0 where the clamp is flat (out outside (0, 1)).
    """
    w = channel_weights(out.shape[0], out.dtype)
    d = (np.clip(out, 0, 1) - target) * w
    a = np.abs(d)
    small = a < HUBER_DELTA
    loss = np.where(small, 0.5 * d * d, HUBER_DELTA * (a - 0.5 * HUBER_DELTA)).sum() / d.size
    dd = np.where(small, d, HUBER_DELTA * np.sign(d)) * w / d.size
    return float(loss), (dd * ((out > 0) & (out < 1))).astype(out.dtype)


def clipped_mse(out, target) -> float:
    """``ClippedMSECriterion``: mean of (clamp(out, 0, 1) - target)²."""
    d = np.clip(out, 0, 1).astype(np.float64) - target
    return float(np.mean(d * d))


def instance_mse(out, target) -> np.ndarray:
    """Each patch's clipped MSE: (C, N, H, W) -> (N,) float64 (minibatch_adam.lua's
    instance_loss, from which the hard examples are drawn)."""
    d = np.clip(out, 0, 1).astype(np.float64) - target
    return np.mean(d * d, axis=(0, 2, 3))


def psnr_of_mse(mse: float) -> float:
    """PSNR of the validation MSE, ``10 log10(1 / (mse + 1e-6))`` (train.lua validate)."""
    return float(10 * np.log10(1.0 / (mse + 1e-6)))
