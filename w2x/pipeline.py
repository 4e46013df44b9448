"""The whole conversion of one image, as waifu2x.lua ``convert_image`` (waifu2x.lua:41-139).

    float RGB + alpha  --make_border-->  [denoise 1x]  -->  [scale 2x]  -->  RGB + alpha
                                                           (alpha: 2x by the scale model)

``process`` works on float arrays; ``convert`` is the library entry point that takes and
returns NumPy arrays or PIL images.  Models are resolved by mode, noise level and style
(``model_store.py``) and loaded once per process.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from w2x import reconstruct
from w2x.alpha import make_border, split_alpha
from w2x.nn.backend import get_backend
from w2x.color import quantize, rgb2y
from w2x.store import ModelNotFoundError, find_model, model_filename
from w2x.nn.models import Model, load_model
from w2x.reconstruct import ProgressFn

MODES = ("noise", "scale", "noise_scale")
# composite() calls reconstruct.scale(model2x, 2.0, alpha) with no block size, which falls
# back to 128 (alpha_util.lua:53, reconstruct.lua scale_rgb `block_size or 128`).
ALPHA_TILE_SIZE = 128


@dataclass(frozen=True)
class Options:
    """What to do to an image; the defaults are the original CLI's (waifu2x.lua:252-271)."""
    mode: str = "noise_scale"           # -m
    noise_level: int = 1                # -noise_level
    style: str = "art"                  # art = cunet/art (web.lua:54-77), photo = upconv_7/photo
    model_dir: str | Path | None = None  # a folder holding the JSON files, instead of style
    tile_size: int = reconstruct.DEFAULT_TILE_SIZE   # -crop_size
    tta_level: int = 1                  # -tta 1 -tta_level N; 1 = off
    backend: str = "auto"               # numpy | numba | cupy | auto (the best available)
    precision: str = "fp32"             # GEMM precision on the GPU: fp32 | tf32 | fp16
    batch_size: int | None = None       # tiles per forward; None = as many as fit (GPU), 1 (CPU)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode != "scale" and self.noise_level not in (0, 1, 2, 3):
            raise ValueError(f"noise level must be 0, 1, 2 or 3, got {self.noise_level!r}")
        if self.tta_level not in reconstruct.TTA_LEVELS:
            raise ValueError(f"TTA level must be 1, 2, 4 or 8, got {self.tta_level!r}")
        if self.tile_size < 1:
            raise ValueError(f"tile size must be positive, got {self.tile_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")


@dataclass(frozen=True)
class Plan:
    """The models one conversion runs: ``steps`` in order, and the 2x model used for
    make_border's depth and the alpha channel (None in noise mode)."""
    steps: tuple[tuple[str, Model], ...]      # ("image" | "scale", model)
    scale_model: Model | None = field(default=None)


@functools.lru_cache(maxsize=32)
def _load_cached(path: str) -> Model:
    return load_model(path)


def _find(opts: Options, mode: str) -> Model:
    path = find_model(model_filename(mode, opts.noise_level), style=opts.style,
                      model_dir=opts.model_dir, mode=mode)
    return _load_cached(str(path))


def plan_models(opts: Options) -> Plan:
    """Resolve and load the models for ``opts`` (waifu2x.lua:63-117).

    noise_scale runs the fused ``noise{N}_scale2.0x`` model where it exists, else denoises at
    1x and then scales.  Raises ``ModelNotFoundError`` naming where it looked.
    """
    if opts.mode == "noise":
        return Plan((("image", _find(opts, "noise")),))
    scale_model = _find(opts, "scale")
    if opts.mode == "scale":
        return Plan((("scale", scale_model),), scale_model)
    try:
        return Plan((("scale", _find(opts, "noise_scale")),), scale_model)
    except ModelNotFoundError:
        return Plan((("image", _find(opts, "noise")), ("scale", scale_model)), scale_model)


