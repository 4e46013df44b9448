"""Colour profiles: ICC -> sRGB on reading and back on writing (stages 1 and 3, io).

The original converts embedded profiles with GraphicsMagick (lib/image_loader.lua:77-83 on
load, :51-57 on save); here LittleCMS through Pillow's ImageCms, which works on 8-bit
samples, with an interpolation that keeps 16-bit sources free of 8-bit banding
(``convert_profile``). The original uses sRGB2014.icc; this uses LittleCMS's built-in sRGB.
"""
from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageCms

LATTICE_SNAP = 1e-3  # in 8-bit steps: float32 noise of k/255, far below a 16-bit step (0.0039)


def convert_profile(x: np.ndarray, transform: ImageCms.ImageCmsTransform) -> np.ndarray:
    """Run float planes through an 8-bit LittleCMS transform without 8-bit banding.

    Parameters
    ----------
    x : np.ndarray
        float32 (C, H, W) in [0, 1]; C matches the transform's input mode (1 L, 3 RGB,
        4 CMYK).
    transform : ImageCms.ImageCmsTransform
        From `icc_transform`.

    Returns
    -------
    np.ndarray
        float32 (C', H, W), C' for the output mode (1 L or 3 RGB).

    Notes
    -----
    Pillow's colour transforms take 8-bit samples only (it has no 16-bit RGB mode). Samples
    on the 8-bit lattice (all 8-bit sources) go through one transform and the result is
    exactly LittleCMS's. Other samples (16-bit sources) are interpolated between the C + 1
    lattice corners of their simplex (tetrahedral interpolation, as LittleCMS does inside
    its own tables), each corner transformed by LittleCMS: the result is continuous and
    monotone where the transform is, and off by at most the 8-bit output rounding of the
    corners (0.5/255) plus the interpolation error over one 8-bit cell.
    """
    s = np.clip(x, 0, 1).astype(np.float32) * 255          # (C, H, W)
    near = np.rint(s)
    s = np.where(np.abs(s - near) < LATTICE_SNAP, near, s)  # float noise of k/255
    lo = np.minimum(np.floor(s), 254)                      # lower corner; lo + 1 <= 255
    frac = s - lo                                          # (C, H, W) in [0, 1]
    corner = lo.astype(np.uint8)
    if not frac.any():
        return _apply_transform(corner, transform)
    # walk from the lower corner to the upper one, channels in order of falling fraction
    order = np.argsort(-frac, axis=0, kind="stable")       # (C, H, W) channel indices
    frac_sorted = np.take_along_axis(frac, order, axis=0)  # (C, H, W), descending
    y = (1 - frac_sorted[0])[None] * _apply_transform(corner, transform)
    c = x.shape[0]
    for k in range(c):
        step = order[k:k + 1]                              # (1, H, W)
        np.put_along_axis(corner, step, np.take_along_axis(corner, step, axis=0) + 1, axis=0)
        weight = frac_sorted[k] - (frac_sorted[k + 1] if k + 1 < c else 0)
        y += weight[None] * _apply_transform(corner, transform)
    return np.clip(y, 0, 1, out=y)


def _apply_transform(q: np.ndarray, transform: ImageCms.ImageCmsTransform) -> np.ndarray:
    """uint8 (C, H, W) -> float32 (C', H, W) through a LittleCMS transform."""
    c, h, w = q.shape
    hwc = np.ascontiguousarray(q.transpose(1, 2, 0))      # (C, H, W) -> (H, W, C)
    out = ImageCms.applyTransform(Image.frombytes(transform.input_mode, (w, h), hwc.tobytes()),
                                  transform)
    y = np.asarray(out, dtype=np.float32) / 255
    return y.reshape(h, w, -1).transpose(2, 0, 1)         # (H, W, C') -> (C', H, W)


@functools.lru_cache(maxsize=16)
def icc_transform(profile: bytes, in_mode: str, out_mode: str, to_srgb: bool):
    """LittleCMS transform between an embedded profile and sRGB (cached per profile)."""
    embedded = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    src, dst = (embedded, srgb) if to_srgb else (srgb, embedded)
    return ImageCms.buildTransform(src, dst, in_mode, out_mode)


def profile_mode(profile: bytes) -> str | None:
    """Pillow mode of an ICC profile's colour space ("L", "RGB", "CMYK"); None if unusable."""
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space
    except (OSError, ImageCms.PyCMSError, TypeError, ValueError):
        return None
    return {"GRAY": "L", "RGB ": "RGB", "CMYK": "CMYK"}.get(space)
