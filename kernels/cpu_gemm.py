"""Network stage, CPU: the products of a Winograd block's stacked matrices by a layer's
weights, by a register-blocked kernel of our own instead of one BLAS call per matrix.

A channel-last Winograd block (kernels/cpu_numba.py ``winograd_blocks``) multiplies 36 or 64
matrices (tiles, C) by the layer's (C, OC) ones, each with only as many rows as a row of
tiles has: 42 on vgg_7's 128-channel layers for 256-px tiles.  BLAS sgemm is made for big
products: it copies ("packs") both operands on every call, and its kernels want hundreds of
rows.  Here the weights are packed once, when a model is put on the backend (``panels``),
and the tiles are read where they lie.

The kernel is the one every fast GEMM is built around (Goto & van de Geijn, "Anatomy of
High-Performance Matrix Multiplication", ACM TOMS 2008): an ``MR`` x ``NR`` block of the
product is held in vector registers while the loop runs down K; each step multiplies one
broadcast value of A per row by ``NR // VECTOR`` vectors of B's row, with fused multiply-adds,
and the block is stored once at the end.  6 x 16 on AVX2 (12 of its 16 vector registers hold
the block, 2 the row of B, 1 the broadcast), 6 x 32 where AVX-512 gives 16-float vectors.
B is read from ``panels``: the (K, NR) column strips of each weight matrix, each contiguous,
so that a strip (8 KiB for K = 128 on AVX2) streams in and stays in L1 while every MR rows
of A run past it.  (Read in place from (K, N) rows, the strip's rows lie N floats apart;
on K >= 128 that ran at 0.65-0.8x the speed.)

LLVM cannot keep such a block in registers from a Numba loop over arrays (it cannot prove
that the output does not alias the inputs), so the kernel is written in LLVM IR through
llvmlite (``_block_product``), as the atomic loads of kernels/cpu_crew.py are.

Measured against NumPy's matmul (OpenBLAS 0.3.31, Haswell kernels) on one thread of a 2.45
GHz AMD EPYC (Zen 3, AVX2), medians of 150 interleaved calls, GFLOPS:

    stack                      OpenBLAS   this
    64 x (42, 128) @ (128, 128)    46      55
    64 x (42, 256) @ (256, 256)    43      56
    64 x (42, 64) @ (64, 128)      53      68
    36 x (63, 32) @ (32, 32)       48      78

The reference twin is ``np.matmul`` of the unpacked weights (``unpanel``), which
tests/test_kernels.py pits it against.  Each value sums in K order, as a plain loop does;
BLAS sums in its own order, so the two agree to float32 rounding, not bit for bit.
"""
from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic


def _compiled_for() -> set[str]:
    """The CPU features Numba compiles for (numba/core/codegen.py, ``_get_host_cpu_features``):
    $NUMBA_CPU_FEATURES where set (as for a cache shared between machines; none with
    NUMBA_CPU_NAME=generic), else the host's."""
    if config.CPU_FEATURES is not None:
        return {flag[1:] for flag in config.CPU_FEATURES.split(",") if flag.startswith("+")}
    return {name for name, present in llvm.get_host_cpu_features().items() if present}


_FEATURES = _compiled_for()
# float32 values per vector register of the machine compiled for
VECTOR = 16 if "avx512f" in _FEATURES else 8
MR = 6                 # rows of the product one kernel call holds (tiles)
NR = 2 * VECTOR        # its columns (output channels): a panel's width
# fused multiply-add in hardware (x86's FMA3, every AArch64): without it LLVM would call a
# library function per value, and BLAS multiplies instead (``fits``)
HAS_FMA = bool(_FEATURES & {"fma", "avx512f", "neon"})


