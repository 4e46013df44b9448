"""Network stage, device side of reconstruction: stream tiles through a model in batches while
the image stays on the host.

On a cupy backend, three CUDA streams overlap the work of consecutive batches::

    upload    H2D of batch k+1    pinned host buffer -> device
    compute   forward of batch k
    download  D2H of batch k-1    device -> pinned host buffer

The copies need a stream each: one in-order copy stream would queue the upload of batch k+1
behind the download of batch k, which waits for the forward of batch k, and nothing would
overlap.  Two slots of page-locked (pinned) host and device buffers alternate between batches
(double buffering); pinned memory is what lets ``cudaMemcpyAsync`` run without the CPU.  The
device holds two input batches, one forward and two output batches whatever the image size,
so a 16k x 16k output needs host memory for the image and device memory for ``batch`` tiles;
``plan_batch`` picks ``batch`` from free device memory and a dry run of the model's graph.

Any other backend runs the same batches one after another on the host, with the same calls to
``emit``, so a caller needs one code path.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable, Iterable, Iterator

import numpy as np

from w2x.nn.archs import ARCHS
from w2x.nn.backend import Backend
from w2x.nn.layers import Conv2d, ConvTranspose2d
from w2x.nn.models import Model, ModelConfig
from w2x.nn.ops import out_size

MAX_BATCH = 64          # batch cap: past a few dozen tiles more only cost pinned host memory
MEMORY_HEADROOM = 0.8   # share of free device memory handed out (cuBLAS workspace, pool rounding)


def stream_tiles(model: Model, be: Backend, tile_iter: Iterable[np.ndarray],
                 emit: Callable[[int, np.ndarray], object], batch: int) -> int:
    """Run every tile of ``tile_iter`` through ``model`` in batches and hand each result to ``emit``.

    This is the loop over blocks of ``reconstruct_nn`` (nagadomi/waifu2x lib/reconstruct.lua:5-66),
    batched over tiles and, on a GPU, pipelined.

    Parameters
    ----------
    model : the loaded ``Model`` (host weights; moved to the device once by ``Model.on``)
    be : the backend to run on; a cupy backend ("cupy", "cupy-tf32", "cupy-fp16") streams as in
        the module docstring, any other runs synchronously on the host
    tile_iter : iterable of host float32 arrays (C, t, t), C = ``model.config.channels``,
        already padded as the model needs (each is (C, h, w) in general).  Consecutive tiles of
        one shape are batched together; a change of shape starts a new batch.
    emit : ``emit(index, out)`` is called once per tile, in order of index 0, 1, ..., with
        ``out`` its float32 (C, oh, ow) output.  ``out`` is a view into a buffer that is
        reused later: copy what you keep before ``emit`` returns (assigning it into the output
        image does).
    batch : most tiles per forward, >= 1 (``plan_batch`` gives the most that fit a GPU)

    Returns
    -------
    count : the number of tiles processed

    Raises
    ------
    ValueError
        ``batch`` < 1, or a tile that is not a (C, h, w) array with the model's channel count.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1 tile, got {batch}")
    net = model.on(be)
    batches = _batches(tile_iter, batch, model.config.channels)
    if be.name.startswith("cupy"):
        return _stream_device(net, be, batches, emit)
    count = 0
    for start, tiles in batches:
        y = be.to_host(net.run(be.to_device(np.stack(tiles, axis=1)), be))   # (C, N, oh, ow)
        for i in range(len(tiles)):
            emit(start + i, y[:, i])                                          # (C, oh, ow)
        count = start + len(tiles)
    return count


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


# --- the CUDA pipeline ----------------------------------------------------------------------
def _stream_device(net: Model, be: Backend, batches, emit) -> int:
    xp = be.xp
    xp.cuda.Device().synchronize()             # weights uploaded on the default stream are in place
    upload, compute, download = (xp.cuda.Stream(non_blocking=True) for _ in range(3))
    slots = (_Slot(xp), _Slot(xp))
    try:
        for k, (start, tiles) in enumerate(batches):
            slot = slots[k % 2]
            slot.drain(emit)                   # outputs of batch k-2; frees the slot's buffers
            uploaded = slot.upload(start, tiles, upload)
            computed = slot.forward(net, be, uploaded, compute)
            slot.download(computed, download)
        for slot in sorted(slots, key=lambda s: s.start):   # the last two batches, in order
            slot.drain(emit)
    finally:                                   # never release pinned memory a copy still writes
        for s in (upload, compute, download):
            s.synchronize()
    return sum(s.emitted for s in slots)


