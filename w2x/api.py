"""The library entry points: ``convert`` (PIL images and NumPy arrays in, the same out) and
``load_model`` (a JSON file, or a model name such as ``"upconv_7/art/scale2.0x"``).

Convert stage: arrays are checked here, where they enter, and turned into the float planes
``pipeline.convert_planes`` works on; nothing is guessed (a float array must already be in
[0, 1]).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from w2x import pipeline, weight_cache
from w2x.alpha import split_alpha
from w2x.anyscale import Target
from w2x.color import check_unit_range, quantize, rgb2y, to_unit_float
from w2x.nn import models
from w2x.reconstruct import DEFAULT_TILE_SIZE, ProgressFn
from w2x.store import find_model


def convert(image, *, mode: str = "noise_scale", noise_level: int = 1, style: str = "art",
            model_dir: str | Path | None = None, scale: float | None = None,
            tile_size: int = DEFAULT_TILE_SIZE, tta_level: int = 1, backend: str = "auto",
            batch_size: int | None = None, progress: ProgressFn | None = None):
    """Denoise and/or upscale an image with the original waifu2x models.

    Parameters
    ----------
    image : PIL.Image.Image, or ndarray (H, W), (H, W, 1..4) of uint8, uint16, or float in [0, 1]
    mode, noise_level, style, model_dir, tile_size, tta_level, backend, batch_size :
        see ``pipeline.Options``
    scale : any factor > 0 (default 2; 1 for ``mode="noise"``): 2x passes, then a Lanczos
        resize to the exact size, as the CLI's ``-s``
    progress : called with (tiles done, tiles total) for each network pass

    Returns
    -------
    The same kind as the input: a PIL image (mode RGB/RGBA/L/LA), or an ndarray of the
    input's dtype and channel count.  Integer outputs use the original's rounding
    ``floor(v*(2^d-1) + 0.5 - 0.5e-7)`` (image_loader.lua:21-34).

    Raises
    ------
    ValueError
        an array that is empty, not (H, W[, C]), of another dtype, with NaN or infinite
        values, or a float array outside [0, 1]; a path (open it first); bad options.
    """
    opts = pipeline.Options(mode, noise_level, style, model_dir, tile_size, tta_level, backend,
                            batch_size=batch_size)
    target = Target(scale if scale is not None else 1.0 if mode == "noise" else 2.0)
    is_pil = hasattr(image, "mode") and hasattr(image, "size") and hasattr(image, "getbands")
    arr = _pil_to_array(image) if is_pil else _check_array(image)
    rgb, alpha, restore = _split(arr)
    plans = pipeline.resolve_plans(opts)
    for note in dict.fromkeys(n for plan in plans.values() for n in plan.notes):
        warnings.warn(note, stacklevel=2)         # a stand-in model runs for the style's default
    rgb, alpha = pipeline.convert_planes(rgb, alpha, opts, target, plans=plans, progress=progress)
    out = restore(rgb, alpha)
    if is_pil:
        from PIL import Image
        return Image.fromarray(out)
    return out


def load_model(name_or_path: str | Path) -> models.Model:
    """Load a waifu2x JSON model from a file, or by name: ``"<arch>/<style>/<file>"`` such as
    ``"upconv_7/art/scale2.0x"`` or ``"vgg_7/photo/noise1_model"``, found where ``w2x``
    finds models (``--model-dir``'s search order: ``$W2X_MODEL_DIR``, the cache, the bundle)."""
    path = Path(name_or_path)
    if path.is_file() or path.suffix in (".json", ".gz"):
        return weight_cache.load_model(path)
    parts = str(name_or_path).strip("/").split("/")
    if len(parts) != 3:
        raise FileNotFoundError(f"model file not found: {name_or_path}; expected a file, or a "
                                "name <arch>/<style>/<file> such as upconv_7/art/scale2.0x")
    arch, style, name = parts
    name = name if name.endswith("_model") else f"{name}_model"
    return weight_cache.load_model(find_model(name, style=f"{arch}/{style}"))


def _check_array(image) -> np.ndarray:
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        raise ValueError(f"expected a PIL image or an image array, got a path {image!r}; "
                         "open it first (PIL.Image.open) or use the w2x command")
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or 0 in arr.shape or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected uint8, uint16 or float pixels, got {arr.dtype}")
    check_unit_range(arr)
    return arr


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
    kind = arr.dtype
    x = to_unit_float(arr).transpose(2, 0, 1)                    # (H, W, C) -> (C, H, W)
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
