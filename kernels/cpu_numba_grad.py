"""Training stage, CPU: Numba kernels of the fast backward pass of the stride-1 convolutions,
which ``w2x/nn/grad.py`` runs on the "numba" row in float32.

The reference (``grad.conv_backward``) builds the layer's whole im2col matrix in the
forward pass and keeps it until the backward pass: for vgg_7's 128-channel layers on a
batch of 16 48-px patches that is 1152 x 16*40*40 floats (118 MB) per layer, seven of them
built and page-faulted in per step, which took two thirds of a step (tools/train_speed.py,
profiled).  Here nothing of that size exists:

* 3x3 layers: the forward and dX run on the backend's Winograd kernel (kernels/cpu_numba.py;
  dX of a 3x3 stride-1 conv is the forward conv of dY padded by 2 with the rotated,
  transposed weights, whose Winograd form is the forward's reordered, ``input_grad_weight``;
  the input transform reads the padding as zeros, no padded copy), and dW is Winograd run
  backwards (``winograd_weight_grad``): per block of tile rows, each worker thread
  transforms x and dY into cache-sized buffers and runs 16 single-threaded BLAS GEMMs, and
  the blocks' terms are summed in block order (``_summed_blocks``: the same bits for any
  thread count); db = Σ dY falls out of dY's transform; ``weight_and_input_grad`` runs dW's
  and dX's blocks in one go, dX leaving through the LeakyReLU backward of the layer below;
* layers with few outputs (128->3): kn2row forward, and dW, dX from one stack of shifted
  dY copies (``kn2row_forward``, ``kn2row_backward``);
* ``leaky_relu_backward``: the LeakyReLU backward from the layer's *output* (y > 0 exactly
  where its input was, for a slope > 0), where no dX above applied it;
* ``winograd_weights``: every layer's Winograd weights at once, on the worker threads;
  ``adam_update``: Adam's update in one pass.

Each is checked against the reference in tests/test_grad.py.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from numba import njit

# the forward's block runner (worker threads, single-threaded BLAS) and block sizes, its channel split,
# per-thread stacks of matrices, F(2x2)'s input transform and the Winograd conv as blocks
from w2x.kernels.cpu_numba import (_block_rows, _by_ranges, _matrices, _run_blocks, _stack, _winograd_input,
                                   winograd_blocks)


def _summed_blocks(blocks: list, shape: tuple, term, then) -> tuple[list, Callable]:
    """Σ over ``blocks`` of ``term(block, out)`` (which writes its float32 term into ``out``
    of ``shape``) as work for the forward's ``_run_blocks``: (numbered blocks, work); the
    thread that adds the last term then calls ``then(total)``.

    The terms are added in block order, whichever thread computed them: a term finished
    ahead of an earlier one waits in its buffer until that one is added.  So the sum is the
    same bit for bit for any thread count and any timing (per-thread partial sums would
    group the terms as the scheduling happened to hand them out)."""
    total = np.zeros(shape, np.float32)
    finished: dict[int, np.ndarray] = {}   # terms computed but not yet added, by block index
    spare: list[np.ndarray] = []           # buffers of terms already added
    next_term = [0]                        # the index of the next term to add
    adding = threading.Lock()

    def one(item) -> None:
        i, blk = item
        with adding:
            part = spare.pop() if spare else np.empty(shape, np.float32)
        term(blk, part)
        with adding:
            finished[i] = part
            first = next_term[0]
            while next_term[0] in finished:
                done = finished.pop(next_term[0])
                np.add(total, done, out=total)
                spare.append(done)
                next_term[0] += 1
            last = next_term[0] == len(blocks) > first     # this thread added the last term
        if last:
            then(total)

    return list(enumerate(blocks)), one


# --- dW of a 3x3 stride-1 conv by Winograd F(2x2, 3x3), run backwards ---------------------
# The forward (ops.winograd_conv3x3) computes each 2x2 output tile as y = Aᵀ[(G g Gᵀ) ⊙
# (Bᵀ d B)]A from the 4x4 input tile d.  It is linear in g, so
#     dL/dg = Gᵀ [Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B)] G,
# 16 GEMMs (OC, tiles) @ (tiles, C) over the same input transform as the forward: 16 products
# per tile and channel pair instead of im2col's 36 (2.25x fewer flops).
WINOGRAD_GRAD_BLOCK_BYTES = 4 << 20     # per-thread V and dY transforms of one block
# dW's tile rows are cut into near-equal blocks, as many as a multiple of this (``_block_rows``),
# whatever the thread count (the sum's grouping, and so its bits, must not depend on it): 1, 2
# or 4 threads end together.  Blocks cut to the byte limit alone (36, 36, 36, 4 tile rows)
# kept one of two threads waiting a fifth of dW's time.
GRAD_BLOCKS_MULTIPLE = 4


@njit(nogil=True, cache=True, inline="always")
def _dy_tile(g, k, d00, d01, d10, d11):
    """g[a*4 + b, k] = (A dY Aᵀ)[a, b] for the 2x2 tile [[d00, d01], [d10, d11]]: the rows of
    A dY are (d00, d01), (d00 + d10, d01 + d11), (d00 - d10, d01 - d11), (-d10, -d11), and
    (A dY) Aᵀ maps each row [u, v] to [u, u + v, u - v, -v]."""
    u, v = d00, d01
    g[0, k], g[1, k], g[2, k], g[3, k] = u, u + v, u - v, -v
    u, v = d00 + d10, d01 + d11
    g[4, k], g[5, k], g[6, k], g[7, k] = u, u + v, u - v, -v
    u, v = d00 - d10, d01 - d11
    g[8, k], g[9, k], g[10, k], g[11, k] = u, u + v, u - v, -v
    u, v = -d10, -d11
    g[12, k], g[13, k], g[14, k], g[15, k] = u, u + v, u - v, -v


@njit(nogil=True, cache=True)
def _winograd_dy_rows(dy, r0, r1, ty_n, tx_n, g):
    """g[a*4 + b, o*P + (r - r0)*TX + t] = (A dY Aᵀ)[a, b] for the 2x2 tile of dY at rows
    2ty.., columns 2t.. of image n (values past OH/OW read 0); ``g`` is a ``_stack`` of 16
    (OC, P) matrices, P = (r1 - r0)*TX.  A = [[1, 0], [1, 1], [1, -1], [0, -1]].

    The tiles wholly inside dY are read without a bounds test (1.4x the speed of testing
    every value), then the last column of an odd width and the last row of an odd height."""
    oc, _, oh, ow = dy.shape
    p = (r1 - r0) * tx_n
    whole = ow // 2                                  # tiles of a row wholly inside dY
    zero = np.float32(0.0)
    for o in range(oc):
        for r in range(r0, r1):
            n, y0 = r // ty_n, 2 * (r % ty_n)
            j = o * p + (r - r0) * tx_n              # column of tile (r, 0) in row o of each matrix
            if y0 + 1 < oh:
                for t in range(whole):
                    x0 = 2 * t
                    _dy_tile(g, j + t, dy[o, n, y0, x0], dy[o, n, y0, x0 + 1], dy[o, n, y0 + 1, x0], dy[o, n, y0 + 1, x0 + 1])
                if ow % 2:
                    _dy_tile(g, j + whole, dy[o, n, y0, ow - 1], zero, dy[o, n, y0 + 1, ow - 1], zero)
            else:                                    # the last row of an odd height
                for t in range(whole):
                    _dy_tile(g, j + t, dy[o, n, y0, 2 * t], dy[o, n, y0, 2 * t + 1], zero, zero)
                if ow % 2:
                    _dy_tile(g, j + whole, dy[o, n, y0, ow - 1], zero, zero, zero)


def winograd_weight_grad(x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dW, db) of a 3x3 stride-1 valid conv, x (C, N, H, W), dy (OC, N, H-2, W-2) at its
    pre-activation -> ((OC, C*9), (OC,)): dW by the transposed Winograd F(2x2, 3x3) (above),
    equal to dY colsᵀ (``grad.conv_backward``) up to float32 rounding; db = Σ dY, from the
    same transform of dY (``_weight_grad_blocks``)."""
    dw, db, blocks, work = _weight_grad_blocks(x, dy)
    _run_blocks(blocks, work)
    return dw, db


