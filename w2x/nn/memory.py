"""Network stage, GPU: how many tiles fit the device, from a dry run of the model's graph.

``tile_bytes`` runs the real forward graph (``archs.py``) on shape-only arrays that book
their float32 bytes from creation to their last reference, as CuPy's pool sees them, so it
follows the U-Net skips and SE blocks exactly; ``max_batch`` divides free device memory by it.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from w2x.nn.backend import Backend
from w2x.nn.layers import Conv2d, ConvTranspose2d
from w2x.nn.models import ModelConfig
from w2x.nn.ops import out_size, transposed_out_size

MAX_BATCH = 64          # batch cap: past a few dozen tiles more only cost pinned host memory
MEMORY_HEADROOM = 0.8   # share of free device memory handed out (cuBLAS workspace, pool rounding)


def tile_bytes(config: ModelConfig, tile: int) -> int:
    """Peak device bytes of one ``tile`` x ``tile`` input tile: the forward's own peak plus the
    streamer's buffers (two slots of input and output).

    The forward's peak comes from a dry run of the real graph (``archs.py``) on shape-only
    arrays that book their float32 bytes from creation to their last reference, when CPython
    frees them, as CuPy's pool sees it; so it follows the U-Net skips and SE blocks exactly.
    All sizes grow with the batch, so a batch of n tiles needs ``n * tile_bytes``.

    Raises
    ------
    ValueError
        a tile the architecture does not accept (too small, or not one of its valid sizes).
    """
    if tile < 1 or (config.valid_sizes is not None and tile not in config.valid_sizes):
        raise ValueError(f"{config.arch_name} does not accept {tile} px tiles "
                         f"(valid: {config.valid_sizes or 'any size that leaves output pixels'})")
    ledger = SimpleNamespace(live=0, peak=0)
    arch = config.arch
    layers = {s.name: Conv2d(_no_data((s.out_channels, s.in_channels * s.k * s.k)), None, s.k, s.stride)
              if s.kind == "conv" else ConvTranspose2d(_no_data((s.out_channels * s.k * s.k, s.in_channels)),
                                                       None, s.k, s.stride, s.pad)
              for s in arch.spec(config.channels)}
    try:
        y = arch.forward(layers, _Shape(ledger, (config.channels, 1, tile, tile)), _dry_backend(ledger))
    except _EmptyShape:
        raise ValueError(f"a {tile} px tile is too small for {config.arch_name}: "
                         "a layer's output would be empty") from None
    io = 2 * 4 * config.channels * (tile * tile + y.shape[2] * y.shape[3])   # 2 slots, float32
    return ledger.peak + io


def max_batch(config: ModelConfig, tile: int, free_bytes: int | None = None,
               headroom: float = MEMORY_HEADROOM, cap: int = MAX_BATCH) -> int:
    """Tiles per batch that fit the device: ``headroom * free_bytes // tile_bytes``, at most
    ``cap``.

    Parameters
    ----------
    config : the model's ``ModelConfig``
    tile : input tile side in pixels
    free_bytes : free device memory; None reads the current CUDA device's (needs CuPy)

    Raises
    ------
    ValueError
        not even one tile fits (the message gives both sizes: use a smaller tile), or a tile
        size the architecture does not accept.
    """
    if free_bytes is None:
        from w2x.nn.cuda import free_device_bytes  # CuPy only where a GPU plan is asked for
        free_bytes = free_device_bytes()
    need = tile_bytes(config, tile)
    n = int(free_bytes * headroom) // need
    if n < 1:
        raise ValueError(f"one {tile} px tile of {config.arch_name} needs about {need / 2**20:.0f} MiB "
                         f"of device memory, {free_bytes * headroom / 2**20:.0f} MiB is available; "
                         "use a smaller tile size")
    return min(n, cap)


class _EmptyShape(ValueError):
    pass


def _no_data(shape: tuple[int, ...]) -> np.ndarray:
    """A weight placeholder of the right shape that holds no memory (zero strides)."""
    return np.broadcast_to(np.float32(0), shape)


class _Shape:
    """Shape-only stand-in for a device array in the dry run: books ``4 * prod(shape)`` bytes
    in ``ledger`` while alive (views book nothing and keep their base alive)."""

    def __init__(self, ledger, shape, base=None):
        self.ledger, self.shape, self.base, self.nbytes = ledger, tuple(shape), base, 0
        if min(shape) < 1:
            raise _EmptyShape(shape)
        if base is None:
            self.nbytes = 4 * math.prod(shape)
        ledger.live += self.nbytes
        ledger.peak = max(ledger.peak, ledger.live)

    def __del__(self):
        self.ledger.live -= self.nbytes

    def reshape(self, *shape):
        assert math.prod(shape) == math.prod(self.shape), (self.shape, shape)
        return _Shape(self.ledger, shape, base=self)

    def _new_like(self, *_):
        return _Shape(self.ledger, self.shape)

    __neg__ = __add__ = __radd__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _new_like


def _dry_backend(ledger) -> Backend:
    """Primitives that only compute their result's shape, allocating as the real ones do."""
    def new(*shape):
        return _Shape(ledger, shape)

    def im2col(x, kh, kw, stride):
        c, n, h, w = x.shape
        return new(c * kh * kw, n * out_size(h, kh, stride) * out_size(w, kw, stride))

    def col2im(cols, shape, kh, kw, stride, pad):
        oc, n, h, w = shape
        return new(oc, n, transposed_out_size(h, kh, stride, pad), transposed_out_size(w, kw, stride, pad))

    xp = SimpleNamespace(exp=lambda a: new(*a.shape), clip=lambda a, lo, hi, out: out)
    return Backend("dry-run", "cuda", xp, im2col, col2im,
                   bias_leaky_relu=lambda y, bias, slope: y,
                   channel_mean=lambda x: new(*x.shape[:2]),
                   se_scale=lambda x, z: x,
                   crop_add=lambda a, b, crop: new(*a.shape),
                   matmul=lambda a, b: new(a.shape[0], b.shape[1]),
                   to_device=lambda a: a, to_host=lambda a: a)
