"""Network stage, host side: stream tiles through a model in batches, on any backend.

This is the loop over blocks of ``reconstruct_nn`` (nagadomi/waifu2x lib/reconstruct.lua:5-66),
batched over tiles: consecutive tiles of one shape go through the net together, so one GEMM
per layer covers a batch, and only that batch is ever on the device.  A CPU backend runs the
batches one after another; a "cuda" backend overlaps their copies and forwards
(``nn/cuda_stream.py``).  Either way the caller gets ``(index, output)`` pairs in order.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from w2x.nn.backend import Backend
from w2x.nn.cuda_stream import stream_batches
from w2x.nn.models import Model


def stream_tiles(model: Model, be: Backend, tiles: Iterable[np.ndarray],
                 batch: int) -> Iterator[tuple[int, np.ndarray]]:
    """Run every tile through ``model``, ``batch`` at a time; yield ``(index, out)`` in order.

    Parameters
    ----------
    model : the loaded ``Model`` (host weights; ``Model.on`` moves them to the device once)
    be : the backend to run on
    tiles : iterable of host float32 arrays (C, h, w), C = ``model.config.channels``, already
        padded as the model needs.  Consecutive tiles of one shape are batched together; a
        change of shape starts a new batch.
    batch : most tiles per forward, >= 1 (``nn.memory.max_batch`` gives the most that fit a GPU)

    Yields
    ------
    (index, out) : ``out`` is the tile's float32 (C, oh, ow) output, a view into a buffer that
        a later batch reuses: copy what you keep before taking the next one (assigning it into
        the output image does).

    Raises
    ------
    ValueError
        ``batch`` < 1, or a tile that is not a (C, h, w) array with the model's channel count.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1 tile, got {batch}")
    net = model.on(be)
    batches = _batches(tiles, batch, model.config.channels)
    if be.device == "cuda":
        yield from stream_batches(net, be, batches)
        return
    for start, group in batches:
        x = be.to_device(np.stack(group, axis=1))                          # (C, N, h, w)
        y = be.to_host(net.config.arch.forward(net.layers, x, be))         # (C, N, oh, ow)
        for i in range(len(group)):
            yield start + i, y[:, i]                                        # (C, oh, ow)


def _batches(tile_iter: Iterable[np.ndarray], batch: int,
             channels: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """``(index of the first tile, tiles)`` for runs of at most ``batch`` consecutive tiles of
    one shape, checking each tile."""
    group: list[np.ndarray] = []
    start = 0
    for i, tile in enumerate(tile_iter):
        tile = np.asarray(tile, dtype=np.float32)
        if tile.ndim != 3 or tile.shape[0] != channels:
            raise ValueError(f"tile {i}: expected a ({channels}, h, w) array for this "
                             f"{channels}-channel model, got shape {tile.shape}")
        if group and (len(group) == batch or tile.shape != group[0].shape):
            yield start, group
            group, start = [], i
        group.append(tile)
    if group:
        yield start, group