def weight_and_input_grad(x: np.ndarray, dz: np.ndarray, u_dx: np.ndarray,
                          gate_slope: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dX, dW, db) of a 3x3 stride-1 valid conv from dZ at its pre-activation: dW and db as
    ``winograd_weight_grad``, dX the Winograd conv of dZ padded by 2 with ``u_dx``
    (``input_grad_weight``), their blocks worked off in one ``_run_blocks``: one hand-off
    to the worker threads instead of two, and dW's last steps (the ordered sum, the
    back-transform) on one thread while the others go on with dX's blocks.

    ``gate_slope``: x is the output of a LeakyReLU of that slope (> 0), and dX is returned
    through it: multiplied by the slope where x <= 0 as its blocks write it (the gradient
    at the pre-activation of the layer below; the separate pass over dX, which also summed
    db, cost 1.8 ms of a 40 ms upconv_7 step on the calling thread alone)."""
    dw, db, w_blocks, w_work = _weight_grad_blocks(x, dz)
    gate = None if gate_slope is None else x
    dx, x_blocks, x_work = winograd_blocks(dz, u_dx, np.zeros(u_dx.shape[1], np.float32), None, pad=2,
                                           gate=gate, gate_slope=1.0 if gate_slope is None else gate_slope)
    blocks = [(w_work, b) for b in w_blocks] + [(x_work, b) for b in x_blocks]   # dW's first
    _run_blocks(blocks, lambda block: block[0](block[1]))
    return dx, dw, db


def _weight_grad_blocks(x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, list, Callable]:
    """``winograd_weight_grad`` as work to run: (dw, db, blocks, work), dw and db complete
    once ``work(b)`` has run for every b in blocks (``_run_blocks``).

    db comes with dY's transform: matrix 5 of A dY Aᵀ (row and column 1 of A are (1, 1)) is
    each tile's sum (d00 + d10) + (d01 + d11), so db[o] = Σ over tiles of g[5, o, tile].  Each
    block's sums are kept apart in float64 and added in block order: like dW, the same bits
    on any thread count."""
    c, n, h, w = x.shape
    oc, _, oh, ow = dy.shape
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy)
    ty_n, tx_n = (oh + 1) // 2, (ow + 1) // 2
    rows = n * ty_n
    fit = max(1, WINOGRAD_GRAD_BLOCK_BYTES // (16 * (c + oc) * tx_n * 4))   # tile rows a block may hold
    per_block = _block_rows(rows, fit, GRAD_BLOCKS_MULTIPLE)
    starts = list(range(0, rows, per_block))
    dw = np.empty((oc, c * 9), np.float32)
    db = np.empty(oc, np.float32)
    db_parts = np.empty((len(starts), oc), np.float64)     # each block's Σ dY

    def term(r0, out):
        r1 = min(rows, r0 + per_block)
        p = (r1 - r0) * tx_n
        v = _stack("grad_v", 16, c, p)       # 16 matrices (C, tiles)
        g = _stack("grad_dy", 16, oc, p)     # 16 matrices (OC, tiles)
        _winograd_input(x, 0, r0, r1, ty_n, tx_n, v)        # the forward's Bᵀ d B
        _winograd_dy_rows(dy, r0, r1, ty_n, tx_n, g)
        gm = _matrices(g, oc, p)                            # (16, OC, tiles)
        np.matmul(gm, _matrices(v, c, p).transpose(0, 2, 1), out=out)   # 16 x (OC, tiles) @ (tiles, C)
        db_parts[r0 // per_block] = gm[5].sum(axis=1, dtype=np.float64)

    def then(m):                             # the last term's thread, every block done
        _winograd_weight_back(m, dw)         # dL/dU -> dL/dg = Gᵀ (dL/dU) G
        db[:] = db_parts.sum(axis=0)         # (blocks, OC) -> (OC,), rows added in order

    blocks, work = _summed_blocks(starts, (16, oc, c), term, then)
    return dw, db, blocks, work


@njit(nogil=True, cache=True)
def _winograd_weight_back(m, dw):
    """dw[o, c*9 + i*3 + j] = (Gᵀ M G)[i, j], M[a, b] = m[a*4 + b, o, c], in float64: the
    filter transform's adjoint, Gᵀ v = (v0 + (v1 + v2)/2, (v1 - v2)/2, (v1 + v2)/2 + v3)."""
    _, oc, c_n = m.shape
    t = np.empty((4, 3))
    f64 = np.float64
    for o in range(oc):
        for c in range(c_n):
            for a in range(4):
                v0, v1, v2, v3 = f64(m[4 * a, o, c]), f64(m[4 * a + 1, o, c]), f64(m[4 * a + 2, o, c]), f64(m[4 * a + 3, o, c])
                t[a, 0] = v0 + 0.5 * (v1 + v2)
                t[a, 1] = 0.5 * (v1 - v2)
                t[a, 2] = 0.5 * (v1 + v2) + v3
            for j in range(3):
                v0, v1, v2, v3 = t[0, j], t[1, j], t[2, j], t[3, j]
                dw[o, c * 9 + j] = v0 + 0.5 * (v1 + v2)
                dw[o, c * 9 + 3 + j] = 0.5 * (v1 - v2)
                dw[o, c * 9 + 6 + j] = 0.5 * (v1 + v2) + v3