def panels(b: np.ndarray) -> np.ndarray:
    """Weights (P, K, N) as the kernel reads them, (P, N/NR, K, NR) float32: panel s of
    matrix p is b[p, :, s*NR:(s+1)*NR], C-contiguous.  N must be a multiple of NR."""
    p, k, n = b.shape
    if n % NR:
        raise ValueError(f"panels: N = {n} is not a multiple of the panel width {NR}")
    b4 = b.reshape(p, k, n // NR, NR)                                                # (P, K, N) -> (P, K, S, NR)
    return np.ascontiguousarray(b4.transpose(0, 2, 1, 3), dtype=np.float32)          # -> (P, S, K, NR)


def unpanel(bp: np.ndarray) -> np.ndarray:
    """The (P, K, N) weights of ``panels(b)``: b itself."""
    p, s, k, nr = bp.shape
    return np.ascontiguousarray(bp.transpose(0, 2, 1, 3)).reshape(p, k, s * nr)  # (P, K, S, NR) -> (P, K, N)


def fits(n: int) -> bool:
    """Whether products with N columns run faster here than by BLAS: N a multiple of the
    panel width, on a CPU with fused multiply-add."""
    return HAS_FMA and n % NR == 0


@intrinsic
def _block_product(typingctx, rows, a, a0, b, b0, c, c0, k):
    """c[c0 + r*ldc + j] = sum_q a[a0 + r*lda + q] * b[b0 + q*ldb + j] for r < rows, j < NR,
    q < k (in that order), lda, ldb and ldc being each array's row length (its next-to-last
    stride); a0, b0, c0 count float32 values from each array's first.  ``rows`` (1 to MR) must
    be a constant: the block's registers are laid out for it.

    The caller keeps every index inside its array: nothing is checked here.
    """
    if not isinstance(rows, types.IntegerLiteral):
        return None                                  # Numba asks again with the constant's value
    r_n = rows.literal_value
    if not 1 <= r_n <= MR:
        raise ValueError(f"_block_product: rows must be 1 to {MR}, got {r_n}")
    if not all(isinstance(t, types.Array) and t.dtype == types.float32 for t in (a, b, c)):
        raise TypeError(f"_block_product: a, b and c must be float32 arrays, got {a}, {b}, {c}")
    sig = types.void(rows, a, types.intp, b, types.intp, c, types.intp, types.intp)   # offsets cast to intp

    def codegen(context, builder, sig, args):
        _, a_arr, a0_, b_arr, b0_, c_arr, c0_, k_ = args
        arrays = [context.make_array(t)(context, builder, v)
                  for t, v in ((a, a_arr), (b, b_arr), (c, c_arr))]
        ap, bp, cp = (x.data for x in arrays)
        index = a0_.type                                 # intp

        def const(v):
            return ir.Constant(index, v)

        lda, ldb, ldc = (builder.sdiv(cgutils.unpack_tuple(builder, x.strides)[-2], const(4)) for x in arrays)
        vec = ir.VectorType(ir.FloatType(), VECTOR)
        i32 = ir.IntType(32)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                             f"llvm.fma.v{VECTOR}f32")
        undef = ir.Constant(vec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, VECTOR), [0] * VECTOR)
        halves = NR // VECTOR

        def vector_at(ptr, i):
            return builder.bitcast(builder.gep(ptr, [i]), vec.as_pointer())

        # the block: rows x halves vectors in stack slots, which LLVM promotes to registers
        zero = ir.Constant(vec, [0.0] * VECTOR)
        acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(halves)] for _ in range(r_n)]
        a_rows = [builder.add(a0_, builder.mul(const(r), lda)) for r in range(r_n)]
        with cgutils.for_range(builder, k_) as loop:
            q = loop.index
            b_row = builder.add(b0_, builder.mul(q, ldb))
            bv = [builder.load(vector_at(bp, builder.add(b_row, const(h * VECTOR))), align=4)
                  for h in range(halves)]
            for r in range(r_n):
                s = builder.load(builder.gep(ap, [builder.add(a_rows[r], q)]))
                av = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat)
                for h in range(halves):
                    builder.store(builder.call(fma, [av, bv[h], builder.load(acc[r][h])]), acc[r][h])
        for r in range(r_n):
            c_row = builder.add(c0_, builder.mul(const(r), ldc))
            for h in range(halves):
                builder.store(builder.load(acc[r][h]), vector_at(cp, builder.add(c_row, const(h * VECTOR))), align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True)
