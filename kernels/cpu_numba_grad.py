"""Training stage, CPU: Numba kernels of the fast backward pass of a stride-1 convolution,
which ``w2x/nn/grad.py`` runs on the "numba" row in float32.

The reference (``grad.conv_backward``) builds the layer's whole im2col matrix in the
forward pass and keeps it until the backward pass: for vgg_7's 128-channel layers on a
batch of 16 48-px patches that is 1152 x 16*40*40 floats (118 MB) per layer, seven of them
built and page-faulted in per step, which took two thirds of a step (tools/train_speed.py,
profiled).  Here nothing of that size exists:

* ``weight_grad``: dW = dY colsᵀ summed over blocks of output rows; each worker thread
  unfolds one block of rows into its own cache-sized buffer (``_im2col_rows``) and adds
  ``cols_block dY_blockᵀ`` (a single-threaded BLAS GEMM) into its own partial sum;
* ``leaky_relu_backward_bias``: the LeakyReLU backward fused with db = Σ dY, from the
  layer's *output* (y > 0 exactly where its input was, for a slope > 0), one pass;
* dX of a 3x3 stride-1 conv is the forward conv of dY padded by 2 with the flipped,
  transposed weights (``flipped_weight``), which ``grad.py`` runs on the backend's
  Winograd kernel (kernels/cpu_numba.py) like any forward layer.

Each is checked against the reference in tests/test_grad.py.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba
import numpy as np
from numba import njit
from threadpoolctl import ThreadpoolController

# Floats in one worker's im2col block: 1 MiB of columns (the 128-channel layer: 1152 rows x
# ~230 columns) kept the block and its GEMM operands in L2/L3; 0.25-4 MiB measured within
# 5% of each other on vgg_7 (tools/train_speed.py).
WEIGHT_GRAD_BLOCK_FLOATS = 1 << 20

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_blas: ThreadpoolController | None = None


@njit(nogil=True, cache=True)
def _im2col_rows(x, n, oy0, oy1, k, cols):
    """cols[(c*k + i)*k + j, (oy - oy0)*OW + ox] = x[c, n, oy + i, ox + j] for the output rows
    oy0 <= oy < oy1 of image n of a stride-1 valid k x k conv (``ops.im2col``'s row order)."""
    c_n, ow = x.shape[0], x.shape[3] - k + 1
    for c in range(c_n):
        for i in range(k):
            for j in range(k):
                row = (c * k + i) * k + j
                for oy in range(oy0, oy1):
                    base = (oy - oy0) * ow
                    src = x[c, n, oy + i]
                    for ox in range(ow):
                        cols[row, base + ox] = src[ox + j]


def _workers() -> int:
    return numba.get_num_threads()


def _helpers() -> ThreadPoolExecutor:
    global _pool, _blas
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1), thread_name_prefix="w2x-grad")
            _blas = ThreadpoolController()
    return _pool