@njit(nogil=True, cache=True, inline="always")
def _g_column(row, b, c, v0, v1, v2):
    """row[a*4 + b, c] = (G v)[a] for column b of the row-transformed kernel, v in float64."""
    row[b, c] = v0
    row[4 + b, c] = 0.5 * (v0 + v1 + v2)
    row[8 + b, c] = 0.5 * (v0 - v1 + v2)
    row[12 + b, c] = v2


@njit(nogil=True, cache=True)
def _winograd_weight_kernel(g, u):
    """u[a*4 + b, o, c] = (G g Gᵀ)[a, b] for g = w[o, c*9:(c+1)*9] as 3x3, in float64;
    G v = (v0, (v0 + v1 + v2)/2, (v0 - v1 + v2)/2, v2).

    One output channel at a time, a unit-stride loop over the input channels into the 16
    rows of ``row``, then copied to the 16 matrices: storing each (o, c)'s 16 values straight
    into 16 matrices a multiple of 4 KiB apart evicted them from L1 (3x slower)."""
    oc, c9 = g.shape
    c_n = c9 // 9
    row = np.empty((16, c_n), dtype=np.float32)   # row[a*4 + b, c] = (G g Gᵀ)[a, b] of channel c
    f64 = np.float64
    for o in range(oc):
        for c in range(c_n):                      # scalars only: LLVM vectorises over c
            k = 9 * c
            g00, g01, g02 = f64(g[o, k]), f64(g[o, k + 1]), f64(g[o, k + 2])
            g10, g11, g12 = f64(g[o, k + 3]), f64(g[o, k + 4]), f64(g[o, k + 5])
            g20, g21, g22 = f64(g[o, k + 6]), f64(g[o, k + 7]), f64(g[o, k + 8])
            # G applied to each kernel row i: (g_i0, t_i1, t_i2, g_i2); then G down each column b
            t01, t02 = 0.5 * (g00 + g01 + g02), 0.5 * (g00 - g01 + g02)
            t11, t12 = 0.5 * (g10 + g11 + g12), 0.5 * (g10 - g11 + g12)
            t21, t22 = 0.5 * (g20 + g21 + g22), 0.5 * (g20 - g21 + g22)
            _g_column(row, 0, c, g00, g10, g20)
            _g_column(row, 1, c, t01, t11, t21)
            _g_column(row, 2, c, t02, t12, t22)
            _g_column(row, 3, c, g02, g12, g22)
        for k in range(16):
            for c in range(c_n):
                u[k, o, c] = row[k, c]


