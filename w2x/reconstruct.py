"""Reconstruction: one float image through one model, tile by tile, as lib/reconstruct.lua.

``image`` (1x models) and ``scale`` (2x models) take a float32 (C, H, W) RGB image in [0, 1]
and return the clamped float32 result.  In order, each:

1. pre-scales by nearest neighbour for models that do not upsample themselves (vgg_7 in a
   scale mode: GraphicsMagick "Box" at an integer 2x is pixel replication, reconstruct.lua:192);
2. edge-pads by the model's ``input_offset`` and runs the net on square tiles, streamed in
   batches, so memory does not grow with the number of tiles (``tiling.py``);
3. for Y models, feeds the net the luma and takes chroma from the input (1x) or from a
   GraphicsMagick Lanczos 2x of it (scale_y, reconstruct.lua:147-173);
4. crops, clamps; with TTA, averages the 8 flip/transpose patterns (reconstruct.lua:253-347).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from w2x import color, tiling
from w2x.nn.backend import Backend, get_backend
from w2x.stream import plan_batch, stream_tiles
from w2x.nn.models import Model
from w2x.resize import gm_resize

SCALE = 2                     # only 2x models exist (scale2.0x_model); larger factors repeat passes
DEFAULT_TILE_SIZE = 256       # -crop_size 256 (waifu2x.lua:262)

ProgressFn = Callable[[int, int], None]  # (tiles done, tiles total) of the current pass

# TTA patterns (reconstruct.lua:253-292) as (forward, backward) on (C, H, W) arrays.
# torch image.hflip flips columns, image.vflip rows, tr_f swaps rows and columns.
_hflip = lambda a: a[:, :, ::-1]          # noqa: E731
_vflip = lambda a: a[:, ::-1, :]          # noqa: E731
_tr = lambda a: a.transpose(0, 2, 1)      # noqa: E731
TTA_PATTERNS = [
    (lambda a: a, lambda a: a),
    (_hflip, _hflip),
    (_vflip, _vflip),
    (lambda a: _hflip(_vflip(a)), lambda a: _vflip(_hflip(a))),
    (_tr, _tr),
    (lambda a: _hflip(_tr(a)), lambda a: _tr(_hflip(a))),
    (lambda a: _vflip(_tr(a)), lambda a: _tr(_vflip(a))),
    (lambda a: _hflip(_vflip(_tr(a))), lambda a: _tr(_vflip(_hflip(a)))),
]
TTA_LEVELS = {1: (0,), 2: (0, 4), 4: (0, 4, 1, 6), 8: tuple(range(8))}  # get_augmented_patterns


def image(model: Model, x: np.ndarray, *, tile_size: int = DEFAULT_TILE_SIZE, tta_level: int = 1,
          backend: str | Backend = "auto", batch_size: int | None = None,
          progress: ProgressFn | None = None) -> np.ndarray:
    """1x reconstruction (``reconstruct.image`` / ``image_tta``): (C, H, W) -> (C, H, W).

    ``x`` is float32 RGB (C = 3), or one channel (C = 1: alpha), which is replicated to RGB
    and collapsed with ``rgb2y`` afterwards (reconstruct.lua:207-230).
    """
    f = _image_y if model.config.channels == 1 else _image_rgb
    return _run(f, model, x, tile_size, tta_level, backend, batch_size, progress)


def scale(model: Model, x: np.ndarray, *, tile_size: int = DEFAULT_TILE_SIZE, tta_level: int = 1,
          backend: str | Backend = "auto", batch_size: int | None = None,
          progress: ProgressFn | None = None) -> np.ndarray:
    """2x reconstruction (``reconstruct.scale`` / ``scale_tta``): (C, H, W) -> (C, 2H, 2W)."""
    f = _scale_y if model.config.channels == 1 else _scale_rgb
    return _run(f, model, x, tile_size, tta_level, backend, batch_size, progress)


def _run(f, model, x, tile_size, tta_level, backend, batch_size, progress) -> np.ndarray:
    if tta_level not in TTA_LEVELS:
        raise ValueError(f"TTA level must be one of 1, 2, 4, 8, got {tta_level}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected a float image of shape (3, H, W) or (1, H, W), got {x.shape}")
    be = get_backend(backend) if isinstance(backend, str) else backend
    i2rgb = x.shape[0] == 1
    if i2rgb:
        x = np.repeat(x, 3, axis=0)                                    # (1, H, W) -> (3, H, W)

    def once(xi):
        return f(model, np.ascontiguousarray(xi), tile_size, be, batch_size, progress)

    patterns = [TTA_PATTERNS[k] for k in TTA_LEVELS[tta_level]]
    out = None
    for forward, backward in patterns:
        y = backward(once(forward(x)))
        # no copy of the first pass: it is a fresh array (a view of one with TTA), and the
        # copy would double the peak memory (768 MB more for a 4000x4000 RGB 2x)
        out = y if out is None else np.add(out, y, out=out)
    if len(patterns) > 1:
        out /= np.float32(len(patterns))
    return color.rgb2y(out) if i2rgb else np.ascontiguousarray(out)


def _image_rgb(model, x, tile_size, be, batch_size, progress):
    """image_rgb (reconstruct.lua:174-188)."""
    return run_net(model, x, tile_size, be, batch_size, progress)


def _scale_rgb(model, x, tile_size, be, batch_size, progress):
    """scale_rgb (reconstruct.lua:189-206): Box (= nearest) 2x first when the net does not resize."""
    return run_net(model, x, tile_size, be, batch_size, progress, _prescale(model))


def _prescale(model) -> int:
    """Pixel-replication factor before the net in a scale mode: 2 for vgg_7, 1 for the nets
    that upsample themselves (reconstruct.lua:191-192 ``has_resize``)."""
    return SCALE // model.config.scale


def _image_y(model, x, tile_size, be, batch_size, progress):
    """image_y (reconstruct.lua:131-146): the net denoises luma, chroma is the input's."""
    yuv = color.rgb2yuv(x)
    yuv[0] = run_net(model, yuv[:1], tile_size, be, batch_size, progress)[0]
    return np.clip(color.yuv2rgb(yuv), 0.0, 1.0)