def _pinned(xp, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 NumPy array in page-locked host memory (from CuPy's pinned memory pool)."""
    n = int(np.prod(shape))
    return np.frombuffer(xp.cuda.alloc_pinned_memory(n * 4), np.float32, n).reshape(shape)


def _copy_async(xp, dst_ptr: int, src_ptr: int, nbytes: int, kind: int, stream) -> None:
    xp.cuda.runtime.memcpyAsync(dst_ptr, src_ptr, nbytes, kind, stream.ptr)


class _Slot:
    """One set of batch buffers, and the batch it holds until ``drain``.

    Host and device buffers are laid out (N, C, h, w) so that a batch of n tiles is one
    contiguous prefix; the forward's (C, N, h, w) layout is made on the device.
    """

    def __init__(self, xp):
        self.xp = xp
        self.host_in = self.dev_in = self.host_out = None
        self.start = self.count = self.emitted = 0
        self.y = self.done = None              # device output, alive until its download is done

    def upload(self, start: int, tiles: list[np.ndarray], stream):
        """Copy the tiles into pinned memory and start their H2D copy on ``stream``."""
        xp, n = self.xp, len(tiles)
        if self.host_in is None or self.host_in.shape[1:] != tiles[0].shape or len(self.host_in) < n:
            self.host_in = _pinned(xp, (n,) + tiles[0].shape)                  # (N, C, h, w)
            self.dev_in = xp.empty(self.host_in.shape, dtype=xp.float32)
        for i, tile in enumerate(tiles):
            self.host_in[i] = tile
        _copy_async(xp, self.dev_in.data.ptr, self.host_in.ctypes.data, n * tiles[0].nbytes,
                    xp.cuda.runtime.memcpyHostToDevice, stream)
        self.start, self.count = start, n
        return stream.record()

    def forward(self, net: Model, be: Backend, uploaded, stream):
        """Run the model on ``stream`` once ``uploaded`` has happened."""
        xp = self.xp
        stream.wait_event(uploaded)
        with stream:
            x = xp.ascontiguousarray(self.dev_in[:self.count].transpose(1, 0, 2, 3))  # (C, N, h, w)
            y = net.run(x, be)                                                     # (C, N, oh, ow)
            self.y = xp.ascontiguousarray(y.transpose(1, 0, 2, 3))                 # (N, C, oh, ow)
        return stream.record()

    def download(self, computed, stream) -> None:
        """Start the D2H copy of the forward's output on ``stream`` once ``computed`` has happened."""
        xp, y = self.xp, self.y
        if self.host_out is None or self.host_out.shape[1:] != y.shape[1:] or len(self.host_out) < len(y):
            self.host_out = _pinned(xp, y.shape)                                   # (N, C, oh, ow)
        stream.wait_event(computed)
        _copy_async(xp, self.host_out.ctypes.data, y.data.ptr, y.nbytes,
                    xp.cuda.runtime.memcpyDeviceToHost, stream)
        self.done = stream.record()

    def drain(self, emit) -> None:
        """Wait for the slot's download, then emit its tiles; no-op for an empty slot."""
        if self.done is None:
            return
        self.done.synchronize()
        self.y = self.done = None              # the copy is complete: the device output may be freed
        for i in range(self.count):
            emit(self.start + i, self.host_out[i])                                  # (C, oh, ow)
        self.emitted += self.count


# --- batch planning: a dry run of the model's graph on shape-only arrays -------------------
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
    arch = ARCHS[config.arch_name]
    layers = [Conv2d(_no_data((s.out_channels, s.in_channels * s.k * s.k)), None, s.k, s.stride)
              if s.kind == "conv" else ConvTranspose2d(_no_data((s.out_channels * s.k * s.k, s.in_channels)),
                                                       None, s.k, s.stride, s.pad)
              for s in arch.spec(config.channels)]
    try:
        y = arch.forward(layers, _Shape(ledger, (config.channels, 1, tile, tile)), _dry_backend(ledger))
    except _EmptyShape:
        raise ValueError(f"a {tile} px tile is too small for {config.arch_name}: "
                         "a layer's output would be empty") from None
    io = 2 * 4 * config.channels * (tile * tile + y.shape[2] * y.shape[3])   # 2 slots, float32
    return ledger.peak + io


def plan_batch(config: ModelConfig, tile: int, free_bytes: int | None = None,
               headroom: float = MEMORY_HEADROOM, max_batch: int = MAX_BATCH) -> int:
    """Tiles per batch that fit the device: ``headroom * free_bytes // tile_bytes``, at most
    ``max_batch``.

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
        from w2x.nn.cuda import free_device_bytes
        free_bytes = free_device_bytes()
    need = tile_bytes(config, tile)
    n = int(free_bytes * headroom) // need
    if n < 1:
        raise ValueError(f"one {tile} px tile of {config.arch_name} needs about {need / 2**20:.0f} MiB "
                         f"of device memory, {free_bytes * headroom / 2**20:.0f} MiB is available; "
                         "use a smaller tile size")
    return min(n, max_batch)


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
        return new(oc, n, (h - 1) * stride - 2 * pad + kh, (w - 1) * stride - 2 * pad + kw)

    xp = SimpleNamespace(exp=lambda a: new(*a.shape), clip=lambda a, lo, hi, out: out)
    return Backend("dry-run", xp, im2col, col2im,
                   bias_leaky_relu=lambda y, bias, slope: y,
                   channel_mean=lambda x: new(*x.shape[:2]),
                   se_scale=lambda x, z: x,
                   crop_add=lambda a, b, crop: new(*a.shape),
                   matmul=lambda a, b: new(a.shape[0], b.shape[1]),
                   to_device=lambda a: a, to_host=lambda a: a)