def weight_grad(x: np.ndarray, dy: np.ndarray, k: int) -> np.ndarray:
    """dW of a stride-1 valid k x k conv: x (C, N, H, W), dy (OC, N, OH, OW) -> (OC, C*k*k),
    ``dY colsᵀ`` as ``grad.conv_backward`` computes it, summed block by block."""
    c, n, h, w = x.shape
    oc, _, oh, ow = dy.shape
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy)
    rows = max(1, min(oh, WEIGHT_GRAD_BLOCK_FLOATS // (c * k * k * ow)))
    blocks = [(b, r0, min(oh, r0 + rows)) for b in range(n) for r0 in range(0, oh, rows)]
    todo, lock = iter(blocks), threading.Lock()
    n_workers = min(len(blocks), _workers())
    sums = [np.zeros((c * k * k, oc), np.float32) for _ in range(n_workers)]   # dWᵀ partials

    def worker(t: int) -> None:
        cols = np.empty((c * k * k, rows * ow), np.float32)
        part = np.empty((c * k * k, oc), np.float32)
        while True:
            with lock:
                blk = next(todo, None)
            if blk is None:
                return
            b, r0, r1 = blk
            p = (r1 - r0) * ow
            _im2col_rows(x, b, r0, r1, k, cols)
            # (C*k*k, p) @ (p, OC): dy[:, b, r0:r1] is (OC, rows, OW) with unit inner strides
            np.matmul(cols[:, :p], dy[:, b, r0:r1].reshape(oc, p).T, out=part)
            sums[t] += part

    pool = _helpers()
    with _blas.limit(limits=1, user_api="blas"):
        futures = [pool.submit(worker, t) for t in range(1, n_workers)]
        try:
            worker(0)
        finally:
            wait(futures)
        for f in futures:
            f.result()
    total = sums[0]
    for s in sums[1:]:
        total += s
    return np.ascontiguousarray(total.T)


@njit(nogil=True, cache=True)
def _leaky_backward_bias_kernel(dy, y, slope, dx, db):
    oc, m = dy.shape
    for o in range(oc):
        acc = 0.0
        for q in range(m):
            d = dy[o, q] if y[o, q] > 0 else dy[o, q] * slope
            dx[o, q] = d
            acc += d
        db[o] = acc


def leaky_relu_backward_bias(dy: np.ndarray, y: np.ndarray, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """The gradient at a conv's pre-activation and its bias from the gradient ``dy`` at
    ``y = LeakyReLU(slope)(z)`` (slope > 0, so y > 0 iff z > 0): (dz like dy, db (OC,)).
    db is summed in float64."""
    oc = dy.shape[0]
    dz = np.empty(dy.shape, np.float32)
    db = np.empty(oc, np.float64)
    _leaky_backward_bias_kernel(np.ascontiguousarray(dy).reshape(oc, -1), np.ascontiguousarray(y).reshape(oc, -1),
                                np.float32(slope), dz.reshape(oc, -1), db)
    return dz, db.astype(np.float32)


def flipped_weight(w2d: np.ndarray, in_channels: int, k: int) -> np.ndarray:
    """A conv weight (OC, C*k*k) as the weight (C, OC*k*k) of the conv that maps dY (padded
    by k - 1) to dX: channels swapped, kernel rotated by 180 degrees."""
    oc = w2d.shape[0]
    # (OC, C, k, k) -> (C, OC, k, k) rotated -> (C, OC*k*k)
    w4 = w2d.reshape(oc, in_channels, k, k)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(w4.reshape(in_channels, oc * k * k))


def pad(dy: np.ndarray, p: int) -> np.ndarray:
    """dY (OC, N, OH, OW) zero-padded by p on every side of its planes."""
    oc, n, oh, ow = dy.shape
    out = np.zeros((oc, n, oh + 2 * p, ow + 2 * p), np.float32)
    out[:, :, p:p + oh, p:p + ow] = dy
    return out



# --- layers with few outputs (128->3, 64->3): kn2row forward and backward ----------------
@njit(nogil=True, cache=True)
def _shift_add_kernel(p, k, bias, slope, y):
    """y[o, n, oy, ox] = act(bias[o] + Σ_ij p[(o*k + i)*k + j, n, oy + i, ox + j])."""
    oc, n_n, oh, ow = y.shape
    for o in range(oc):
        for n in range(n_n):
            for oy in range(oh):
                row = y[o, n, oy]
                row[:] = bias[o]
                for i in range(k):
                    for j in range(k):
                        src = p[(o * k + i) * k + j, n, oy + i]
                        for ox in range(ow):
                            row[ox] += src[ox + j]
                for ox in range(ow):
                    v = row[ox]
                    row[ox] = max(v, v * slope)


def kn2row_forward(x: np.ndarray, wk: np.ndarray, bias: np.ndarray, k: int, slope: float | None, matmul) -> np.ndarray:
    """Stride-1 valid conv + bias + LeakyReLU(slope) (None: none) as kn2row: one GEMM
    ``wk (OC*k*k, C) @ x (C, N*H*W)`` (``matmul``, the backend's), then the k*k shifted planes
    summed: (C, N, H, W) -> (OC, N, H-k+1, W-k+1).  ``wk`` is ``ops.kn2row_weight``."""
    c, n, h, w = x.shape
    oc = wk.shape[0] // (k * k)
    p = matmul(wk, x.reshape(c, n * h * w)).reshape(oc * k * k, n, h, w)   # (OC*k*k, N, H, W)
    y = np.empty((oc, n, h - k + 1, w - k + 1), np.float32)
    _shift_add_kernel(p, k, bias, np.float32(1.0 if slope is None else slope), y)
    return y


@njit(nogil=True, cache=True)
def _shifted_stack_kernel(dz, k, d):
    """d[(o*k + i)*k + j, n, oy + i, ox + j] = dz[o, n, oy, ox], 0 elsewhere (d is zeroed)."""
    oc, n_n, oh, ow = dz.shape
    for o in range(oc):
        for i in range(k):
            for j in range(k):
                r = (o * k + i) * k + j
                for n in range(n_n):
                    for oy in range(oh):
                        dst = d[r, n, oy + i]
                        src = dz[o, n, oy]
                        for ox in range(ow):
                            dst[ox + j] = src[ox]


def kn2row_backward(dz: np.ndarray, x: np.ndarray, wk: np.ndarray, k: int, matmul, input_grad: bool = True):
    """dW and dX of ``kn2row_forward`` from dZ at its pre-activation (OC, N, OH, OW).

    With D, the k*k copies of dZ each shifted by its tap onto x's grid (OC*k*k, N*H*W):
    dW in kn2row form = D xᵀ (OC*k*k, C), dX = wkᵀ D (C, N*H*W), two GEMMs over the short
    OC*k*k side.  Returns (dx or None, dw (OC, C*k*k) in the conv's GEMM form)."""
    c, n, h, w = x.shape
    oc = dz.shape[0]
    d = np.zeros((oc * k * k, n, h, w), np.float32)
    _shifted_stack_kernel(np.ascontiguousarray(dz), k, d)
    d2 = d.reshape(oc * k * k, n * h * w)                                   # (OC*k*k, N*H*W)
    # (C, NHW) @ (NHW, OC*k*k) -> transposed: OpenBLAS runs the long-K product faster with
    # the wide matrix on the left (grad.conv_backward)
    dwk = np.matmul(x.reshape(c, n * h * w), d2.T).T                        # (OC*k*k, C)
    # (OC, k, k, C) -> (OC, C, k, k) -> (OC, C*k*k)
    dw = np.ascontiguousarray(dwk.reshape(oc, k, k, c).transpose(0, 3, 1, 2).reshape(oc, c * k * k))
    dx = matmul(np.ascontiguousarray(wk.T), d2).reshape(c, n, h, w) if input_grad else None
    return dx, dw
