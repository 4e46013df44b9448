"""Reconstruction: one float image through one model, tile by tile, as lib/reconstruct.lua.

``denoise`` (1x models) and ``upscale2x`` (2x models) take a float32 (C, H, W) RGB image in
[0, 1] and return the clamped float32 result.  ``run_net`` is the three stages of the
source reading this project grew from (``w2x.convert`` -> ``pipeline.convert_planes`` ->
``upscale2x`` -> ``run_net`` -> ``stream.stream_tiles`` -> ``archs.forward_*`` -> ``Conv2d``):

1. preprocessing: pixel replication 2x for models that do not upsample themselves (vgg_7 in
   a scale mode: GraphicsMagick "Box" at an integer 2x, reconstruct.lua:192), edge padding
   by the model's ``input_offset``, cut into square tiles (``tiling.py``);
2. the model's forward pass over the tiles, streamed in batches (``stream.py``), so memory
   does not grow with the number of tiles;
3. postprocessing: each output tile pasted, cropped at the image's edge.

Around it, ``denoise``/``upscale2x`` feed Y models the luma and take chroma from the input
(1x) or from a GraphicsMagick Lanczos 2x of it (reconstruct.lua:131-173), and TTA averages
the 8 flip/transpose patterns (reconstruct.lua:253-347).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from w2x import color, tiling
from w2x.anyscale import PASS_FACTOR
from w2x.nn.backend import Backend, get_backend
from w2x.nn.memory import max_batch
from w2x.nn.models import Model
from w2x.resize import gm_resize
from w2x.stream import stream_tiles

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


def denoise(model: Model, x: np.ndarray, *, tile_size: int = DEFAULT_TILE_SIZE, tta_level: int = 1,
            backend: str | Backend = "auto", batch_size: int | None = None,
            progress: ProgressFn | None = None, halo: int = 0) -> np.ndarray:
    """1x reconstruction (the original's ``reconstruct.image`` / ``image_tta``): (C, H, W) -> (C, H, W).

    ``x`` is float32 RGB (C = 3) in [0, 1], or one channel (C = 1: alpha), which is
    replicated to RGB and collapsed with ``rgb2y`` afterwards (reconstruct.lua:207-230).
    A Y model denoises the luma; chroma is the input's (image_y, reconstruct.lua:131-146).
    ``halo``: ``x`` is a chunk with that much context on each side (``run_net``); RGB only.
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    mean = _TtaMean(check_image(x), tta_level)
    _check_halo(model, halo)
    for xi in mean.inputs():
        if model.config.channels == 1:
            yuv = color.rgb2yuv(xi)
            yuv[0] = run_net(model, yuv[:1], tile_size, be, batch_size, progress)[0]
            mean.add(np.clip(color.yuv2rgb(yuv), 0.0, 1.0))
        else:
            mean.add(run_net(model, xi, tile_size, be, batch_size, progress, halo=halo))
    return mean.result()


def upscale2x(model: Model, x: np.ndarray, *, tile_size: int = DEFAULT_TILE_SIZE, tta_level: int = 1,
              backend: str | Backend = "auto", batch_size: int | None = None,
              progress: ProgressFn | None = None, halo: int = 0) -> np.ndarray:
    """2x reconstruction (the original's ``reconstruct.scale`` / ``scale_tta``): (C, H, W) -> (C, 2H, 2W).

    vgg_7 sees the input pixel-replicated 2x first (Box, reconstruct.lua:189-206); the nets
    that upsample themselves see it as is (``has_resize``).  A Y model upscales the luma;
    chroma comes from a GraphicsMagick Lanczos 2x of the input (scale_y, reconstruct.lua:147-173).
    ``halo``: ``x`` is a chunk with that much context on each side (``run_net``); RGB only.
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    prescale = PASS_FACTOR // model.config.scale_factor
    mean = _TtaMean(check_image(x), tta_level)
    _check_halo(model, halo)
    for xi in mean.inputs():
        if model.config.channels == 1:
            h, w = xi.shape[1:]
            yuv = color.rgb2yuv(gm_resize(xi, h * PASS_FACTOR, w * PASS_FACTOR, "lanczos"))
            yuv[0] = run_net(model, color.rgb2y(xi), tile_size, be, batch_size, progress, prescale)[0]
            mean.add(np.clip(color.yuv2rgb(yuv), 0.0, 1.0))
        else:
            mean.add(run_net(model, xi, tile_size, be, batch_size, progress, prescale, halo))
    return mean.result()


def _check_halo(model: Model, halo: int) -> None:
    if halo and model.config.channels == 1:
        raise ValueError("a Y model's chroma comes from a resize of the whole image: "
                         "it cannot run on chunks with a halo")


class _TtaMean:
    """The mean over the TTA patterns of ``level`` (reconstruct.lua:293-347): ``inputs()``
    yields each flipped/transposed RGB input, ``add`` takes its result, ``result`` undoes
    the flips and averages.  A 1-channel input is run as RGB and collapsed to luma at the end."""

    def __init__(self, x: np.ndarray, level: int):
        if level not in TTA_LEVELS:
            raise ValueError(f"TTA level must be one of 1, 2, 4, 8, got {level}")
        self.one_channel = x.shape[0] == 1
        self.x = np.repeat(x, 3, axis=0) if self.one_channel else x   # (1, H, W) -> (3, H, W)
        self.patterns = [TTA_PATTERNS[k] for k in TTA_LEVELS[level]]
        self.sum = None
        self.backward = None

    def inputs(self):
        for forward, backward in self.patterns:
            self.backward = backward
            yield np.ascontiguousarray(forward(self.x))

    def add(self, y: np.ndarray) -> None:
        y = self.backward(y)
        # no copy of the first pass: it is a fresh array (a view of one with TTA), and the
        # copy would double the peak memory (768 MB more for a 4000x4000 RGB 2x)
        self.sum = y if self.sum is None else np.add(self.sum, y, out=self.sum)

    def result(self) -> np.ndarray:
        out = self.sum
        if len(self.patterns) > 1:
            out /= np.float32(len(self.patterns))
        return color.rgb2y(out) if self.one_channel else np.ascontiguousarray(out)


def check_image(x) -> np.ndarray:
    """``x`` as float32 (C, H, W), C = 1 or 3, finite, in [0, 1]; else a ValueError that says
    what was expected (integers are refused: divide by 255 first, or use ``w2x.convert``)."""
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        raise ValueError(f"expected a float image array (3, H, W), got a path {x!r}; "
                         "read it first (w2x.convert takes PIL images, w2x.io.read_image files)")
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[0] not in (1, 3) or 0 in x.shape:
        raise ValueError(f"expected a float image of shape (3, H, W) or (1, H, W), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected float pixels in [0, 1], got {x.dtype}; "
                         f"divide by {np.iinfo(x.dtype).max if np.issubdtype(x.dtype, np.integer) else 255} "
                         "first, or pass the array to w2x.convert")
    return color.to_unit_float(x)


def run_net(model: Model, x: np.ndarray, tile_size: int, be: Backend, batch_size: int | None = None,
            progress: ProgressFn | None = None, prescale: int = 1, halo: int = 0) -> np.ndarray:
    """Pre-scale and pad, run every tile, paste (``reconstruct_nn``, reconstruct.lua:5-66).

    x : float32 (C, H, W), C = the model's channels.  Returns float32 (C, H*p*s, W*p*s), p =
    ``prescale``, s = the model's scale factor, already in [0, 1] (every model ends with
    InplaceClip01).  ``batch_size`` tiles go through the net at a time (None: as many as fit
    the GPU, one on a CPU).  ``halo`` > 0: ``x`` is a chunk of a larger image with ``halo``
    pixels of its neighbours on each side (``w2x.distributed``); tiles take their context
    from them instead of replicating the edge, and the output covers the core only,
    (C, (H - 2*halo)*p*s, (W - 2*halo)*p*s).
    """
    c, h0, w0 = x.shape
    if c != model.config.channels:
        raise ValueError(f"model takes {model.config.channels} channel(s), got {c}")

    # --- 1. preprocessing: nearest 2x, edge padding, tiles ---------------------------------
    grid = tiling.tile_grid((h0 - 2 * halo) * prescale, (w0 - 2 * halo) * prescale, model.config, tile_size)
    tiles = (gather_tile(x, grid, r, q, prescale, halo) for r, q in grid.tiles())

    # --- 2. the model's forward pass over the tiles, a batch at a time ---------------------
    outputs = stream_tiles(model, be, tiles, batch_size or _auto_batch(model, be, grid.tile))

    # --- 3. postprocessing: paste each output tile, cropped to the canvas ------------------
    out = np.empty((c, grid.out_h, grid.out_w), dtype=np.float32)
    for i, y in outputs:                                         # y (C, out_tile, out_tile)
        paste_tile(out, grid, i, y)
        if progress is not None:
            progress(i + 1, len(grid))
    return out


def gather_tile(x: np.ndarray, grid: tiling.TileGrid, r: int, q: int, prescale: int,
                halo: int = 0) -> np.ndarray:
    """The ``grid.tile``-square input tile at padded position (r, q) of ``x`` pre-scaled by
    pixel replication and edge-padded: ``pad_replicate(nearest(x, prescale))[:, r:r+t, q:q+t]``.

    Neither the pre-scaled nor the padded image is built: clamping an index to the image is
    edge replication (``iproc.padding`` "clamp", lib/iproc.lua:82-98) and dividing it by
    ``prescale`` is pixel replication, so each tile reads its pixels straight from ``x``.
    With a ``halo`` the grid lies on the core of ``x``, ``halo`` source pixels in, and only
    what lies beyond all of ``x`` is replicated.
    """
    span = np.arange(grid.tile) - grid.pad_lo + halo * prescale
    rows = np.clip(r + span, 0, x.shape[1] * prescale - 1) // prescale   # padded row -> source row
    cols = np.clip(q + span, 0, x.shape[2] * prescale - 1) // prescale
    return x[:, rows[:, None], cols[None, :]]                    # (C, t, t)


def paste_tile(out: np.ndarray, grid: tiling.TileGrid, i: int, y: np.ndarray) -> None:
    """Write output tile ``i`` at ``(r*s, q*s)``, clipped to the canvas (reconstruct.lua:51-63)."""
    r, q = grid.corner(i)
    s = grid.scale_factor
    oh, ow = min(grid.out_tile, grid.out_h - r * s), min(grid.out_tile, grid.out_w - q * s)
    out[:, r * s:r * s + oh, q * s:q * s + ow] = y[:, :oh, :ow]


def _auto_batch(model: Model, be: Backend, tile: int) -> int:
    """Tiles per forward: what fits the GPU's free memory; one on a CPU, where a bigger batch
    only grows the im2col buffers (the GEMM is already large at one 256 px tile)."""
    return max_batch(model.config, tile) if be.device == "cuda" else 1
