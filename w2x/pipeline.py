"""The whole conversion of one float image, as waifu2x.lua ``convert_image`` (waifu2x.lua:41-139).

    float RGB + alpha --make_border--> [denoise 1x] --> [upscale 2x] --> ... --> resize --> RGB + alpha
                                                        (alpha: 2x by the scale model)

``resolve_models`` turns ``Options`` into a ``Plan``: the step functions of
``reconstruct.py`` and the models they run, found by mode, noise level and style
(``store.py``) and loaded once per process.  ``convert_planes`` runs the plans of every 2x
pass a target size needs (``anyscale.py``), then resizes to it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from w2x import anyscale, reconstruct
from w2x.alpha import make_border
from w2x.anyscale import Target
from w2x.nn.backend import get_backend
from w2x.nn.models import Model
from w2x.reconstruct import ProgressFn
from w2x.store import MODES, ModelNotFoundError, model_filename, resolve_model
from w2x.weight_cache import load_model

# composite() calls the original's reconstruct.scale(model2x, 2.0, alpha) with no block size, which falls
# back to 128 (alpha_util.lua:53, reconstruct.lua scale_rgb `block_size or 128`).
ALPHA_TILE_SIZE = 128

Step = Callable[..., np.ndarray]   # reconstruct.denoise or reconstruct.upscale2x


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
    """The models one pass runs: ``steps`` in order, and the 2x model used for make_border's
    depth and the alpha channel (None in noise mode).  ``notes`` say where a stand-in model
    runs for a style's default that is not installed (``store.fallback_note``), for the caller
    to show once."""
    steps: tuple[tuple[Step, Model], ...]     # (reconstruct.denoise | reconstruct.upscale2x, model)
    scale_model: Model | None = None
    notes: tuple[str, ...] = ()


@functools.lru_cache(maxsize=32)
def _load_cached(path: str) -> Model:
    return load_model(path)


def _find(opts: Options, mode: str, notes: list[str]) -> Model:
    path, note = resolve_model(model_filename(mode, opts.noise_level), style=opts.style,
                               model_dir=opts.model_dir, mode=mode)
    if note is not None and note not in notes:
        notes.append(note)
    return _load_cached(str(path))


def resolve_models(opts: Options) -> Plan:
    """Find and load the models for ``opts`` (waifu2x.lua:63-117).

    noise_scale runs the fused ``noise{N}_scale2.0x`` model where it exists, else denoises at
    1x and then scales.  Raises ``ModelNotFoundError`` naming where it looked (and
    ``store.ModelDirError`` for a model folder that is not one).
    """
    notes: list[str] = []
    if opts.mode == "noise":
        return Plan(((reconstruct.denoise, _find(opts, "noise", notes)),), notes=tuple(notes))
    scale_model = _find(opts, "scale", notes)
    if opts.mode == "scale":
        return Plan(((reconstruct.upscale2x, scale_model),), scale_model, tuple(notes))
    try:
        steps = ((reconstruct.upscale2x, _find(opts, "noise_scale", notes)),)
    except ModelNotFoundError:
        steps = ((reconstruct.denoise, _find(opts, "noise", notes)), (reconstruct.upscale2x, scale_model))
    return Plan(steps, scale_model, tuple(notes))


def resolve_plans(opts: Options) -> dict[str, Plan]:
    """The plans a run needs, loaded up front (once): ``opts.mode``'s and, for the scale
    modes, ``scale``'s (every 2x pass after the first).  Raises ``ModelNotFoundError``
    before any image is read."""
    modes = [opts.mode] + (["scale"] if opts.mode == "noise_scale" else [])
    return {m: resolve_models(replace(opts, mode=m)) for m in modes}


def convert_planes(rgb: np.ndarray, alpha: np.ndarray | None, opts: Options = Options(),
                   target: Target = Target(), *, filter: str = anyscale.DEFAULT_FILTER,
                   plans: dict[str, Plan] | None = None, progress: ProgressFn | None = None):
    """Convert one float image to the ``target`` size.

    Parameters
    ----------
    rgb : float32 (3, H, W) in [0, 1]
    alpha : float32 (1, H, W) or None
    opts : mode, noise level, models, tiles; ``opts.mode`` applies to the first pass
    target : factor or size (default 2x); the identity for ``-m noise``
    filter : one of ``anyscale.FILTERS``, from the last 2x pass down to the target
    plans : from ``resolve_plans`` (resolved here when missing)
    progress : called with (tiles done, tiles total) for each network pass

    Returns
    -------
    (rgb, alpha) : float32 (3, H', W') and (1, H', W') or None, in [0, 1].

    Notes
    -----
    Each 2x pass is waifu2x.lua's ``convert_image``: make_border before it, the plan's steps,
    and alpha upscaled by the *scale* model with no TTA at tile size 128 (alpha_util.lua:47-64);
    in noise mode alpha is kept as is.  The noise model runs in the first pass only
    (``anyscale.pass_modes``).
    """
    if filter not in anyscale.FILTERS:
        raise ValueError(f"downscale filter must be one of {', '.join(anyscale.FILTERS)}, got {filter!r}")
    anyscale.check_target(opts.mode, target)
    h, w = rgb.shape[1:]
    out_h, out_w = target.size(h, w)
    plans = dict(plans or {})
    kw = dict(tile_size=opts.tile_size, tta_level=opts.tta_level,
              backend=get_backend(opts.backend, opts.precision),
              batch_size=opts.batch_size, progress=progress)
    for mode in anyscale.pass_modes(opts.mode, anyscale.count_passes(h, w, out_h, out_w)):
        if mode not in plans:
            plans[mode] = resolve_models(replace(opts, mode=mode))
        plan = plans[mode]
        if alpha is not None and plan.scale_model is not None:
            rgb = make_border(rgb, alpha, plan.scale_model.config.offset)
        for step, model in plan.steps:
            rgb = step(model, rgb, **kw)
        if alpha is not None and alpha.shape[1:] != rgb.shape[1:]:
            alpha = reconstruct.upscale2x(plan.scale_model, alpha,
                                          **{**kw, "tile_size": ALPHA_TILE_SIZE, "tta_level": 1})
    if rgb.shape[1:] != (out_h, out_w):
        rgb = anyscale.resize(rgb, out_h, out_w, filter)
        alpha = None if alpha is None else anyscale.resize(alpha, out_h, out_w, filter)
    return rgb, alpha