def process(rgb: np.ndarray, alpha: np.ndarray | None, opts: Options = Options(), *,
            plan: Plan | None = None, progress: ProgressFn | None = None):
    """Convert one float image.

    Parameters
    ----------
    rgb : float32 (3, H, W) in [0, 1]
    alpha : float32 (1, H, W) or None
    opts : Options
    plan : the models to run (default: ``plan_models(opts)``)
    progress : called with (tiles done, tiles total) for each network pass

    Returns
    -------
    (rgb, alpha) : float32 (3, H', W') and (1, H', W') or None, H' = 2H in the scale modes.
        Alpha is upscaled by the *scale* model with no TTA, and in noise mode kept as is
        (alpha_util.lua:47-64); make_border runs before scaling only (waifu2x.lua:63-117).
    """
    plan = plan or plan_models(opts)
    kw = dict(tile_size=opts.tile_size, tta_level=opts.tta_level,
              backend=get_backend(opts.backend, opts.precision),
              batch_size=opts.batch_size, progress=progress)
    if alpha is not None and plan.scale_model is not None:
        rgb = make_border(rgb, alpha, plan.scale_model.config.offset)
    for kind, model in plan.steps:
        rgb = getattr(reconstruct, kind)(model, rgb, **kw)
    if alpha is not None and alpha.shape[1:] != rgb.shape[1:]:
        alpha = reconstruct.scale(plan.scale_model, alpha, **{**kw, "tile_size": ALPHA_TILE_SIZE,
                                                               "tta_level": 1})
    return rgb, alpha


def convert(image, *, mode: str = "noise_scale", noise_level: int = 1, style: str = "art",
            model_dir: str | Path | None = None, tile_size: int = reconstruct.DEFAULT_TILE_SIZE,
            tta_level: int = 1, backend: str = "auto"):
    """Denoise and/or upscale an image with the original waifu2x models.

    Parameters
    ----------
    image : PIL.Image.Image, or ndarray (H, W), (H, W, 3) or (H, W, 4) of uint8, uint16 or
        float in [0, 1]
    mode, noise_level, style, model_dir, tile_size, tta_level, backend : see ``Options``

    Returns
    -------
    The same kind as the input: a PIL image (mode RGB/RGBA/L/LA), or an ndarray of the
    input's dtype and channel count, 2x larger in the scale modes.  Integer outputs use the
    original's rounding ``floor(v*(2^d-1) + 0.5 - 0.5e-7)`` (image_loader.lua:21-34).
    """
    opts = Options(mode, noise_level, style, model_dir, tile_size, tta_level, backend)
    is_pil = hasattr(image, "mode") and hasattr(image, "size")
    arr = _pil_to_array(image) if is_pil else np.asarray(image)
    rgb, alpha, restore = _split(arr)
    rgb, alpha = process(rgb, alpha, opts)
    out = restore(rgb, alpha)
    if is_pil:
        from PIL import Image
        return Image.fromarray(out)
    return out


def _pil_to_array(img) -> np.ndarray:
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)                 # 16-bit grey, full precision
    has_alpha = "A" in img.getbands() or "transparency" in img.info
    grey = img.mode in ("L", "LA", "1")
    target = ("LA" if has_alpha else "L") if grey else ("RGBA" if has_alpha else "RGB")
    return np.asarray(img.convert(target))


def _split(arr: np.ndarray):
    """ndarray (H, W[, C]) -> float rgb (3, H, W), alpha (1, H, W) | None, and the inverse."""
    was_2d = arr.ndim == 2
    if was_2d:
        arr = arr[:, :, None]                                    # (H, W) -> (H, W, 1)
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    kind = arr.dtype
    if kind == np.uint8 or kind == np.uint16:
        x = arr.astype(np.float32) / np.float32(np.iinfo(kind).max)
    elif np.issubdtype(kind, np.floating):
        x = np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"expected uint8, uint16 or float pixels, got {kind}")
    x = x.transpose(2, 0, 1)                                     # (H, W, C) -> (C, H, W)
    n_colour = 1 if x.shape[0] in (1, 2) else 3
    rgb = np.ascontiguousarray(np.repeat(x[:1], 3, axis=0) if n_colour == 1 else x[:3])
    rgb, alpha = split_alpha(rgb, x[n_colour:n_colour + 1] if x.shape[0] in (2, 4) else None)

    def restore(rgb_out, alpha_out):
        chans = [rgb2y(rgb_out) if n_colour == 1 else rgb_out]
        if x.shape[0] in (2, 4):
            chans.append(alpha_out if alpha_out is not None else np.ones_like(rgb_out[:1]))
        y = np.concatenate(chans).transpose(1, 2, 0)             # (C, H, W) -> (H, W, C)
        if kind == np.uint8 or kind == np.uint16:
            y = quantize(y, 8 if kind == np.uint8 else 16)
        else:
            y = y.astype(kind)
        return y[:, :, 0] if was_2d else y

    return rgb, alpha, restore