def winograd_weight(w2d: np.ndarray, in_channels: int) -> np.ndarray:
    """``ops.winograd_weight`` (U = G g Gᵀ, (16, OC, C), computed in float64 and rounded once;
    the float64 sums are grouped otherwise than NumPy's, which in practice never shows after
    the rounding: the tests find the same bits) as a Numba loop: 8 ms -> 0.13 ms for 128x128
    on one thread, which counts when a training step transforms every weight."""
    u = np.empty((16, w2d.shape[0], in_channels), np.float32)
    _winograd_weight_kernel(np.ascontiguousarray(w2d), u)
    return u


def winograd_weights(weights: list) -> list:
    """[(u, u_dx)] for [(w2d, in_channels)]: each layer's ``winograd_weight`` and its
    ``input_grad_weight`` (copied out of the view), the layers shared out among the worker threads,
    largest first.  A training step needs every layer's at once; one at a time they ran
    on the calling thread alone (1.7 + 0.6 ms of an upconv_7 step at 2 threads)."""
    out: list = [None] * len(weights)

    def work(i: int) -> None:
        u = winograd_weight(*weights[i])
        out[i] = (u, np.ascontiguousarray(input_grad_weight(u)))   # dX's GEMMs: 2% faster than on the view

    order = sorted(range(len(weights)), key=lambda i: -weights[i][0].size)
    _run_blocks(order, work, blas=False)
    return out


@njit(nogil=True, cache=True)
def _leaky_backward_kernel(dy, y, slope, dx):
    """dx = dy where y > 0, else slope * dy (flat arrays; LLVM vectorises the select)."""
    for q in range(dy.size):
        dx[q] = dy[q] if y[q] > 0 else dy[q] * slope


