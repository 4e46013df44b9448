"""Pre/post-processing of transparency, as nagadomi/waifu2x lib/alpha_util.lua does it."""
from __future__ import annotations

import numpy as np

MAKE_BORDER_EPS = np.float32(1.0e-7)  # alpha_util.lua:20, keeps the division finite
BACKGROUND_COLOR = 0.5  # RGB of fully transparent pixels; image_loader.lua:10, :98-102


def split_alpha(rgb: np.ndarray, alpha: np.ndarray | None):
    """What the loader keeps of transparency (image_loader.lua:94-108): ``alpha`` only when
    some pixel is not fully opaque, and RGB under alpha == 0 painted ``BACKGROUND_COLOR``
    (in place).  rgb (3, H, W), alpha (1, H, W) or None -> (rgb, alpha or None)."""
    if alpha is None or alpha.min() >= 1:
        return rgb, None
    rgb[:, alpha[0] <= 0] = BACKGROUND_COLOR
    return rgb, alpha


def _box3x3_sum(a: np.ndarray) -> np.ndarray:
    """3x3 box sum with zero padding: SpatialConvolutionMM(1,1,3,3,1,1,1,1), weight 1, bias 0.
    a (H, W) -> (H, W)."""
    p = np.pad(a, 1)
    h, w = a.shape
    rows = p[:-2] + p[1:-1] + p[2:]                    # (H, W+2): vertical 3-sums
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]  # (H, W)


def make_border(rgb: np.ndarray, alpha: np.ndarray, offset: int) -> np.ndarray:
    """Spread the colours of visible pixels into the transparent area, ``offset`` pixels deep.

    Reproduces ``alpha_util.make_border`` (lib/alpha_util.lua:9-46): RGB under alpha == 0 is
    zeroed, then ``offset`` times each still-invisible pixel takes the mean of its visible
    3x3 neighbours and the visible mask grows by one pixel.  Pixels farther than ``offset``
    from any visible pixel stay 0.  Called before scaling only (noise mode skips it).

    Parameters
    ----------
    rgb : float32 (3, H, W);  alpha : float32 (1, H, W);  offset : the scale model's offset

    Returns
    -------
    float32 (3, H, W) in [0, 1] (a new array)
    """
    mask = (alpha[0] > 0).astype(np.float32)         # (H, W) 1 = visible
    rgb = rgb * mask                                  # zero where alpha == 0
    for _ in range(offset):
        weight = _box3x3_sum(mask)
        hidden = mask == 0
        for c in range(3):
            border = _box3x3_sum(rgb[c]) / (weight + MAKE_BORDER_EPS)
            rgb[c][hidden] = border[hidden]
        mask = (weight > 0).astype(np.float32)
    return np.clip(rgb, 0.0, 1.0, out=rgb)
