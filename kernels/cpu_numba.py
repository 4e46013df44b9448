"""Network stage, CPU: Numba twins of the ``w2x/nn/ops.py`` primitives, from which
``w2x/nn/backend.py`` builds its "numba" row.

Every public function here has the signature and the result of its ``ops.py`` twin, which
the tests pit it against (tests/test_kernels.py).  How the two cores are used:

* the copy and elementwise kernels (im2col, col2im, bias + LeakyReLU, the SE squeeze and
  excite, crop-add) are serial ``@njit`` loops over channels; from ``ELEMENTWISE_SPLIT_MIN``
  values on, the channels (or a channel-last array's rows) are split between the worker
  threads below (``_by_ranges``):
  crop-add of a 64-channel 232-px tile took 4.3 ms serial and 1.5 ms split, im2col of
  cunet's 2x2 stride-2 conv 2.6 and 1.2 ms.  Not ``parallel=True``: a parallel region's
  fork/join (plus the OpenMP layer's spin-waiting when another process holds a core, as on
  this shared machine) cost more than these 0.1-3 ms loops: bias + LeakyReLU on
  (64, 250*250) took 0.34 ms serial, 1.0 ms with ``prange``; the SE mean 1.2 ms against 5.5 ms;
* the three primitives that hold a GEMM (``matmul``, ``winograd_conv3x3``, ``conv_transpose``)
  cut their work into blocks, worked off by ``numba.get_num_threads()`` threads (the caller and
  the crew of kernels/cpu_crew.py, whose threads wait for the next run spinning outside the
  GIL); each thread runs serial ``nogil`` kernels and a *single-threaded* GEMM on its block
  (BLAS, or for the channel-last Winograd products the kernel of kernels/cpu_gemm.py),
  taking blocks until none is left.  Why not
  let OpenBLAS thread its GEMMs: its worker threads busy-wait for ~0.1 s after every call, so
  whatever runs next shares the cores with a spinning thread (measured: a 2-thread Numba
  kernel right after a GEMM took 1.7x as long as after a pause).  Blocks also keep a GEMM's
  operands in cache and reuse per-thread buffers, so no layer page-faults a fresh
  multi-megabyte temporary in.  Where NumPy's BLAS is not the OpenBLAS its wheel bundles
  (its thread count cannot be set from here), the blocks run one after another on the
  calling thread and the BLAS threads itself.

Activations come in either memory order (``ops.is_channels_last``): the elementwise kernels
have channel-last twins (``_cl``) that run along rows of W*C values, split by rows; the
Winograd ones read and write either order.

``winograd_conv3x3`` runs the 3x3 stride-1 convolutions (``layers.Conv2d`` calls it where the
backend has it): Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016; points 0, 1, -1, 1/2, -2 for accuracy, see
``ops.WINOGRAD_BT``) does a layer's multiplications as 36 GEMMs (OC, C) @ (C, tiles), 4x fewer
flops than im2col + GEMM; F(6x6, 3x3) (64 GEMMs, 5x fewer, for layers of 32 x 32 channel
pairs and more with at most 128 inputs: ``layers.winograd_tile``) and F(2x2, 3x3) (16
GEMMs, 2.25x, the training backward's) run when given their 64 or 16 matrices.  Its reference twin is ``ops.winograd_conv3x3``.
``conv_transpose`` runs a transposed convolution as GEMMs on blocks of input rows, each block's
result gathered into its output rows by column phase (the sub-pixel form) with bias +
LeakyReLU while it is in cache; its reference twin is ``ops.conv_transpose``.

Compile cost (Numba 0.68, this 2-core machine): the first call of each kernel compiles it,
about 10 s for the whole set (a new argument layout, e.g. a non-contiguous view, compiles
one more variant).  ``cache=True`` stores the machine code in ``__pycache__`` beside this
file (or under ``$NUMBA_CACHE_DIR``), and later processes load all of it in under 1 s.
(``cache=True`` also works together with ``parallel=True`` in this Numba version: checked,
though no kernel here ends up parallel.)
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterator

import numba
import numpy as np
from numba import njit

from w2x.kernels import cpu_gemm
from w2x.kernels.cpu_crew import Crew
from w2x.nn.ops import WINOGRAD_TILES, is_channels_last, out_size, to_channels_last, transposed_out_size

# Per-thread scratch of one Winograd block: (m+2)^2 * (C + OC) * tiles float32 values (plus
# up to 4 KiB of skew per matrix, ``_stack_stride``; not counted).  4 MiB
# (two blocks in flight fit the 32 MiB L3 of this machine with room to spare; 256 tiles per
# GEMM for a 128->128 layer under F(2x2)) was the best of 1-32 MiB on a vgg_7 256-px tile:
# 176 ms against 185 ms at 1 MiB and 216 ms at 16 MiB.  The single-threaded GEMM runs at
# 75-85 GFLOPS from 128 to 2048 tiles, so the block size is about cache, not GEMM shape.
# Under F(4x4) and F(6x6) a 128->128 layer's block is one tile row (37-64 tiles); 2 and 8
# MiB were measured against 4 in the fifth session: vgg_7 1.08x, upconv_7 0.97-0.99x.
WINOGRAD_BLOCK_BYTES = 4 << 20
# A Winograd conv's tile rows are cut into blocks of at most WINOGRAD_BLOCK_BYTES, as many as
# a multiple of this times the workers, if more than one (``_block_rows``): blocks a quarter of a thread's
# share, so that a thread slowed down (by the other process on its CPU, or by a harder
# block) hands the last ones to the others instead of keeping them waiting.  A training
# step (upconv_7, batch 16, crop 48, 2 threads; most of its layers would fit one block)
# took 0.97x the time of one block per thread (median of 31 interleaved pairs, twice); 8
# took 1.05x the time of 4 (smaller GEMMs).  Inference on lena.png (256-px tiles, mostly cut by the byte limit
# already): vgg_7 0.99x, upconv_7 1.00x, cunet 0.95x of one block per thread.
WINOGRAD_BLOCKS_PER_WORKER = 4
# A matmul is split across workers into column blocks where it has at least this many
# output columns, else into row blocks where it has at least MATMUL_SPLIT_MIN_ROWS rows
# (the long-K products of the backward pass: (256, N*H*W) @ (N*H*W, 48)), else it runs whole
# on the caller; below these, thread hand-off costs more than it saves (SE 1x1 convs).
MATMUL_SPLIT_MIN_COLUMNS = 4096
MATMUL_SPLIT_MIN_ROWS = 128
# Blocks per worker in a split matmul: > 1 lets a worker that another process slowed down
# hand work to the other (dynamic scheduling).
MATMUL_BLOCKS_PER_WORKER = 2
# Per-thread GEMM result of one block of output rows of a transposed convolution, gathered
# into the output right after.  CPU time of one 256-px tile's deconvs (2 threads, fused vs
# GEMM + col2im + bias pass 22.0 / 10.6 / 14.7 ms): 0.5 MiB 24.5 / 11.0 / 7.6, 1 MiB 22.8 /
# 10.6 / 8.5, 4 MiB 21.4 / 10.2 / 7.4, 8 MiB 21.6 / 10.4 / 7.5 ms (upconv_7's 256->3 4x4,
# cunet's 64->64 and 128->128 2x2): fewer blocks re-multiply fewer overlapping input rows.
DECONV_BLOCK_BYTES = 4 << 20
# The copy and elementwise kernels split their channels between the workers from this many
# values on (a 64-channel 128x128 tile); below it, a hand-off to the workers cost about what
# it saved (measured with the queue the crew replaced, kernels/cpu_crew.py).
ELEMENTWISE_SPLIT_MIN = 1 << 20
_IDENTITY_SLOPE = np.float32(1.0)  # max(v, 1*v) == v: "no activation" for the fused kernels
# LLVM vectorises the transforms' unit-stride loops 16 float32 at a time (AVX-512 here) and
# runs a loop's last n % 16 steps one value at a time: the output transforms of a 63-tile
# row took 1.6x the time per value of a 64-tile one.  They run their loops to the next
# multiple of this (``_vector_length``) over scratch rows that long, reading up to 15
# values past the tiles (the next tiles, or a stack's skew: ``_stack_stride``) whose
# results are never stored.
VECTOR_FLOATS = 16
# Every GEMM here goes through one of these two names (NumPy's float32 matmul, BLAS sgemm;
# the Winograd products by packed weights), so that tools/layer_profile.py can time GEMMs
# apart from the transforms around them.
_gemm = np.matmul
_panel_gemm = cpu_gemm.panel_matmul


# --- copy and elementwise kernels (serial Numba loops, split by _by_ranges) ---
@njit(nogil=True, cache=True)
def _im2col_kernel(x, kh, kw, stride, oh, ow, cols):
    c_n, n_n = x.shape[0], x.shape[1]
    for c in range(c_n):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for n in range(n_n):
                    for oy in range(oh):
                        base = (n * oh + oy) * ow
                        for ox in range(ow):
                            cols[row, base + ox] = x[c, n, oy * stride + i, ox * stride + j]


def im2col(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """Twin of ``ops.im2col``: (C, N, H, W) -> cols (C*kh*kw, N*OH*OW), same row/column order."""
    c, n, h, w = x.shape
    oh, ow = out_size(h, kh, stride), out_size(w, kw, stride)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=np.float32)
    kk = kh * kw
    _by_ranges(c, cols.size, lambda lo, hi: _im2col_kernel(x[lo:hi], kh, kw, stride, oh, ow, cols[lo * kk:hi * kk]))
    return cols


@njit(nogil=True, cache=True)
def _col2im_kernel(cols, h, w, kh, kw, stride, pad, y):
    oc, n_n, oh, ow = y.shape
    for ono in range(oc * n_n * oh):
        o, n, oy = ono // (n_n * oh), (ono // oh) % n_n, ono % oh
        # gather output row oy: input row yy contributes through kernel row i when
        # yy*stride + i - pad == oy; adding in (i, j) order matches ops.col2im's sums
        for i in range(kh):
            t = oy + pad - i
            if t < 0 or t % stride != 0 or t // stride >= h:
                continue
            yy = t // stride
            for j in range(kw):
                row = (o * kh + i) * kw + j
                base = (n * h + yy) * w
                # input columns xx with 0 <= xx*stride + j - pad < ow
                x0 = max(0, (pad - j + stride - 1) // stride)
                x1 = min(w, (ow - 1 + pad - j) // stride + 1)
                for xx in range(x0, x1):
                    y[o, n, oy, xx * stride + j - pad] += cols[row, base + xx]


def col2im(cols: np.ndarray, shape: tuple[int, int, int, int], kh: int, kw: int,
           stride: int, pad: int) -> np.ndarray:
    """Twin of ``ops.col2im``: scatter-add (OC*kh*kw, N*H*W) columns into (OC, N, OH, OW)."""
    oc, n, h, w = shape
    oh, ow = transposed_out_size(h, kh, stride, pad), transposed_out_size(w, kw, stride, pad)
    y = np.zeros((oc, n, oh, ow), dtype=np.float32)
    kk = kh * kw
    _by_ranges(oc, cols.size, lambda lo, hi: _col2im_kernel(cols[lo * kk:hi * kk], h, w, kh, kw, stride, pad, y[lo:hi]))
    return y


@njit(nogil=True, cache=True)
def _bias_leaky_relu_kernel(y2, bias, slope):
    oc, m = y2.shape
    for o in range(oc):
        bo = bias[o]
        for k in range(m):
            v = y2[o, k] + bo
            y2[o, k] = max(v, v * slope)


def _pixel_rows(x: np.ndarray) -> np.ndarray:
    """A channel-last (C, N, H, W) array as its (N*H, W*C) rows: one image row of pixels,
    channels side by side, per row (a view)."""
    c, n, h, w = x.shape
    return x.transpose(1, 2, 3, 0).reshape(n * h, w * c)   # (N, H, W, C) -> (N*H, W*C)


@njit(nogil=True, cache=True)
def _bias_leaky_relu_cl_kernel(yt, bias, slope):
    """``_bias_leaky_relu_kernel`` on yt (M, OC), channels last."""
    for k in range(yt.shape[0]):
        row = yt[k]
        for o in range(row.shape[0]):
            v = row[o] + bias[o]
            row[o] = max(v, v * slope)


def bias_leaky_relu(y: np.ndarray, bias: np.ndarray, slope: float | None) -> np.ndarray:
    """Twin of ``ops.bias_leaky_relu``: in place ``y += bias`` per channel, then LeakyReLU."""
    s = _IDENTITY_SLOPE if slope is None else np.float32(slope)
    if y.ndim == 4 and is_channels_last(y):
        yt = y.transpose(1, 2, 3, 0).reshape(-1, y.shape[0])   # (N*H*W, OC) view
        _by_ranges(yt.shape[0], yt.size, lambda lo, hi: _bias_leaky_relu_cl_kernel(yt[lo:hi], bias, s))
        return y
    if not y.flags.c_contiguous:
        raise ValueError(f"bias_leaky_relu works in place on a C-contiguous or channel-last array; "
                         f"got strides {y.strides} for shape {y.shape}")
    y2 = y.reshape(y.shape[0], -1)  # (OC, M) view
    _by_ranges(y2.shape[0], y2.size, lambda lo, hi: _bias_leaky_relu_kernel(y2[lo:hi], bias[lo:hi], s))
    return y


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _channel_mean_kernel(x, z):
    c_n, n_n, h, w = x.shape
    for c in range(c_n):
        for n in range(n_n):
            # float64 sum, reassociated into SIMD lanes: for <= 512*512 float32 values
            # any order is within ~1e-12 relative, far below float32's 6e-8
            acc = 0.0
            for yy in range(h):
                for xx in range(w):
                    acc += x[c, n, yy, xx]
            z[c, n] = acc / (h * w)


@njit(nogil=True, cache=True)
def _channel_sum_cl_kernel(rows, r0, h, n_n, c):
    """Per-channel float64 sums (N, C) of ``rows`` (R, W*C): rows r0.. of a channel-last
    (N*H, W*C) array, image n = row // H (0 for the images the rows do not reach)."""
    acc = np.zeros((n_n, c))
    for k in range(rows.shape[0]):
        a, row = acc[(r0 + k) // h], rows[k]
        for p in range(0, row.shape[0], c):
            px = row[p:p + c]
            for t in range(c):
                a[t] += px[t]
    return acc


def channel_mean(x: np.ndarray) -> np.ndarray:
    """Twin of ``ops.channel_mean`` (SE squeeze, lib/srcnn.lua:232-244): (C, N, H, W) -> (C, N)."""
    c, n, h, w = x.shape
    if is_channels_last(x):
        rows = _pixel_rows(x)
        sums = {}                                               # first row -> (N, C) float64 sums
        _by_ranges(n * h, x.size, lambda lo, hi: sums.__setitem__(lo, _channel_sum_cl_kernel(rows[lo:hi], lo, h, n, c)))
        total = sum(sums[lo] for lo in sorted(sums))            # in row order, whichever thread ended first
        return (total.T / (h * w)).astype(np.float32)
    z = np.empty((c, n), dtype=np.float32)
    _by_ranges(c, x.size, lambda lo, hi: _channel_mean_kernel(x[lo:hi], z[lo:hi]))
    return z


@njit(nogil=True, cache=True)
def _se_scale_kernel(x, z):
    c_n, n_n, h, w = x.shape
    for c in range(c_n):
        for n in range(n_n):
            zc = z[c, n]
            for yy in range(h):
                for xx in range(w):
                    x[c, n, yy, xx] *= zc


@njit(nogil=True, cache=True)
def _se_scale_cl_kernel(rows, r0, h, zt):
    """``_se_scale_kernel`` on ``rows`` (R, W*C): rows r0.. of a channel-last (N*H, W*C)
    array, image n = row // H, scaled by zt[n] (zt: z transposed, (N, C))."""
    c = zt.shape[1]
    for k in range(rows.shape[0]):
        zn, row = zt[(r0 + k) // h], rows[k]
        for p in range(0, row.shape[0], c):
            px = row[p:p + c]
            for t in range(c):
                px[t] *= zn[t]


def se_scale(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Twin of ``ops.se_scale`` (SE excite): in place ``x[c, n] *= z[c, n]``."""
    c, n, h, w = x.shape
    if is_channels_last(x):
        rows = _pixel_rows(x)
        zt = np.ascontiguousarray(z.T)                          # (N, C)
        _by_ranges(n * h, x.size, lambda lo, hi: _se_scale_cl_kernel(rows[lo:hi], lo, h, zt))
        return x
    _by_ranges(c, x.size, lambda lo, hi: _se_scale_kernel(x[lo:hi], z[lo:hi]))
    return x


@njit(nogil=True, cache=True)
def _crop_add_kernel(a, b, crop, y):
    c_n, n_n, h, w = a.shape
    for c in range(c_n):
        for n in range(n_n):
            for r in range(h):
                for q in range(w):
                    y[c, n, r, q] = a[c, n, r, q] + b[c, n, r + crop, q + crop]


@njit(nogil=True, cache=True)
def _crop_add_cl_kernel(a_rows, b_rows, r0, h, crop, y_rows):
    """``_crop_add_kernel`` on channel-last rows: y_rows[k] = a_rows[k] + row r0 + k of b
    cropped (a: (N*H, W*C) rows, b: (N*(H + 2crop), (W + 2crop)*C) rows)."""
    wc = a_rows.shape[1]
    off = (b_rows.shape[1] - wc) // 2                  # crop*C values on each side
    for k in range(a_rows.shape[0]):
        n, yy = (r0 + k) // h, (r0 + k) % h
        ar, yr = a_rows[k], y_rows[k]
        br = b_rows[n * (h + 2 * crop) + yy + crop, off:off + wc]
        for q in range(wc):
            yr[q] = ar[q] + br[q]


def crop_add(a: np.ndarray, b: np.ndarray, crop: int) -> np.ndarray:
    """Twin of ``ops.crop_add``: ``a + b`` cropped by ``crop`` on every side, a new array,
    channel-last where a and b both are."""
    if is_channels_last(a) and is_channels_last(b):
        c, n, h, w = a.shape
        yt = np.empty((n, h, w, c), dtype=np.float32)
        y = yt.transpose(3, 0, 1, 2)                 # (C, N, H, W) view
        a_rows, b_rows, y_rows = _pixel_rows(a), _pixel_rows(b), _pixel_rows(y)
        _by_ranges(n * h, a.size, lambda lo, hi: _crop_add_cl_kernel(a_rows[lo:hi], b_rows, lo, h, crop, y_rows[lo:hi]))
        return y
    y = np.empty(a.shape, dtype=np.float32)
    _by_ranges(a.shape[0], a.size, lambda lo, hi: _crop_add_kernel(a[lo:hi], b[lo:hi], crop, y[lo:hi]))
    return y


@njit(nogil=True, cache=True)
def _space_to_depth_kernel(xt, k, r0, r1, cols):
    """Rows (r*OW + ox, r0 <= r < r1, r = n*OH + oy) of ``space_to_depth``'s cols from a
    channel-last xt (N, H, W, C): the pixels of each k x k window, one C-run after another."""
    c = xt.shape[3]
    oh, ow = xt.shape[1] // k, xt.shape[2] // k
    for r in range(r0, r1):
        n, oy = r // oh, r % oh
        for ox in range(ow):
            dst = cols[r * ow + ox]
            for i in range(k):
                src = xt[n, oy * k + i]                  # (W, C): one input row
                for j in range(k):
                    px, d = src[ox * k + j], dst[(i * k + j) * c:(i * k + j + 1) * c]
                    for t in range(c):
                        d[t] = px[t]


def space_to_depth(x: np.ndarray, k: int) -> np.ndarray:
    """Twin of ``ops.space_to_depth``: (C, N, H, W) -> (N*OH*OW, k*k*C), its rows split
    between the workers."""
    c, n, h, w = x.shape
    oh, ow = h // k, w // k
    xt = np.ascontiguousarray(x.transpose(1, 2, 3, 0))      # (N, H, W, C): a view if x is channel-last
    cols = np.empty((n * oh * ow, k * k * c), dtype=np.float32)
    _by_ranges(n * oh, cols.size, lambda lo, hi: _space_to_depth_kernel(xt, k, lo, hi, cols))
    return cols


@njit(nogil=True, cache=True)
def _depth_to_space_kernel(p, h, w, k, bias, slope, r0, r1, yt):
    """Output rows of input rows r0 <= r < r1 (r = n*H + y) of ``depth_to_space``: for
    each, its k output rows, each pixel one OC-run of p + bias, LeakyReLU."""
    oc = yt.shape[3]
    for r in range(r0, r1):
        n, yy = r // h, r % h
        for i in range(k):
            row = yt[n, yy * k + i]                      # (W*k, OC): one output row
            for xx in range(w):
                src = p[r * w + xx]
                for j in range(k):
                    a, d = src[(i * k + j) * oc:(i * k + j + 1) * oc], row[xx * k + j]
                    for o in range(oc):
                        v = a[o] + bias[o]
                        d[o] = max(v, v * slope)


def depth_to_space(p: np.ndarray, shape: tuple[int, int, int], k: int, bias: np.ndarray,
                   slope: float | None) -> np.ndarray:
    """Twin of ``ops.depth_to_space``: p (N*H*W, k*k*OC) -> y (OC, N, H*k, W*k) channel-last,
    bias and LeakyReLU fused into the one pass, its input rows split between the workers."""
    n, h, w = shape
    oc = p.shape[1] // (k * k)
    p = np.ascontiguousarray(p)
    yt = np.empty((n, h * k, w * k, oc), dtype=np.float32)
    s = _IDENTITY_SLOPE if slope is None else np.float32(slope)
    _by_ranges(n * h, yt.size, lambda lo, hi: _depth_to_space_kernel(p, h, w, k, bias, s, lo, hi, yt))
    return yt.transpose(3, 0, 1, 2)                  # (OC, N, H*k, W*k) view


# --- GEMM primitives: column blocks on worker threads, single-threaded BLAS --------------
def _openblas_thread_control():
    """(get, set) of the thread count of the OpenBLAS inside NumPy's wheel, or None.

    The same lookup threadpoolctl does, for the one library we need: NumPy wheels ship
    ``scipy_openblas`` in ``numpy.libs`` (Linux, Windows) or ``numpy/.dylibs`` (macOS);
    loading the file again returns the handle NumPy already uses.
    """
    root = Path(np.__file__).resolve().parent
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        for lib in sorted(folder.glob("*openblas*")) if folder.is_dir() else ():
            try:
                dll = ctypes.CDLL(str(lib))
            except OSError:
                continue
            for prefix in ("scipy_openblas", "openblas"):
                for suffix in ("64_", ""):
                    get = getattr(dll, f"{prefix}_get_num_threads{suffix}", None)
                    put = getattr(dll, f"{prefix}_set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                        return get, put
    return None


_BLAS_THREADS = _openblas_thread_control()
_local = threading.local()
_pool_lock = threading.Lock()
_crew: Crew | None = None                    # the worker threads besides the caller
_helpers: ThreadPoolExecutor | None = None   # the same for callers that find the crew busy


def _scratch(name: str, size: int) -> np.ndarray:
    """A flat float32 buffer of ``size`` owned by the calling thread, grown as needed and
    kept: a layer's blocks reuse the previous layer's memory instead of fresh pages."""
    buf = getattr(_local, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=np.float32)
        setattr(_local, name, buf)
    return buf[:size]


def _stack(name: str, count: int, rows: int, cols: int) -> np.ndarray:
    """A stack of ``count`` (rows, cols) float32 matrices in the calling thread's scratch,
    as the Numba kernels take it: a (count, stride) array, matrix k in row k's first
    rows * cols floats (C order), the rows ``_stack_stride`` floats long: see there why.
    ``_matrices`` gives BLAS the (count, rows, cols) view of the same memory."""
    return _scratch(name, count * _stack_stride(rows * cols)).reshape(count, -1)   # (count, stride)


def _matrices(stack: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The (count, rows, cols) matrices of a ``_stack``: a strided view, which ``np.matmul``
    hands to BLAS like a contiguous stack (each matrix is C-contiguous).  Made by slicing
    and splitting the contiguous last axis, which is always a view (0.4 us; ``as_strided``
    took 7 us, and a training step makes 100)."""
    return stack[:, :rows * cols].reshape(stack.shape[0], rows, cols)   # (count, stride) -> (count, rows, cols)


def _stack_stride(size: int) -> int:
    """Floats from one matrix of a Winograd stack to the next: ``size`` rounded up to 4 KiB,
    plus one 64-byte cache line (``VECTOR_FLOATS``: the output transforms read that far
    past a matrix's last value, never using what they read there).

    The transforms read or write all 16, 36 or 64 matrices of a stack at once, one row each.
    Where the matrices lie a multiple of 4 KiB apart (as often: C * tiles * 4 bytes, with C
    a multiple of 64), all those streams map to the same L1 sets and evict one another; one
    cache line of skew per matrix spreads them over distinct sets.  Measured on this
    machine's one thread: dY's transform of a (256, 16, 12, 12) gradient took 8.4 ms
    unskewed, 1.1 ms skewed.
    """
    return -(-size // 1024) * 1024 + VECTOR_FLOATS


@njit(nogil=True, cache=True, inline="always")
def _vector_length(n: int) -> int:
    """``n`` rounded up to a multiple of ``VECTOR_FLOATS``: an output transform's loop over
    n tiles runs this far (see there)."""
    return -(-n // VECTOR_FLOATS) * VECTOR_FLOATS


def _threads() -> int:
    """Threads this module runs on (the caller included): Numba's thread count."""
    return numba.get_num_threads()


def _workers() -> int:
    """Threads for a GEMM primitive (the caller included): ``_threads()``, or 1 where the
    BLAS threads cannot be set."""
    return _threads() if _BLAS_THREADS is not None else 1


_blas_lock = threading.Lock()
_blas_users = 0      # GEMM primitives running now, from any user thread
_blas_saved = 0      # the thread count to restore when the last one ends


@contextlib.contextmanager
def _single_threaded_blas():
    """BLAS at one thread while any GEMM primitive runs: the first one in saves the count,
    the last one out restores it (calls may overlap from several user threads)."""
    global _blas_users, _blas_saved
    get, put = _BLAS_THREADS
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = get()
            put(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                put(_blas_saved)


def _pool_size() -> int:
    return max(1, numba.config.NUMBA_NUM_THREADS - 1)


def _pool() -> ThreadPoolExecutor:
    global _helpers
    with _pool_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(_pool_size(), thread_name_prefix="w2x-numba")
    return _helpers


def _the_crew() -> Crew:
    """The crew of ``_pool_size()`` threads (kernels/cpu_crew.py), made at first use."""
    global _crew
    with _pool_lock:
        if _crew is None:
            _crew = Crew(_pool_size())
    return _crew


def _forget_threads() -> None:
    """In a forked child: none of the parent's worker threads exist there, and a lock one of
    them held stays held; start again from nothing (the next run makes new threads)."""
    global _crew, _helpers, _pool_lock, _blas_lock, _blas_users
    _crew, _helpers = None, None
    _pool_lock, _blas_lock = threading.Lock(), threading.Lock()
    _blas_users = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


@contextlib.contextmanager
def one_cpu_per_thread() -> Iterator[bool]:
    """Inside the block, the calling thread runs on the first CPU it may use and each
    worker thread (the crew's and the pool's) on one of the next (Linux
    ``sched_setaffinity``); after it, each may use all it could before (as far as the system
    still grants them).  Yields whether it bound them (not where the calling thread may use
    a single CPU, or the platform cannot bind threads).

    Why: a training step hands its worker ~100 short blocks of work, and about every other
    step Linux woke the worker on the CPU the calling thread was running on, where the two
    took turns while the other CPU idled.  Measured, upconv_7 (batch 16, crop 48, 2 threads):
    steps alternating 53 and 70 ms unbound, 51-52 ms bound.  Inference's few long blocks
    did not gain (0.94-1.04x), so only ``w2x train`` (and tools/train_speed.py, which times
    it) binds; the library never does.  The price: the calling thread cannot move off a CPU
    another process keeps busy, and threads it starts inside the block inherit its one CPU.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield False
        return
    before = os.sched_getaffinity(0)
    cpus = sorted(before)
    if len(cpus) < 2:
        yield False
        return
    size = _pool_size()
    arrived = threading.Barrier(size)        # one task on each pool thread, never two on one
    crew = _the_crew()                       # made now: threads made inside inherit one CPU

    def bind(mask_of) -> None:
        def task(i: int) -> None:
            arrived.wait()
            os.sched_setaffinity(0, mask_of(i))
        for f in [_pool().submit(task, i) for i in range(size)]:
            f.result()
        while not crew.try_run(lambda i: os.sched_setaffinity(0, mask_of(i)), lambda: None):
            time.sleep(0.001)                # another thread's run of blocks holds the crew

    def unbind() -> None:
        try:
            os.sched_setaffinity(0, before)
            bind(lambda i: before)
        except OSError:                      # CPUs taken away meanwhile: keep what is granted
            pass

    try:
        os.sched_setaffinity(0, {cpus[0]})
        bind(lambda i: {cpus[1 + i % (len(cpus) - 1)]})
    except OSError:                          # a CPU the container lists but does not grant
        unbind()
        yield False
        return
    try:
        yield True
    finally:
        unbind()


def _run_blocks(blocks: list, work, blas: bool = True) -> None:
    """Call ``work(block)`` for every block, on the calling thread and up to
    ``_threads() - 1`` worker threads, each taking the next block until none is left (dynamic
    scheduling, so a thread that another process slows down just takes fewer blocks).
    The workers are the crew (kernels/cpu_crew.py: they wait for the next run spinning), or
    the pool where another thread's run holds the crew (or a block's work runs blocks; so
    concurrent callers may have up to twice ``_threads() - 1`` workers between them).
    ``blas``: the work calls BLAS, which then runs single-threaded, and without control
    over the BLAS threads the blocks run one after another here."""
    if blas and _BLAS_THREADS is None:
        for b in blocks:
            work(b)
        return
    todo, lock = iter(blocks), threading.Lock()
    helpers = min(len(blocks), _threads()) - 1

    def worker():
        while True:
            with lock:
                b = next(todo, None)
            if b is None:
                return
            work(b)

    with _single_threaded_blas() if blas else contextlib.nullcontext():
        if helpers < 1:
            worker()
        elif not _the_crew().try_run(lambda i: worker(), worker, helpers):
            futures = [_pool().submit(worker) for _ in range(helpers)]
            try:
                worker()
            finally:
                wait(futures)   # they write into the caller's arrays: never return before them
            for f in futures:
                f.result()      # re-raise a helper's exception


def _block_rows(rows: int, fit: int, multiple: int) -> int:
    """Tile rows per block when ``rows`` are cut into near-equal blocks of at most ``fit``
    rows, as many as the least multiple of ``multiple`` that can hold them (so that
    ``multiple`` threads end together), fewer where the rows are few (5 rows for 4 blocks
    make blocks of 2, 2, 1)."""
    count = multiple * math.ceil(rows / (multiple * fit))
    return math.ceil(rows / count)


def _by_ranges(count: int, values: int, work) -> None:
    """``work(lo, hi)`` over ranges covering ``range(count)`` (the channels of a channel-major
    array, the pixel rows of a channel-last one): for ``values`` (the elements the work
    touches) from ``ELEMENTWISE_SPLIT_MIN`` on, one range per thread on the workers
    (``_run_blocks``; the work calls no BLAS), else ``work(0, count)`` on the caller."""
    threads = _threads()
    if values < ELEMENTWISE_SPLIT_MIN or count < 2 or threads < 2:
        work(0, count)
        return
    step = -(-count // threads)
    _run_blocks([(lo, min(count, lo + step)) for lo in range(0, count, step)], lambda b: work(*b), blas=False)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``, twin of ``np.matmul``: a 2-D product is split into column or row blocks
    (``MATMUL_SPLIT_MIN_COLUMNS``, ``MATMUL_SPLIT_MIN_ROWS``) computed on the workers.

    Every product, split or not, runs with BLAS at one thread (``_run_blocks``): a BLAS call
    left to thread itself leaves its worker threads spinning for ~0.1 s after it returns,
    on the cores this module's own threads need next.  Measured: a training step of
    upconv_7 (batch 16, crop 48, 2 threads) took 110 ms with the small products threaded by
    OpenBLAS and 58 ms with OpenBLAS held at one thread."""
    if a.ndim != 2 or b.ndim != 2:   # a stack of products (no layer makes one): one call here
        result = []
        _run_blocks([0], lambda _: result.append(_gemm(a, b)))
        return result[0]
    m, n = a.shape[0], b.shape[1]
    out = np.empty((m, n), dtype=np.result_type(a, b))
    parts = _workers() * MATMUL_BLOCKS_PER_WORKER
    if n >= MATMUL_SPLIT_MIN_COLUMNS:
        step = math.ceil(n / parts)
        blocks = [(slice(None), slice(lo, min(n, lo + step))) for lo in range(0, n, step)]
    elif m >= MATMUL_SPLIT_MIN_ROWS:
        step = math.ceil(m / parts)
        blocks = [(slice(lo, min(m, lo + step)), slice(None)) for lo in range(0, m, step)]
    else:
        blocks = [(slice(None), slice(None))]
    # out[rows, cols] is a view that BLAS writes directly (row stride >= its width)
    _run_blocks(blocks, lambda blk: _gemm(a[blk[0]], b[:, blk[1]], out=out[blk]))
    return out


@njit(nogil=True, cache=True)
def _deconv_gather(cols, y_lo, y_hi, w, kh, kw, stride, pad, bias, slope, n, oy0, oy1, y):
    """y[o, n, oy0:oy1] = LeakyReLU(bias + the taps that reach these rows), from a block's GEMM
    result ``cols[(o*kh + i)*kw + j, (yy - y_lo)*W + xx]`` for input rows y_lo <= yy < y_hi.

    An output row takes the kernel rows of its phase only ((oy + pad - i) % stride == 0), and
    within the row a tap (i, j) adds a unit-stride run of its column into the row's column
    phase (j - pad) % stride: the sub-pixel form of the transposed convolution (for a 4x4
    stride-2 kernel, four 2x2 convolutions).  Each row is summed in a buffer, in (i, j) order
    from 0 as ``ops.col2im`` does, then bias + LeakyReLU, and stored once.
    """
    oc, ow = y.shape[0], y.shape[3]
    bw = (ow + stride - 1) // stride
    acc = np.empty((stride, bw), dtype=np.float32)    # acc[ph, b]: output column b*stride + ph
    for o in range(oc):
        bo = bias[o]
        for oy in range(oy0, oy1):
            acc[:, :] = 0.0
            for i in range(kh):
                t = oy + pad - i
                if t < 0 or t % stride != 0 or t // stride < y_lo or t // stride >= y_hi:
                    continue
                base = (t // stride - y_lo) * w
                for j in range(kw):
                    row = (o * kh + i) * kw + j
                    ph = (j - pad) % stride
                    shift = (j - pad - ph) // stride    # input column xx -> acc[ph, xx + shift]
                    x0 = max(0, (pad - j + stride - 1) // stride)
                    x1 = min(w, (ow - 1 + pad - j) // stride + 1)
                    a = acc[ph]
                    for xx in range(x0, x1):
                        a[xx + shift] += cols[row, base + xx]
            yr = y[o, n, oy]
            for ph in range(stride):
                a = acc[ph]
                for b in range((ow - ph + stride - 1) // stride):
                    v = a[b] + bo
                    yr[b * stride + ph] = max(v, v * slope)


def conv_transpose(x: np.ndarray, wt: np.ndarray, bias: np.ndarray, k: int, stride: int, pad: int,
                   slope: float | None) -> np.ndarray:
    """Twin of ``ops.conv_transpose``: a whole transposed convolution + bias + LeakyReLU.

    x (C, N, H, W), wt (OC*k*k, C), bias (OC,) -> y (OC, N, (H-1)*stride - 2*pad + k, ...).
    Each worker takes a block of output rows of one tile, multiplies the input rows that reach
    them (one more at each edge where kernels overlap) by ``wt`` into its own cached buffer
    and gathers that into the output right away (``_deconv_gather``): the (OC*k*k, N*H*W)
    GEMM result is never written out whole, nor scattered into a zero-filled image.
    """
    c, n, h, w = x.shape
    kk = wt.shape[0]
    oh, ow = transposed_out_size(h, k, stride, pad), transposed_out_size(w, k, stride, pad)
    y = np.empty((kk // (k * k), n, oh, ow), dtype=np.float32)
    s = _IDENTITY_SLOPE if slope is None else np.float32(slope)
    in_rows = max(1, DECONV_BLOCK_BYTES // (kk * w * 4))              # input rows per GEMM
    per_block = max(1, min(math.ceil(n * oh / _workers()), in_rows * stride - k))
    blocks = [(t, r, min(oh, r + per_block)) for t in range(n) for r in range(0, oh, per_block)]

    def work(block):
        t, oy0, oy1 = block
        # input rows yy with yy*stride + i - pad in [oy0, oy1) for some kernel row i
        y_lo = max(0, -(-(oy0 + pad - k + 1) // stride))
        y_hi = min(h, (oy1 - 1 + pad) // stride + 1)
        rows = max(0, y_hi - y_lo)
        xin = x[:, t, y_lo:y_lo + rows, :].reshape(c, rows * w)       # (C, rows*W) view (BLAS reads a channel-last one transposed)
        cols = _scratch("deconv_cols", kk * rows * w).reshape(kk, rows * w)
        _gemm(wt, xin, out=cols)                                       # (OC*k*k, rows*W)
        _deconv_gather(cols, y_lo, y_lo + rows, w, k, k, stride, pad, bias, s, t, oy0, oy1, y)

    _run_blocks(blocks, work)
    return y


@njit(nogil=True, cache=True)
def _tile_rows(x, c, n, y0, pad, wv, rows):
    """rows[i, pad:pad + wv] = x[c, n, y0 + i - pad, :wv] for the input rows of one Winograd
    tile row, y0 counted in x zero-padded by ``pad``; a row outside the image is all 0 (the
    other columns are never written: the caller's zeros)."""
    h = x.shape[2]
    for i in range(rows.shape[0]):
        yy = y0 + i - pad
        if 0 <= yy < h:
            for k in range(wv):
                rows[i, pad + k] = x[c, n, yy, k]
        else:
            for k in range(rows.shape[1]):
                rows[i, k] = 0.0


@njit(nogil=True, cache=True)
def _untile_planes(q, o, r0, r1, ty_n, tx_n, y, gate, gate_slope):
    """y[o, n, 2ty + i, 2tx + k] = q[2i + k, (r - r0)*TX + tx] for the F(2x2) tiles of rows
    r0 <= r < r1 (r = n*TY + ty): the four pixel planes of a block's output tiles interleaved
    into their image rows, rows and columns past OH/OW dropped.  With a ``gate`` (an array of
    y's shape; else None), each value is multiplied by ``gate_slope`` where the gate's is <= 0
    (``winograd_blocks``).

    The last column of an odd width is written in a loop of its own: stored right after
    each row's loop, it kept LLVM from vectorising that loop (1.5x the time, 2x gated)."""
    oh, ow = y.shape[2], y.shape[3]
    whole = ow // 2                         # tiles of a row wholly inside the image
    for r in range(r0, r1):
        n, y0 = r // ty_n, 2 * (r % ty_n)
        j = (r - r0) * tx_n
        for i in range(min(2, oh - y0)):
            row = y[o, n, y0 + i]
            q0, q1 = q[2 * i, j:j + whole], q[2 * i + 1, j:j + whole]
            if gate is None:
                for t in range(whole):      # both phases in one loop: LLVM interleaves in registers
                    row[2 * t], row[2 * t + 1] = q0[t], q1[t]
            else:
                g = gate[o, n, y0 + i]
                for t in range(whole):
                    a, b = q0[t], q1[t]
                    row[2 * t] = a if g[2 * t] > 0 else a * gate_slope
                    row[2 * t + 1] = b if g[2 * t + 1] > 0 else b * gate_slope
    if ow % 2 == 0:
        return
    for r in range(r0, r1):                 # the last column: phase 0 of each row's last tile
        n, y0 = r // ty_n, 2 * (r % ty_n)
        j = (r - r0) * tx_n + whole
        for i in range(min(2, oh - y0)):
            a = q[2 * i, j]
            if gate is None:
                y[o, n, y0 + i, ow - 1] = a
            else:
                y[o, n, y0 + i, ow - 1] = a if gate[o, n, y0 + i, ow - 1] > 0 else a * gate_slope


@njit(nogil=True, cache=True, inline="always")
def _bt_column(d, i0, k):
    """B^T d of column k of rows i0..i0+3 of d: 4 values."""
    d0, d1, d2, d3 = d[i0, k], d[i0 + 1, k], d[i0 + 2, k], d[i0 + 3, k]
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(nogil=True, cache=True, inline="always")
def _store_input_tile(v, jt, e, o, f, g):
    """v[a*4 + b, jt] = ((B^T d) B)[a, b] for the tile whose columns' B^T d are e, o, f, g."""
    v[0, jt], v[1, jt], v[2, jt], v[3, jt] = e[0] - f[0], o[0] + f[0], f[0] - o[0], o[0] - g[0]
    v[4, jt], v[5, jt], v[6, jt], v[7, jt] = e[1] - f[1], o[1] + f[1], f[1] - o[1], o[1] - g[1]
    v[8, jt], v[9, jt], v[10, jt], v[11, jt] = e[2] - f[2], o[2] + f[2], f[2] - o[2], o[2] - g[2]
    v[12, jt], v[13, jt], v[14, jt], v[15, jt] = e[3] - f[3], o[3] + f[3], f[3] - o[3], o[3] - g[3]


@njit(nogil=True, cache=True)
def _winograd_input(x, pad, r0, r1, ty_n, tx_n, v):
    """v[a*4 + b, c*P + (r - r0)*TX + tx] = (B^T d B)[a, b] for the 4x4 input tile d at tile
    row r (= n*TY + ty) and column tx, rows r0 <= r < r1, of x zero-padded by ``pad`` on
    every side; pixels past the input read 0.  ``v`` is a ``_stack`` of 16 (C, P) matrices,
    P = (r1 - r0)*TX tiles, one per row.

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] (Lavin & Gray eq. 9).
    Tile tx covers columns 2tx..2tx+3, so B^T d of its columns 2tx+2, 2tx+3 is also B^T d of
    the next tile's first two: one scalar pass along the row computes each column's B^T d
    once, keeps the last two in registers and stores the tile's 16 values by index.  Where
    a tile row's four input rows lie inside x, they are read from x itself: the padding's
    columns (a ``pad`` of 0 or 2: a whole column pair) and those past the last one as zeros,
    without a test inside the loop over the tiles wholly inside; else from a zero-padded
    copy (``_tile_rows``).  Measured against a vectorised form that first wrote B^T d of the
    row out and then combined columns (the F(4x4) transform's shape): 2-2.5x faster on
    training's rows of 6-23 tiles, 1.6x on a 256-px tile's 127; reading the rows of dX's
    padded input (pad 2) and of odd widths from x rather than a copy: 1.5x and 1.6x.
    """
    c_n, h, w = x.shape[0], x.shape[2], x.shape[3]
    p = (r1 - r0) * tx_n
    rows = np.zeros((4, 2 * tx_n + 2), dtype=np.float32)  # a tile row's input rows, padded
    wv = min(w, 2 * tx_n + 2 - pad)                       # the rest of `rows` stays 0
    z = np.float32(0.0)
    # tiles whose new columns 2t+2-pad and 2t+3-pad (in x) both lie inside x
    t_inside = min(tx_n, max(0, (w - 2 + pad) // 2))
    for c in range(c_n):
        for r in range(r0, r1):
            n, y0 = r // ty_n, 2 * (r % ty_n)
            j = c * p + (r - r0) * tx_n       # column of tile (r, 0) in row c of each matrix
            i0 = y0 - pad                     # the tile row's first input row in x
            if (pad == 0 or pad == 2) and 0 <= i0 and i0 + 4 <= h:
                d = x[c, n]
                # B^T d of columns -pad and 1 - pad: (e0..e3), (o0..o3), zeros left of x
                e0 = e1 = e2 = e3 = o0 = o1 = o2 = o3 = z
                if pad == 0:
                    e0, e1, e2, e3 = _bt_column(d, i0, 0)
                    o0, o1, o2, o3 = _bt_column(d, i0, 1)
                for t in range(t_inside):     # (kept in scalars: tuples here ran 1.15x slower)
                    k = 2 * t + 2 - pad       # B^T d of columns k, k + 1 of x: (f0..f3), (g0..g3)
                    d0, d1, d2, d3 = d[i0, k], d[i0 + 1, k], d[i0 + 2, k], d[i0 + 3, k]
                    f0, f1, f2, f3 = d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    d0, d1, d2, d3 = d[i0, k + 1], d[i0 + 1, k + 1], d[i0 + 2, k + 1], d[i0 + 3, k + 1]
                    g0, g1, g2, g3 = d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    jt = j + t                # (B^T d) B, row a from (e_a, o_a, f_a, g_a)
                    v[0, jt], v[1, jt], v[2, jt], v[3, jt] = e0 - f0, o0 + f0, f0 - o0, o0 - g0
                    v[4, jt], v[5, jt], v[6, jt], v[7, jt] = e1 - f1, o1 + f1, f1 - o1, o1 - g1
                    v[8, jt], v[9, jt], v[10, jt], v[11, jt] = e2 - f2, o2 + f2, f2 - o2, o2 - g2
                    v[12, jt], v[13, jt], v[14, jt], v[15, jt] = e3 - f3, o3 + f3, f3 - o3, o3 - g3
                    e0, e1, e2, e3, o0, o1, o2, o3 = f0, f1, f2, f3, g0, g1, g2, g3
                e, o = (e0, e1, e2, e3), (o0, o1, o2, o3)
                for t in range(t_inside, tx_n):   # the last tiles, reaching past x: zeros there
                    k = 2 * t + 2 - pad
                    f = _bt_column(d, i0, k) if k < w else (z, z, z, z)
                    g = _bt_column(d, i0, k + 1) if k + 1 < w else (z, z, z, z)
                    _store_input_tile(v, j + t, e, o, f, g)
                    e, o = f, g
            else:
                _tile_rows(x, c, n, y0, pad, wv, rows)
                e, o = _bt_column(rows, 0, 0), _bt_column(rows, 0, 1)
                for t in range(tx_n):
                    f, g = _bt_column(rows, 0, 2 * t + 2), _bt_column(rows, 0, 2 * t + 3)
                    _store_input_tile(v, j + t, e, o, f, g)
                    e, o = f, g


@njit(nogil=True, cache=True)
def _winograd_output(m, bias, slope, r0, r1, ty_n, tx_n, y, gate, gate_slope):
    """y[o, n, 2ty:2ty+2, 2tx:2tx+2] = LeakyReLU(A^T M A + bias) for the tiles of rows
    r0 <= r < r1, M[a, b] = m[a*4 + b, o*P + (r - r0)*TX + tx] (``m``: a ``_stack`` of 16 (OC, P)
    matrices, P = (r1 - r0)*TX); rows/columns past OH/OW dropped; ``gate``, ``gate_slope``:
    as ``_untile_planes`` applies them.

    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] (Lavin & Gray eq. 9).  For each output channel the
    block's P tiles lie side by side in every matrix, so the transform is one unit-stride
    loop over all of them (run to ``_vector_length``; LLVM vectorises it, however short an image row is: 6-23
    tiles on a training batch), into the four pixel planes of ``q``; then ``_untile_planes``
    interleaves each tile row's planes into its two output rows.  Against a loop per tile
    row (the F(4x4) transform's shape): 2-3x faster on training's rows, 1.1x on a 254-px
    row; a scalar pass storing each tile's 4 pixels straight into y won on 6-7 tile rows
    (1.5x) and lost from 20 on (0.7x, 0.4x on 127).
    """
    oc = y.shape[0]
    p = (r1 - r0) * tx_n
    pv = _vector_length(p)                    # the loops' length: ``VECTOR_FLOATS``
    s = np.empty((8, pv), dtype=np.float32)   # A^T M: s[4*i + b, tile] = (A^T M)[i, b]
    q = np.empty((4, pv), dtype=np.float32)   # q[2*i + k, tile]: output pixel (i, k) of each tile
    for o in range(oc):
        bo = bias[o]
        j0 = o * p                            # column of the block's first tile in row o
        for b in range(4):
            m0, m1, m2, m3 = m[b, j0:j0 + pv], m[4 + b, j0:j0 + pv], m[8 + b, j0:j0 + pv], m[12 + b, j0:j0 + pv]
            s0, s1 = s[b], s[4 + b]
            for t in range(pv):
                s0[t] = m0[t] + m1[t] + m2[t]
                s1[t] = m1[t] - m2[t] - m3[t]
        for i in range(2):
            a0, a1, a2, a3 = s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]
            q0, q1 = q[2 * i], q[2 * i + 1]
            for t in range(pv):
                e0 = a0[t] + a1[t] + a2[t] + bo
                e1 = a1[t] - a2[t] - a3[t] + bo
                q0[t], q1[t] = max(e0, e0 * slope), max(e1, e1 * slope)
        _untile_planes(q, o, r0, r1, ty_n, tx_n, y, gate, gate_slope)


# --- F(4x4) and F(6x6): the 1-D transforms, then the kernels ---------------------------------
# Each 2-D transform is its 1-D transform down the columns, then along the rows; the 1-D
# transforms are these inline functions, shared by F(4x4)'s channel-major input transform (a
# loop over the tiles of a row: a network's first layer) and the channel-last kernels (a loop
# over the channels of a tile: every other layer).

@njit(nogil=True, cache=True, inline="always")
def _bt4(d0, d1, d2, d3, d4, d5):
    """B^T d of one column (d0, ..., d5) for F(4x4, 3x3), B^T = ``ops.WINOGRAD_BT[4]``
    (points 0, 1, -1, 1/2, -2, inf):

        [[2, -3, -4, 3, 2, 0], [0, -2, 1, 5, 2, 0], [0, -2, 5, -1, -2, 0],
         [0, 2, 1, -2, -1, 0], [0, 1, -2, -1, 2, 0], [0, 2, -3, -4, 3, 2]]
    """
    f2, f3, f4, f5 = np.float32(2), np.float32(3), np.float32(4), np.float32(5)  # float32 arithmetic
    e13, e24 = d1 - d3, d2 - d4
    return (f2 * (d0 + d4) - f3 * e13 - f4 * d2, d2 + f5 * d3 + f2 * (d4 - d1),
            f5 * d2 - d3 - f2 * (d1 + d4), f2 * e13 + e24, e13 - f2 * e24,
            f2 * (d1 + d5) - f3 * e24 - f4 * d3)


@njit(nogil=True, cache=True, inline="always")
def _bt6(d0, d1, d2, d3, d4, d5, d6, d7):
    """B^T d of one column (d0, ..., d7) for F(6x6, 3x3), B^T = ``ops.WINOGRAD_BT[6]``
    (points 0, 1, -1, 1/2, -1/2, 2, -2, inf), in pairs that share their terms:

        v0 = 4(d0 - d6) + 21(d4 - d2)          v7 = 4(d7 - d1) + 21(d3 - d5)
        v1, v2 = (17 d4 - 4(d2 + d6)) +- (17 d3 - 4(d1 + d5))
        v3, v4 = (8 d2 - 10 d4 + 2 d6) +- (4 d1 - 5 d3 + d5)
        v5, v6 = (d2 - 5 d4 + 4 d6) +- (2 d1 - 10 d3 + 8 d5)
    """
    f2, f4, f5, f8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)  # float32 arithmetic
    f10, f17, f21 = np.float32(10), np.float32(17), np.float32(21)
    even1, odd1 = f17 * d4 - f4 * (d2 + d6), f17 * d3 - f4 * (d1 + d5)
    even3, odd3 = f8 * d2 - f10 * d4 + f2 * d6, f4 * d1 - f5 * d3 + d5
    even5, odd5 = d2 - f5 * d4 + f4 * d6, f2 * d1 - f10 * d3 + f8 * d5
    return (f4 * (d0 - d6) + f21 * (d4 - d2), even1 + odd1, even1 - odd1, even3 + odd3,
            even3 - odd3, even5 + odd5, even5 - odd5, f4 * (d7 - d1) + f21 * (d3 - d5))


@njit(nogil=True, cache=True, inline="always")
def _at4(m0, m1, m2, m3, m4, m5):
    """A^T m of one column (m0, ..., m5) for F(4x4, 3x3), A^T = ``ops.WINOGRAD_AT[4]``:

        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 1/2, -2, 0], [0, 1, 1, 1/4, 4, 0], [0, 1, -1, 1/8, -8, 1]]
    """
    h2, h4, h8 = np.float32(0.5), np.float32(0.25), np.float32(0.125)   # float32 arithmetic
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    sp, sm = m1 + m2, m1 - m2
    return (m0 + sp + m3 + m4, sm + h2 * m3 - f2 * m4, sp + h4 * m3 + f4 * m4,
            sm + h8 * m3 - f8 * m4 + m5)


@njit(nogil=True, cache=True, inline="always")
def _at6(m0, m1, m2, m3, m4, m5, m6, m7):
    """A^T m of one column (m0, ..., m7) for F(6x6, 3x3), A^T = ``ops.WINOGRAD_AT[6]``; with
    sp, sm = m1 +- m2, rp, rm = m3 +- m4, tp, tm = m5 +- m6:

        y0 = m0 + sp + rp + tp      y1 = sm + rm/2 + 2tm        y2 = sp + rp/4 + 4tp
        y3 = sm + rm/8 + 8tm        y4 = sp + rp/16 + 16tp      y5 = sm + rm/32 + 32tm + m7
    """
    h2, h4, h8 = np.float32(1 / 2), np.float32(1 / 4), np.float32(1 / 8)   # float32 arithmetic
    h16, h32 = np.float32(1 / 16), np.float32(1 / 32)
    f2, f4, f8, f16, f32 = np.float32(2), np.float32(4), np.float32(8), np.float32(16), np.float32(32)
    sp, sm, rp, rm, tp, tm = m1 + m2, m1 - m2, m3 + m4, m3 - m4, m5 + m6, m5 - m6
    return (m0 + sp + rp + tp, sm + h2 * rm + f2 * tm, sp + h4 * rp + f4 * tp,
            sm + h8 * rm + f8 * tm, sp + h16 * rp + f16 * tp, sm + h32 * rm + f32 * tm + m7)


@njit(nogil=True, cache=True, inline="always")
def _leaky(e, slope):
    """LeakyReLU(e) for 0 <= slope <= 1 (``_IDENTITY_SLOPE`` 1: e itself)."""
    return max(e, e * slope)


@njit(nogil=True, cache=True)
def _winograd4_input(x, pad, r0, r1, ty_n, tx_n, v):
    """F(4x4, 3x3) input transform: v[a*6 + b, c*P + (r - r0)*TX + tx] = (B^T d B)[a, b] for
    the 6x6 input tile d at tile row r (= n*TY + ty), column tx (stride 4), rows r0 <= r < r1,
    of x zero-padded by ``pad`` on every side; pixels past the input read 0 (``_bt4``).

    Rows first (B^T d over the 6 input rows, unit stride over the whole width), then each
    transformed row is split into its 4 column phases (column 4t + q), so the column
    transform is a unit-stride loop over the TX tiles, which LLVM vectorises.  The 6 rows are
    read from x itself where they lie inside it (no padding), the columns past x's last
    transformed as zeros; else from a zero-padded copy (``_tile_rows``).  Against copying
    every tile row: the transform 1.1-1.2x faster on 256-px tiles (0.9-1.0x on 124-px ones),
    the forward on lena.png's 256-px tiles 0.93x the time (vgg_7), 0.95x (upcunet).
    """
    c_n, h, w = x.shape[0], x.shape[2], x.shape[3]
    p = (r1 - r0) * tx_n
    width = 4 * tx_n + 4
    rows = np.zeros((6, width), dtype=np.float32)     # the 6 input rows of a tile row, 0-padded
    col = np.empty((6, width), dtype=np.float32)      # B^T d: the rows transformed
    ph = np.empty((4, tx_n + 1), dtype=np.float32)    # one transformed row's column phases
    wv = min(w, width - pad)                          # the rest of `rows` stays 0
    for c in range(c_n):
        for r in range(r0, r1):
            n, y0 = r // ty_n, 4 * (r % ty_n)
            if pad == 0 and y0 + 6 <= h and w <= width:
                xc = x[c, n]
                d0, d1, d2, d3, d4, d5 = xc[y0], xc[y0 + 1], xc[y0 + 2], xc[y0 + 3], xc[y0 + 4], xc[y0 + 5]
                read = w                      # columns from x; B^T of the zeros past it is 0
                for a in range(6):
                    for k in range(w, width):
                        col[a, k] = 0.0
            else:
                _tile_rows(x, c, n, y0, pad, wv, rows)
                d0, d1, d2, d3, d4, d5 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
                read = width
            c0, c1, c2, c3, c4, c5 = col[0], col[1], col[2], col[3], col[4], col[5]
            for k in range(read):
                c0[k], c1[k], c2[k], c3[k], c4[k], c5[k] = _bt4(d0[k], d1[k], d2[k], d3[k], d4[k], d5[k])
            j = c * p + (r - r0) * tx_n         # column of tile (r, 0) in row c of each matrix
            for a in range(6):
                ca = col[a]
                for t in range(tx_n + 1):
                    ph[0, t], ph[1, t], ph[2, t], ph[3, t] = ca[4 * t], ca[4 * t + 1], ca[4 * t + 2], ca[4 * t + 3]
                q0, q1, q2, q3 = ph[0], ph[1], ph[2], ph[3]
                v0, v1, v2 = v[6 * a, j:j + tx_n], v[6 * a + 1, j:j + tx_n], v[6 * a + 2, j:j + tx_n]
                v3, v4, v5 = v[6 * a + 3, j:j + tx_n], v[6 * a + 4, j:j + tx_n], v[6 * a + 5, j:j + tx_n]
                for t in range(tx_n):
                    v0[t], v1[t], v2[t], v3[t], v4[t], v5[t] = _bt4(q0[t], q1[t], q2[t], q3[t], q0[t + 1], q1[t + 1])


@njit(nogil=True, cache=True)
def _tile_rows_cl(x, n, y0, pad, rows):
    """rows[i, (pad + k)*C + ch] = x[n, y0 + i - pad, k, ch] for the input rows of one
    Winograd tile row of a channel-last x (N, H, W, C), y0 counted in x zero-padded by
    ``pad``; every other value of ``rows`` (the padding, rows outside the image) set to 0."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    xn = x[n].reshape(h, w * c)                  # (H, W*C): one image row per row
    lo, hi = pad * c, (pad + w) * c
    for i in range(rows.shape[0]):
        yy = y0 + i - pad
        ri = rows[i]
        if 0 <= yy < h:
            xr = xn[yy]
            for k in range(lo):
                ri[k] = 0.0
            for k in range(w * c):
                ri[lo + k] = xr[k]
            for k in range(hi, ri.shape[0]):
                ri[k] = 0.0
        else:
            for k in range(ri.shape[0]):
                ri[k] = 0.0


@njit(nogil=True, cache=True)
def _winograd4_input_cl(x, pad, r0, r1, ty_n, tx_n, v, rows, col):
    """F(4x4, 3x3) input transform of a channel-last x (N, H, W, C): v[a*6 + b, ((r - r0)*TX +
    tx)*C + c] = (B^T d B)[a, b] for the 6x6 input tile d of channel c at tile row r (= n*TY +
    ty), column tx (stride 4), rows r0 <= r < r1, of x zero-padded by ``pad``; pixels past the
    input read 0.  ``v`` holds (P, C) matrices (tiles x channels), P = (r1 - r0)*TX.

    Rows first (``_bt4`` down the 6 input rows: a unit-stride pass over their W*C values, read
    from x itself where they lie inside it, else from the zero-padded copy ``_tile_rows_cl``
    writes), then each tile's column transform (``_bt4`` along its 6 columns) as a
    unit-stride loop over its C channels.  ``rows`` and ``col`` are (6, (4*TX + 2)*C)
    scratch (``winograd_blocks``).
    """
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    width = (4 * tx_n + 2) * c                   # the values of the columns the tiles read
    for r in range(r0, r1):
        n, y0 = r // ty_n, 4 * (r % ty_n)
        if pad == 0 and y0 + 6 <= h:
            xn = x[n].reshape(h, w * c)          # (H, W*C)
            d0, d1, d2, d3, d4, d5 = xn[y0], xn[y0 + 1], xn[y0 + 2], xn[y0 + 3], xn[y0 + 4], xn[y0 + 5]
            read = w * c                         # values from x; B^T of the zeros past it is 0
            for a in range(6):
                for k in range(read, width):
                    col[a, k] = 0.0
        else:
            _tile_rows_cl(x, n, y0, pad, rows)
            d0, d1, d2, d3, d4, d5 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
            read = width
        c0, c1, c2, c3, c4, c5 = col[0], col[1], col[2], col[3], col[4], col[5]
        for k in range(read):
            c0[k], c1[k], c2[k], c3[k], c4[k], c5[k] = _bt4(d0[k], d1[k], d2[k], d3[k], d4[k], d5[k])
        for tx in range(tx_n):
            j = ((r - r0) * tx_n + tx) * c       # tile (r, tx)'s row in each (P, C) matrix
            k0 = 4 * tx * c                      # its first column's values in `col`
            for a in range(6):
                ca = col[a]
                q0, q1, q2 = ca[k0:k0 + c], ca[k0 + c:k0 + 2 * c], ca[k0 + 2 * c:k0 + 3 * c]
                q3, q4, q5 = ca[k0 + 3 * c:k0 + 4 * c], ca[k0 + 4 * c:k0 + 5 * c], ca[k0 + 5 * c:k0 + 6 * c]
                a6 = 6 * a
                v0, v1, v2 = v[a6, j:j + c], v[a6 + 1, j:j + c], v[a6 + 2, j:j + c]
                v3, v4, v5 = v[a6 + 3, j:j + c], v[a6 + 4, j:j + c], v[a6 + 5, j:j + c]
                for t in range(c):
                    v0[t], v1[t], v2[t], v3[t], v4[t], v5[t] = _bt4(q0[t], q1[t], q2[t], q3[t], q4[t], q5[t])


@njit(nogil=True, cache=True)
def _winograd6_input_cl(x, pad, r0, r1, ty_n, tx_n, v, rows, col):
    """F(6x6, 3x3) input transform of a channel-last x (N, H, W, C): v[a*8 + b, ((r - r0)*TX +
    tx)*C + c] = (B^T d B)[a, b] for the 8x8 input tiles (stride 6), by ``_bt6`` in the passes
    of ``_winograd4_input_cl``.  ``rows`` and ``col`` are (8, (6*TX + 2)*C) scratch."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    width = (6 * tx_n + 2) * c
    for r in range(r0, r1):
        n, y0 = r // ty_n, 6 * (r % ty_n)
        if pad == 0 and y0 + 8 <= h:
            xn = x[n].reshape(h, w * c)          # (H, W*C)
            d0, d1, d2, d3 = xn[y0], xn[y0 + 1], xn[y0 + 2], xn[y0 + 3]
            d4, d5, d6, d7 = xn[y0 + 4], xn[y0 + 5], xn[y0 + 6], xn[y0 + 7]
            read = w * c
            for a in range(8):
                for k in range(read, width):
                    col[a, k] = 0.0
        else:
            _tile_rows_cl(x, n, y0, pad, rows)
            d0, d1, d2, d3, d4, d5, d6, d7 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6], rows[7]
            read = width
        c0, c1, c2, c3, c4, c5, c6, c7 = col[0], col[1], col[2], col[3], col[4], col[5], col[6], col[7]
        for k in range(read):
            c0[k], c1[k], c2[k], c3[k], c4[k], c5[k], c6[k], c7[k] = _bt6(
                d0[k], d1[k], d2[k], d3[k], d4[k], d5[k], d6[k], d7[k])
        for tx in range(tx_n):
            j = ((r - r0) * tx_n + tx) * c
            k0 = 6 * tx * c
            for a in range(8):
                ca = col[a]
                q0, q1, q2, q3 = ca[k0:k0 + c], ca[k0 + c:k0 + 2 * c], ca[k0 + 2 * c:k0 + 3 * c], ca[k0 + 3 * c:k0 + 4 * c]
                q4, q5, q6, q7 = ca[k0 + 4 * c:k0 + 5 * c], ca[k0 + 5 * c:k0 + 6 * c], ca[k0 + 6 * c:k0 + 7 * c], ca[k0 + 7 * c:k0 + 8 * c]
                a8 = 8 * a
                v0, v1, v2, v3 = v[a8, j:j + c], v[a8 + 1, j:j + c], v[a8 + 2, j:j + c], v[a8 + 3, j:j + c]
                v4, v5, v6, v7 = v[a8 + 4, j:j + c], v[a8 + 5, j:j + c], v[a8 + 6, j:j + c], v[a8 + 7, j:j + c]
                for t in range(c):
                    v0[t], v1[t], v2[t], v3[t], v4[t], v5[t], v6[t], v7[t] = _bt6(
                        q0[t], q1[t], q2[t], q3[t], q4[t], q5[t], q6[t], q7[t])


@njit(nogil=True, cache=True)
def _winograd4_output_cl(m, bias, slope, r0, r1, ty_n, tx_n, y):
    """F(4x4, 3x3) output transform into a channel-last y (N, OH, OW, OC):
    y[n, 4ty:4ty+4, 4tx:4tx+4, o] = LeakyReLU(A^T M A + bias) for the tiles of rows r0 <= r <
    r1, M[a, b] = m[a*6 + b, ((r - r0)*TX + tx)*OC + o] (``m`` holds (P, OC) matrices).  Per
    tile, ``_at4`` down its 6 rows into ``s``, then along them with bias + LeakyReLU, each a
    unit-stride loop over the OC channels, stored straight into y's pixels; a tile reaching
    past OH/OW is written through ``edge``, and only its columns inside y kept."""
    oh, ow, oc = y.shape[1], y.shape[2], y.shape[3]
    s = np.empty((24, oc), dtype=np.float32)         # A^T M of one tile: s[6*i + b, o]
    edge = np.empty((4, oc), dtype=np.float32)       # one output row of an edge tile
    for r in range(r0, r1):
        n, y0 = r // ty_n, 4 * (r % ty_n)
        yn = y[n].reshape(oh, ow * oc)               # (OH, OW*OC)
        for tx in range(tx_n):
            j = ((r - r0) * tx_n + tx) * oc
            for b in range(6):
                m0, m1, m2 = m[b, j:j + oc], m[6 + b, j:j + oc], m[12 + b, j:j + oc]
                m3, m4, m5 = m[18 + b, j:j + oc], m[24 + b, j:j + oc], m[30 + b, j:j + oc]
                s0, s1, s2, s3 = s[b], s[6 + b], s[12 + b], s[18 + b]
                for t in range(oc):
                    s0[t], s1[t], s2[t], s3[t] = _at4(m0[t], m1[t], m2[t], m3[t], m4[t], m5[t])
            cols = min(4, ow - 4 * tx)
            k0 = 4 * tx * oc                         # the tile's first pixel in an output row
            for i in range(min(4, oh - y0)):
                a0, a1, a2 = s[6 * i], s[6 * i + 1], s[6 * i + 2]
                a3, a4, a5 = s[6 * i + 3], s[6 * i + 4], s[6 * i + 5]
                row = yn[y0 + i]
                if cols == 4:
                    w0, w1 = row[k0:k0 + oc], row[k0 + oc:k0 + 2 * oc]
                    w2, w3 = row[k0 + 2 * oc:k0 + 3 * oc], row[k0 + 3 * oc:k0 + 4 * oc]
                else:
                    w0, w1, w2, w3 = edge[0], edge[1], edge[2], edge[3]
                for t in range(oc):
                    e0, e1, e2, e3 = _at4(a0[t], a1[t], a2[t], a3[t], a4[t], a5[t])
                    bo = bias[t]
                    w0[t], w1[t] = _leaky(e0 + bo, slope), _leaky(e1 + bo, slope)
                    w2[t], w3[t] = _leaky(e2 + bo, slope), _leaky(e3 + bo, slope)
                if cols < 4:                         # keep the columns inside y
                    for k in range(cols):
                        for t in range(oc):
                            row[k0 + k * oc + t] = edge[k, t]


@njit(nogil=True, cache=True)
def _winograd6_output_cl(m, bias, slope, r0, r1, ty_n, tx_n, y):
    """F(6x6, 3x3) output transform into a channel-last y (N, OH, OW, OC): y[n, 6ty:6ty+6,
    6tx:6tx+6, o] = LeakyReLU(A^T M A + bias), M[a, b] = m[a*8 + b, ((r - r0)*TX + tx)*OC + o],
    by ``_at6`` in the passes of ``_winograd4_output_cl``.  (Working on 32, 64 or 128 channels
    of a tile at a time, to keep its A^T M in L1, measured 1.05x, 1.0x and 1.0x the time of
    all 128 or 256 at once on vgg_7 and upconv_7.)"""
    oh, ow, oc = y.shape[1], y.shape[2], y.shape[3]
    s = np.empty((48, oc), dtype=np.float32)         # A^T M of one tile: s[8*i + b, o]
    edge = np.empty((6, oc), dtype=np.float32)       # one output row of an edge tile
    for r in range(r0, r1):
        n, y0 = r // ty_n, 6 * (r % ty_n)
        yn = y[n].reshape(oh, ow * oc)               # (OH, OW*OC)
        for tx in range(tx_n):
            j = ((r - r0) * tx_n + tx) * oc
            for b in range(8):
                m0, m1, m2, m3 = m[b, j:j + oc], m[8 + b, j:j + oc], m[16 + b, j:j + oc], m[24 + b, j:j + oc]
                m4, m5, m6, m7 = m[32 + b, j:j + oc], m[40 + b, j:j + oc], m[48 + b, j:j + oc], m[56 + b, j:j + oc]
                s0, s1, s2, s3, s4, s5 = s[b], s[8 + b], s[16 + b], s[24 + b], s[32 + b], s[40 + b]
                for t in range(oc):
                    s0[t], s1[t], s2[t], s3[t], s4[t], s5[t] = _at6(
                        m0[t], m1[t], m2[t], m3[t], m4[t], m5[t], m6[t], m7[t])
            cols = min(6, ow - 6 * tx)
            k0 = 6 * tx * oc                         # the tile's first pixel in an output row
            for i in range(min(6, oh - y0)):
                a0, a1, a2, a3 = s[8 * i], s[8 * i + 1], s[8 * i + 2], s[8 * i + 3]
                a4, a5, a6, a7 = s[8 * i + 4], s[8 * i + 5], s[8 * i + 6], s[8 * i + 7]
                row = yn[y0 + i]
                if cols == 6:
                    w0, w1, w2 = row[k0:k0 + oc], row[k0 + oc:k0 + 2 * oc], row[k0 + 2 * oc:k0 + 3 * oc]
                    w3, w4, w5 = row[k0 + 3 * oc:k0 + 4 * oc], row[k0 + 4 * oc:k0 + 5 * oc], row[k0 + 5 * oc:k0 + 6 * oc]
                else:
                    w0, w1, w2, w3, w4, w5 = edge[0], edge[1], edge[2], edge[3], edge[4], edge[5]
                for t in range(oc):
                    e0, e1, e2, e3, e4, e5 = _at6(a0[t], a1[t], a2[t], a3[t], a4[t], a5[t], a6[t], a7[t])
                    bo = bias[t]
                    w0[t], w1[t], w2[t] = _leaky(e0 + bo, slope), _leaky(e1 + bo, slope), _leaky(e2 + bo, slope)
                    w3[t], w4[t], w5[t] = _leaky(e3 + bo, slope), _leaky(e4 + bo, slope), _leaky(e5 + bo, slope)
                if cols < 6:                         # keep the columns inside y
                    for k in range(cols):
                        for t in range(oc):
                            row[k0 + k * oc + t] = edge[k, t]


def winograd_panels(u: np.ndarray) -> np.ndarray:
    """A channel-last Winograd weight ((m+2)^2, C, OC) in the form ``winograd_conv3x3``
    multiplies fastest: packed into the panels of kernels/cpu_gemm.py's kernel, ((m+2)^2,
    OC/NR, C, NR), where OC is a multiple of their width NR (every layer but an image's);
    else u itself, which BLAS multiplies."""
    return cpu_gemm.panels(u) if cpu_gemm.fits(u.shape[2]) else u


def winograd_conv3x3(x: np.ndarray, u: np.ndarray, bias: np.ndarray, slope: float | None,
                     pad: int = 0, channels_last: bool = False) -> np.ndarray:
    """Twin of ``ops.winograd_conv3x3``: 3x3 stride-1 convolution of x zero-padded by ``pad``
    + bias + LeakyReLU, by F(2x2, 3x3), F(4x4, 3x3) or F(6x6, 3x3) as ``u`` says.

    Parameters
    ----------
    x : float32 (C, N, H, W), C-contiguous or channel-last (``ops.is_channels_last``)
    u : float32 ((m+2)^2, OC, C), ``ops.winograd_weight(w2d, C, m)``: 16 matrices for
        F(2x2), 36 for F(4x4), 64 for F(6x6); ((m+2)^2, C, OC) with ``channels_last``, or
        those packed, ((m+2)^2, OC/NR, C, NR) (``winograd_panels``: F(4x4) and F(6x6))
    bias : float32 (OC,)
    slope : LeakyReLU slope, or None for no activation
    pad : zero rows and columns around x (the transforms read them as 0; no padded copy)
    channels_last : y channel-last (F(4x4) and F(6x6) only)

    Returns
    -------
    y : float32 (OC, N, H + 2*pad - 2, W + 2*pad - 2)

    Notes
    -----
    The output is cut into m x m tiles, tile rows ``r = n*TY + ty``; each worker takes a block
    of tile rows, transforms its input into a ``_stack`` of (m+2)^2 matrices, multiplies them
    by ``u`` and transforms back with bias + LeakyReLU, all in its own cached buffers.

    F(4x4) and F(6x6), the networks' forms, work channel-last (``models.Model.on`` keeps every
    activation so): the matrices are (tiles, C) and (tiles, OC), the GEMMs (tiles, C) @
    (C, OC), and each transform runs along the channels of one tile at a time.  (Run along
    the tiles of a row instead, channel-major, a transform must split each input row into its
    column phases and interleave the output tiles back into image rows: a forward of a 256-px
    tile took 1.10-1.12x the time of channel-last, 2 threads, medians of 7.)  A network's first
    layer reads its 1 or 3 channels channel-major, through F(4x4)'s channel-major input
    transform (``_winograd4_input``: along the tiles, where 1 or 3 channels would make too
    short a loop); F(6x6) copies such an input channel-last, and a channel-major output is
    the channel-last one copied.  F(2x2) (the training backward's) works channel-major:
    GEMMs (OC, C) @ (C, tiles).

    A channel-last product runs by NumPy's matmul (BLAS), or by the register-blocked kernel
    of kernels/cpu_gemm.py where ``u`` comes packed into its panels (``winograd_panels``, which
    ``layers.Conv2d.on`` asks for): 1.2-1.6x the GEMM speed on one row of tiles.
    """
    tile = WINOGRAD_TILES[u.shape[0]]
    if tile != 2 and not channels_last:
        u_last = u if u.ndim == 4 else np.ascontiguousarray(u.transpose(0, 2, 1))   # packed, or ((m+2)^2, C, OC)
        return np.ascontiguousarray(winograd_conv3x3(x, u_last, bias, slope, pad, channels_last=True))
    y, blocks, work = winograd_blocks(x, u, bias, slope, pad, channels_last=channels_last)
    _run_blocks(blocks, work)
    return y


def winograd_blocks(x: np.ndarray, u: np.ndarray, bias: np.ndarray, slope: float | None,
                    pad: int = 0, gate: np.ndarray | None = None, gate_slope: float = 1.0,
                    channels_last: bool = False) -> tuple[np.ndarray, list, Callable]:
    """``winograd_conv3x3`` as work to run: (y, blocks, work), y complete once ``work(b)``
    has run for every b in blocks, in any order, on any threads (``_run_blocks``; the
    training backward runs them in one go with dW's, ``cpu_numba_grad.weight_and_input_grad``).
    ``channels_last`` must be True for F(4x4) and F(6x6), False for F(2x2).

    ``gate`` (F(2x2) only): an array of y's shape; y is multiplied by ``gate_slope`` where
    the gate is <= 0 as each block writes it (the training backward's dX, in which the
    LeakyReLU backward of the layer below rides along)."""
    c, n, h, w = x.shape
    t2 = u.shape[0]
    tile = WINOGRAD_TILES[t2]
    if gate is not None and tile != 2:
        raise ValueError(f"a gate needs u F(2x2)'s 16 matrices; got {t2}")
    if channels_last != (tile != 2):
        raise ValueError(f"F({tile}x{tile}) matrices write a {'channel-major' if tile == 2 else 'channel-last'} "
                         f"output here, not a {'channel-last' if channels_last else 'channel-major'} one")
    packed = u.ndim == 4                                    # ((m+2)^2, OC/NR, C, NR): winograd_panels
    if packed and tile == 2:
        raise ValueError(f"packed u (winograd_panels) is for F(4x4) and F(6x6); F(2x2) takes u (16, OC, C), "
                         f"got {u.shape}")
    if packed:
        oc = u.shape[1] * u.shape[3]
        expected = (t2, oc // cpu_gemm.NR, c, cpu_gemm.NR)
    else:
        oc = u.shape[2] if channels_last else u.shape[1]
        expected = (t2, c, oc) if channels_last else (t2, oc, c)
    if u.shape != expected or bias.shape != (oc,):
        raise ValueError(f"x has {c} channels: expected u of shape {expected} and bias ({oc},), "
                         f"got {u.shape} and {bias.shape}")
    # F(2x2) reads channel-major, F(6x6) channel-last, F(4x4) either (channel-major: a first
    # layer); an x in the other order is copied
    x_last = tile == 6 or (tile == 4 and is_channels_last(x))
    if x_last and not x.transpose(1, 2, 3, 0).flags.c_contiguous:
        x = to_channels_last(x)
    elif not x_last:
        x = np.ascontiguousarray(x)
    oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
    if gate is not None and gate.shape != (oc, n, oh, ow):
        raise ValueError(f"a gate must have the output's shape {(oc, n, oh, ow)}; got {gate.shape}")
    gate = None if gate is None else np.ascontiguousarray(gate, dtype=np.float32)
    gs = np.float32(gate_slope)
    ty_n, tx_n = -(-oh // tile), -(-ow // tile)        # tile x tile output tiles per column, row
    rows = n * ty_n
    fit = max(1, WINOGRAD_BLOCK_BYTES // (t2 * (c + oc) * tx_n * 4))  # tile rows a block may hold
    workers = _workers()
    per_block = _block_rows(rows, fit, workers * WINOGRAD_BLOCKS_PER_WORKER if workers > 1 else 1)
    if channels_last:
        yt = np.empty((n, oh, ow, oc), dtype=np.float32)   # (N, OH, OW, OC)
        y = yt.transpose(3, 0, 1, 2)                        # its (OC, N, OH, OW) view
        transform_out = {4: _winograd4_output_cl, 6: _winograd6_output_cl}[tile]
    else:
        y = np.empty((oc, n, oh, ow), dtype=np.float32)
    s = _IDENTITY_SLOPE if slope is None else np.float32(slope)
    xt = x.transpose(1, 2, 3, 0) if x_last else None    # (N, H, W, C), C-contiguous
    width = (tile * tx_n + 2) * c                        # a channel-last tile row's input values per row

    def work(r0):
        r1 = min(rows, r0 + per_block)
        p = (r1 - r0) * tx_n
        v = _stack("winograd_v", t2, c, p)      # (m+2)^2 matrices: (tiles, C), or (C, tiles)
        m = _stack("winograd_m", t2, oc, p)     # (m+2)^2 matrices: (tiles, OC), or (OC, tiles) for F(2x2)
        if tile == 2:
            _winograd_input(x, pad, r0, r1, ty_n, tx_n, v)
            _gemm(u, _matrices(v, c, p), out=_matrices(m, oc, p))   # 16 x (OC, C) @ (C, tiles)
            _winograd_output(m, bias, s, r0, r1, ty_n, tx_n, y, gate, gs)
            return
        if x_last:
            row_buf = _scratch("winograd_rows", (tile + 2) * width).reshape(tile + 2, width)  # the kernels' rows
            col_buf = _scratch("winograd_col", (tile + 2) * width).reshape(tile + 2, width)   # and col
            {4: _winograd4_input_cl, 6: _winograd6_input_cl}[tile](xt, pad, r0, r1, ty_n, tx_n, v, row_buf, col_buf)
            vt = _matrices(v, p, c)                                 # (m+2)^2 x (tiles, C)
        else:
            _winograd4_input(x, pad, r0, r1, ty_n, tx_n, v)
            vt = _matrices(v, c, p).transpose(0, 2, 1)              # (m+2)^2 x (tiles, C) view
        if packed:
            _panel_gemm(vt, u, _matrices(m, p, oc))                 # (m+2)^2 x (tiles, C) @ (C, OC)
        else:
            _gemm(vt, u, out=_matrices(m, p, oc))
        transform_out(m, bias, s, r0, r1, ty_n, tx_n, yt)

    return y, list(range(0, rows, per_block)), work
