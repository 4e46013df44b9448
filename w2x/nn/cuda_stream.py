"""Network stage, GPU: stream batches of tiles through a model while the image stays on the host.

Three CUDA streams overlap the work of consecutive batches::

    upload    H2D of batch k+1    pinned host buffer -> device
    compute   forward of batch k
    download  D2H of batch k-1    device -> pinned host buffer

The copies need a stream each: one in-order copy stream would queue the upload of batch k+1
behind the download of batch k, which waits for the forward of batch k, and nothing would
overlap.  Two slots of page-locked (pinned) host and device buffers alternate between batches
(double buffering); pinned memory is what lets ``cudaMemcpyAsync`` run without the CPU.  The
device holds two input batches, one forward and two output batches whatever the image size,
so a 16k x 16k output needs host memory for the image and device memory for ``batch`` tiles
(``memory.max_batch`` picks ``batch``).  ``w2x/stream.py`` calls this for a "cuda" backend.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from w2x.nn.backend import Backend
from w2x.nn.models import Model


def stream_batches(net: Model, be: Backend, batches: Iterable[tuple[int, list[np.ndarray]]]
                   ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, out)`` for every tile of ``batches`` (``(first index, tiles)`` pairs),
    in order; ``net`` is already on ``be`` (``Model.on``).  ``out`` is a (C, oh, ow) view of a
    pinned buffer that a later batch reuses: copy it before asking for the next tile."""
    xp = be.xp
    xp.cuda.Device().synchronize()             # weights uploaded on the default stream are in place
    upload, compute, download = (xp.cuda.Stream(non_blocking=True) for _ in range(3))
    slots = (_Slot(xp), _Slot(xp))
    try:
        for k, (start, tiles) in enumerate(batches):
            slot = slots[k % 2]
            yield from slot.drain()            # outputs of batch k-2; frees the slot's buffers
            uploaded = slot.upload(start, tiles, upload)
            computed = slot.forward(net, be, uploaded, compute)
            slot.download(computed, download)
        for slot in sorted(slots, key=lambda s: s.start):   # the last two batches, in order
            yield from slot.drain()
    finally:                                   # never release pinned memory a copy still writes
        for s in (upload, compute, download):
            s.synchronize()


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
        self.start = self.count = 0
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
            y = net.config.arch.forward(net.layers, x, be)                         # (C, N, oh, ow)
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

    def drain(self) -> Iterator[tuple[int, np.ndarray]]:
        """Wait for the slot's download, then yield its tiles; nothing for an empty slot."""
        if self.done is None:
            return
        self.done.synchronize()
        self.y = self.done = None              # the copy is complete: the device output may be freed
        for i in range(self.count):
            yield self.start + i, self.host_out[i]                                  # (C, oh, ow)
