"""One image larger than a machine: a lazy ``dask.array`` through the models (distributed stage).

``upscale`` maps each chunk of an (H, W, 3) array to its 2x (or 1x) output on whichever
worker holds it; no process ever sees the whole image. A chunk is cut with a halo, the
context the model reads around it, taken from its neighbours, and at the image border the
edge is replicated (Dask's ``boundary="nearest"``), as the original pads the whole image
(``iproc.padding`` "clamp", lib/reconstruct.lua:5-66)::

       halo = ceil(input_offset / prescale) source px      the chunk's tiles start at
      +----------------------------+                       halo*prescale - input_offset
      |   +--------------------+   |                       in the (pre-scaled) net input,
      |   |   core (a chunk)   |   |  -- net, tile by -->  so tile i of the chunk is tile
      |   +--------------------+   |     tile, crop        (core start / step + i) of the
      +----------------------------+                       single-machine grid

Why the result equals ``w2x.convert`` on the whole image:

* vgg_7 and upconv_7 are local: an output pixel depends on the input within the model's
  offset and nothing else, so any tiling gives the same numbers, up to the order in which
  the GEMMs sum (measured in tests/test_distributed_chunks.py: ``LOCAL_ATOL``).
* cunet and upcunet are not: they take fixed input sizes (``valid_sizes``) and their SE
  blocks average over the whole tile, so an output pixel depends on where the tile grid
  falls (lib/reconstruct.lua:112-130, srcnn.lua:597-630). Their chunks are aligned to the
  single-machine grid: the array is rechunked to a multiple of the tile step (``tile -
  2*input_offset``) before the halo is added, and a chunk runs exactly the tiles the
  single-machine run has there, with the same contents (clamped at the same border).
  The outputs are then equal tile for tile. TTA flips the grid from the other side, so
  cunet/upcunet with ``tta_level > 1`` is refused.

Each model pass (noise, then scale, for the styles without a fused noise_scale model) is
one such map, so the passes stream too. RGB models only: the Y models' chroma, and alpha
(make_border, alpha_util.lua), are left to the single-machine path.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from w2x import reconstruct
from w2x.color import quantize, to_unit_float
from w2x.distributed.cluster import require_dask
from w2x.nn.backend import Backend, get_backend
from w2x.nn.models import Model
from w2x.anyscale import PASS_FACTOR
from w2x.pipeline import Options, Plan, Step, resolve_models
from w2x.tiling import snap_tile_size

DEFAULT_CHUNK = 1024     # source px a side: a 2x RGB float output chunk of 48 MiB


def upscale(array, *, mode: str = "noise_scale", noise_level: int = 1, style: str = "art",
            model_dir: str | Path | None = None, tile_size: int = reconstruct.DEFAULT_TILE_SIZE,
            tta_level: int = 1, backend: str = "auto", precision: str = "fp32",
            batch_size: int | None = None, plan: Plan | None = None):
    """Denoise and/or upscale a lazy image chunk by chunk; ``w2x.convert``'s result.

    Parameters
    ----------
    array : dask.array (or anything ``da.asarray`` takes) of shape (H, W, 3), uint8,
        uint16 or float in [0, 1]; its chunks in H and W are the work units (the channel
        axis is made one chunk). For cunet/upcunet the chunks are moved to the tile grid
        (``grid_chunks``).
    mode, noise_level, style, model_dir, tile_size, tta_level, backend, precision, batch_size :
        as ``w2x.pipeline.Options``; ``backend`` is resolved on each worker ("auto": the
        GPU where the worker has one)
    plan : the models (default: resolved here from the options, on the client)

    Returns
    -------
    A lazy dask.array (2H, 2W, 3) in the scale modes, (H, W, 3) in noise mode, of the input's
    dtype (integers rounded as the original, ``color.quantize``; floats as float32).

    Raises
    ------
    ValueError
        not (H, W, 3); a Y (one-channel) model; cunet/upcunet with TTA; an image smaller
        than the context a chunk needs.
    """
    da = _dask_array()
    opts = Options(mode=mode, noise_level=noise_level, style=style, model_dir=model_dir,
                   tile_size=tile_size, tta_level=tta_level, backend=backend,
                   precision=precision, batch_size=batch_size)
    plan = plan or resolve_models(opts)
    x = da.asarray(array)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an RGB image array (H, W, 3), got shape {x.shape}; split "
                         "off alpha and run grey images as RGB")
    kind = np.dtype(x.dtype)
    if kind not in (np.uint8, np.uint16) and not np.issubdtype(kind, np.floating):
        raise ValueError(f"expected uint8, uint16 or float pixels, got {kind}")
    for _, model in plan.steps:
        _check_model(model, tta_level)
    models = _shared(plan)
    y = x.rechunk({2: -1}).map_blocks(to_unit_float, dtype=np.float32)
    for i, (step, model) in enumerate(plan.steps):
        y = _pass(y, models, i, step, model, opts, da)
    if kind in (np.uint8, np.uint16):
        depth = 8 if kind == np.uint8 else 16
        return y.map_blocks(quantize, depth, dtype=kind)
    return y.astype(np.float32)


def _dask_array():
    require_dask()
    import dask.array as da
    return da


def _check_model(model: Model, tta_level: int) -> None:
    cfg = model.config
    if cfg.channels != 3:
        raise ValueError(f"{model.path}: a Y (one-channel) model; chunked upscaling runs RGB "
                         "models only (art, photo, cunet/upconv_7/vgg_7 RGB styles)")
    if cfg.valid_sizes is not None and tta_level != 1:
        raise ValueError(f"{cfg.arch_name} with TTA depends on the tile grid of each flip; "
                         "chunked output would differ from the whole image: use tta_level 1")


def _shared(plan: Plan):
    """The plan as one graph key (sent once to each worker that needs it, not per chunk),
    named after the model files and this plan object (models built in memory have no
    file to tell them apart)."""
    from dask import delayed
    names = [id(plan)] + [m.path for _, m in plan.steps]
    token = hashlib.sha1(repr(names).encode()).hexdigest()[:16]
    return delayed(plan, name=f"w2x-plan-{token}", traverse=False)




def pass_geometry(model: Model, step: Step, tile_size: int) -> tuple[int, int, int, int]:
    """``(prescale, halo, tile, step)`` of one pass: pixel replication before the net (2 for
    vgg_7 in a scale pass), context in source px, the tile size the single machine is given
    (cunet's snapped to its valid sizes; vgg_7 and upconv_7 balance theirs below it per image,
    ``tiling.balanced_tile``), and its step in net-input px (used for cunet's chunk edges)."""
    cfg = model.config
    prescale = PASS_FACTOR // cfg.scale_factor if step is reconstruct.upscale2x else 1
    tile = snap_tile_size(cfg, tile_size)
    step = tile - 2 * cfg.input_offset
    return prescale, math.ceil(cfg.input_offset / prescale), tile, step


def grid_chunks(n: int, chunk: int, halo: int, step: int | None = None) -> tuple[int, ...]:
    """Chunk sizes along an axis of ``n`` px: ``chunk`` each, moved to the nearest multiple
    of ``step`` (when given: the tile grid of a non-local model), the last one merged into
    its neighbour when it is thinner than the halo (Dask takes a halo from one neighbour).

    >>> grid_chunks(450, 128, 18, step=220)
    (220, 230)
    """
    if step is not None:
        chunk = max(step, round(chunk / step) * step)
    sizes = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    if len(sizes) > 1 and sizes[-1] < halo:
        sizes[-2:] = [sizes[-2] + sizes[-1]]
    return tuple(sizes)


def _pass(y, models, index: int, step_fn: Step, model: Model, opts: Options, da):
    """One model pass over float32 (H, W, 3) chunks: halo, net on each chunk's core."""
    prescale, halo, tile, step = pass_geometry(model, step_fn, opts.tile_size)
    if min(y.shape[:2]) < halo:
        raise ValueError(f"a {y.shape[1]}x{y.shape[0]} image is smaller than the {halo} px of context "
                         f"each chunk of {model.config.arch_name} needs; convert it without chunks")
    aligned = model.config.valid_sizes is not None
    rows, cols = (grid_chunks(n, c[0], halo, step if aligned else None)
                  for n, c in zip(y.shape[:2], y.chunks[:2]))
    y = y.rechunk((rows, cols, 3))
    scale = prescale * model.config.scale_factor
    ext = da.overlap.overlap(y, depth={0: halo, 1: halo, 2: 0},
                             boundary={0: "nearest", 1: "nearest", 2: "none"},
                             allow_rechunk=False)
    out_chunks = (tuple(r * scale for r in rows), tuple(c * scale for c in cols), (3,))
    return ext.map_blocks(run_chunk, models, index, halo, tile, opts.tta_level, opts.backend,
                          opts.precision, opts.batch_size, chunks=out_chunks,
                          dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))


def run_chunk(block: np.ndarray, plan: Plan, index: int, halo: int, tile: int, tta_level: int,
              backend: str | Backend, precision: str, batch_size: int | None) -> np.ndarray:
    """The task: one chunk with its halo, float32 (h + 2*halo, w + 2*halo, 3) ->
    (h*s, w*s, 3): the pass's step (``reconstruct.denoise`` / ``upscale2x``, TTA included)
    with the halo as context, so the tiles lie on the single machine's grid."""
    step, model = plan.steps[index]
    be = get_backend(backend, precision) if isinstance(backend, str) else backend
    x = np.ascontiguousarray(block.transpose(2, 0, 1))           # (H, W, C) -> (C, H, W)
    y = step(model, x, tile_size=tile, tta_level=tta_level, backend=be, batch_size=batch_size,
             halo=halo)                                          # (C, h*s, w*s)
    return np.ascontiguousarray(y.transpose(1, 2, 0))            # (C, h, w) -> (h, w, C)