def leaky_relu_backward(dy: np.ndarray, y: np.ndarray, slope: float) -> np.ndarray:
    """The gradient at a LeakyReLU's input from the gradient ``dy`` at its output
    ``y = LeakyReLU(slope)(z)`` (slope > 0, so y > 0 iff z > 0); the channels are split
    between the workers.  Where the LeakyReLU feeds a fast conv, that conv's dX applies it
    instead (``weight_and_input_grad``'s ``gate_slope``)."""
    oc = dy.shape[0]
    dz = np.empty(dy.shape, np.float32)
    dy2, y2, dz2 = (np.ascontiguousarray(a).reshape(oc, -1) for a in (dy, y, dz))   # (OC, N*H*W)
    s = np.float32(slope)
    _by_ranges(oc, dy2.size, lambda lo, hi: _leaky_backward_kernel(dy2[lo:hi].ravel(), y2[lo:hi].ravel(), s,
                                                                   dz2[lo:hi].ravel()))
    return dz


# dX of a 3x3 stride-1 conv is the conv of dY padded by 2 with the kernel rotated by 180
# degrees and the channels swapped.  Its Winograd weight needs no transform of its own: with
# J the 3x3 reversal, G J = P G, P swapping rows 0 and 3 of F(2x2)'s G, so
#     G (J g J) Gᵀ = P (G g Gᵀ) Pᵀ:
# matrix a*4 + b of the rotated kernel's U is matrix P(a)*4 + P(b) of the forward's U.
_ROTATED = np.array([3, 1, 2, 0])
_ROTATED_MATRICES = (_ROTATED[:, None] * 4 + _ROTATED[None, :]).ravel()   # (16,)


def input_grad_weight(u: np.ndarray) -> np.ndarray:
    """The F(2x2) Winograd weight (16, C, OC) of the conv that maps dY (padded by 2) to dX,
    from the forward's U (16, OC, C): its matrices reordered (above) and each transposed
    (a strided view, which BLAS reads as it is); equal to ``winograd_weight`` of the rotated,
    channel-swapped kernel up to float32 rounding."""
    return u[_ROTATED_MATRICES].transpose(0, 2, 1)       # (16, OC, C) reordered -> (16, C, OC)


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
    dwk = matmul(x.reshape(c, n * h * w), d2.T).T                           # (OC*k*k, C)
    # (OC, k, k, C) -> (OC, C, k, k) -> (OC, C*k*k)
    dw = np.ascontiguousarray(dwk.reshape(oc, k, k, c).transpose(0, 3, 1, 2).reshape(oc, c * k * k))
    dx = matmul(np.ascontiguousarray(wk.T), d2).reshape(c, n, h, w) if input_grad else None
    return dx, dw


# --- Adam's update in one pass -------------------------------------------------------------
@njit(nogil=True, cache=True, error_model="numpy")   # no zero-division test: it vectorises
def _adam_kernel(p, g, m, v, b1, c1, b2, c2, step_size, bias2_sqrt, eps):
    """``w2x.train.adam.update_numpy`` over flat float32 arrays, element by element, each
    operation in float32 in the order NumPy's seven passes take them (the same bits)."""
    for i in range(p.size):
        mi = m[i] * b1 + c1 * g[i]
        vi = v[i] * b2 + (c2 * g[i]) * g[i]
        m[i], v[i] = mi, vi
        p[i] = p[i] - (step_size * mi) / (np.sqrt(vi) / bias2_sqrt + eps)


def adam_update(p, g, m, v, step_size: float, bias2_sqrt: float, beta1: float, beta2: float, eps: float) -> None:
    """``w2x.train.adam.update_numpy`` in one pass instead of seven, and no temporaries (an
    upconv_7 step's update of 0.55 M parameters: 2.4 -> 0.5 ms); float32 C-contiguous
    arrays only (``adam.update_for`` sends anything else to NumPy)."""
    arrays = (p, g, m, v)
    if not all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays):
        raise ValueError("adam_update takes float32 C-contiguous arrays; use adam.update_numpy for others")
    f = np.float32
    _adam_kernel(*(a.reshape(-1) for a in arrays), f(beta1), f(1 - beta1), f(beta2), f(1 - beta2),   # (size,) views
                 f(step_size), f(bias2_sqrt), f(eps))