def _scale_y(model, x, tile_size, be, batch_size, progress):
    """scale_y (reconstruct.lua:147-173): luma from the net on the Box-2x (vgg_7) input, chroma
    from a GraphicsMagick Lanczos 2x of the unpadded input."""
    c, h, w = x.shape
    yuv = color.rgb2yuv(gm_resize(x, h * SCALE, w * SCALE, "lanczos"))
    yuv[0] = run_net(model, color.rgb2y(x), tile_size, be, batch_size, progress, _prescale(model))[0]
    return np.clip(color.yuv2rgb(yuv), 0.0, 1.0)


def run_net(model: Model, x: np.ndarray, tile_size: int, be: Backend, batch_size: int | None = None,
            progress: ProgressFn | None = None, prescale: int = 1) -> np.ndarray:
    """Pad, run every tile, paste, crop (``reconstruct_nn``, reconstruct.lua:5-66).

    x : float32 (C, H, W), C = the model's channels.  The net sees ``x`` upscaled ``prescale``
    times by pixel replication (GraphicsMagick Box at an integer factor, iproc.lua:51-67) and
    edge-padded by the model's input offset (``iproc.padding``, "clamp").  Neither the
    upscaled nor the padded image is built: each tile gathers its pixels through clamped,
    divided indices, which is the same thing.  Returns float32 (C, H*p*s, W*p*s).

    Tiles stream through ``gpu_stream.stream_tiles`` ``batch_size`` at a time (None: as many
    as fit the GPU, one on a CPU), so one GEMM per layer covers a batch and only that batch
    lives on the device, never the whole image.
    """
    c, h0, w0 = x.shape
    if c != model.config.channels:
        raise ValueError(f"model takes {model.config.channels} channel(s), got {c}")
    h, w = h0 * prescale, w0 * prescale
    grid = tiling.plan(h, w, model.config, tile_size)
    s, t, ot = grid.scale, grid.tile, grid.out_tile
    out = np.empty((c, h * s, w * s), dtype=np.float32)
    corners = list(grid.tiles())
    span = np.arange(t) - grid.pad_lo

    def tiles():
        for r, q in corners:
            rows = np.clip(r + span, 0, h - 1) // prescale       # padded row -> source row
            cols = np.clip(q + span, 0, w - 1) // prescale
            yield x[:, rows[:, None], cols[None, :]]             # (C, t, t)

    def paste(i, y):                                             # y (C, ot, ot)
        r, q = corners[i]
        # at (r*s, q*s), clipped to the cropped canvas (reconstruct.lua:51-63, :201)
        oh, ow = min(ot, h * s - r * s), min(ot, w * s - q * s)
        out[:, r * s:r * s + oh, q * s:q * s + ow] = y[:, :oh, :ow]
        if progress is not None:
            progress(i + 1, len(corners))

    stream_tiles(model, be, tiles(), paste, batch_size or _auto_batch(model, be, t))
    return out  # already in [0, 1]: every model ends with InplaceClip01


def _auto_batch(model: Model, be: Backend, tile: int) -> int:
    """Tiles per forward: what fits the GPU's free memory; one on a CPU, where a bigger batch
    only grows the im2col buffers (the GEMM is already large at one 256 px tile)."""
    return plan_batch(model.config, tile) if be.name.startswith("cupy") else 1