def _panel_matmul_kernel(a, bp, c):
    """c[p] = a[p] @ unpanel(bp)[p] for a (P, M, K), bp (P, N/NR, K, NR), c (P, M, N), every
    matrix of a and c C-contiguous (their first strides are free).  For each panel, MR rows of
    a at a time, the last M % MR rows by a kernel laid out for that many."""
    count, m, k = a.shape
    s_n = bp.shape[1]
    n = s_n * NR
    if bp.shape[3] != NR:         # panels packed for another width than this compiled code's
        raise ValueError("_panel_matmul_kernel: panels of another width than the kernel's")
    if a.strides[2] != 4 or a.strides[1] != 4 * k or c.strides[2] != 4 or c.strides[1] != 4 * n:
        raise ValueError("_panel_matmul_kernel: the matrices of a and c must be C-contiguous")
    sa, sc = a.strides[0] // 4, c.strides[0] // 4      # floats from one matrix to the next
    full = m - m % MR
    rest = m - full
    for p in range(count):
        for s in range(s_n):
            b0, j = (p * s_n + s) * k * NR, s * NR     # the panel's first value; its columns in c
            for i in range(0, full, MR):
                _block_product(MR, a, p * sa + i * k, bp, b0, c, p * sc + i * n + j, k)
            a_i, c_i = p * sa + full * k, p * sc + full * n + j
            if rest == 1:
                _block_product(1, a, a_i, bp, b0, c, c_i, k)
            elif rest == 2:
                _block_product(2, a, a_i, bp, b0, c, c_i, k)
            elif rest == 3:
                _block_product(3, a, a_i, bp, b0, c, c_i, k)
            elif rest == 4:
                _block_product(4, a, a_i, bp, b0, c, c_i, k)
            elif rest == 5:
                _block_product(5, a, a_i, bp, b0, c, c_i, k)


def _float32_rows(x: np.ndarray) -> bool:
    """A float32 stack (P, rows, cols) whose matrices are each C-contiguous and do not
    overlap (the stride from one matrix to the next is free beyond that)."""
    p, rows, cols = x.shape
    return (x.dtype == np.float32 and x.strides[2] == 4 and x.strides[1] == 4 * cols
            and x.strides[0] % 4 == 0 and (p == 1 or x.strides[0] >= 4 * rows * cols))


def panel_matmul(a: np.ndarray, bp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.matmul(a, unpanel(bp), out=out)``: a (P, M, K) and out (P, M, N) float32 stacks,
    bp = ``panels(b)`` (P, N/NR, K, NR).  Each matrix of ``out`` must be C-contiguous (as
    ``cpu_numba._matrices`` views are); an ``a`` that is not, or that shares memory with
    ``out``, is copied first.  Returns ``out``."""
    if a.ndim != 3 or bp.ndim != 4 or out.ndim != 3:
        raise ValueError(f"panel_matmul: expected a (P, M, K), panels (P, N/NR, K, NR) and out (P, M, N); "
                         f"got {a.ndim}, {bp.ndim} and {out.ndim} dimensions")
    p, m, k = a.shape
    s_n = bp.shape[1]
    if bp.shape != (p, s_n, k, NR) or out.shape != (p, m, s_n * NR):
        raise ValueError(f"panel_matmul: a {a.shape} needs panels ({p}, S, {k}, {NR}) and out ({p}, {m}, S*{NR}); "
                         f"got {bp.shape} and {out.shape}")
    if bp.dtype != np.float32 or not bp.flags.c_contiguous:
        raise ValueError(f"panel_matmul: panels must be C-contiguous float32 (cpu_gemm.panels); got {bp.dtype}")
    if out.size == 0:
        return out
    if not (out.flags.writeable and _float32_rows(out)):
        raise ValueError(f"panel_matmul: out must be writeable float32 with each matrix C-contiguous and apart; "
                         f"got {out.dtype}, strides {out.strides}")
    if not _float32_rows(a) or np.may_share_memory(a, out):
        a = np.array(a, dtype=np.float32, order="C")        # a C-contiguous copy
    _panel_matmul_kernel(a, bp, out)
    return out
