"""Network stage, GPU row of the backend table: CuPy arrays, the CUDA kernels of ``kernels/*.cu``
and cuBLAS GEMMs.

Each primitive has the signature and the semantics of its ``ops.py`` twin on ``cupy`` arrays.
The kernels are static ``.cu`` files, compiled by NVRTC through ``cupy.RawModule`` once per
device and file (cupyx ``_pba_2d.py`` + ``memoize(for_each_device=True)``); every kernel gives
one thread to an element of a plane and loops over planes (see each file's header).  GEMMs are
cuBLAS: ``cupy.matmul`` in float32, ``cublasGemmEx`` for the faster precisions:

=========  ======================================  =========================================
precision  GEMM                                    parity
=========  ======================================  =========================================
fp32       cupy.matmul (CUBLAS_COMPUTE_32F)        the reference's float32 results (default)
tf32       GemmEx, CUBLAS_COMPUTE_32F_FAST_TF32    inputs rounded to 10 mantissa bits
fp16       GemmEx, float16 inputs, float32 sums    inputs rounded to float16 (10 bits, range
                                                   6e-5..65504); im2col writes float16 directly
=========  ======================================  =========================================

Activations, bias, LeakyReLU, SE and skips stay float32 in every precision; only the GEMM
operands are rounded.  TF32 is asked for per GEMM through the compute type, not through CuPy's
``CUPY_TF32`` (read once per process, for every float32 matmul) or ``cublasSetMathMode`` (a
setting of the handle that all of CuPy shares and resets).  ``tools/speed_gpu.py --parity``
measures what that costs per model.

Importing this module needs only NumPy; ``require_device()`` raises ``BackendUnavailableError``
where CuPy, a CUDA device, NVRTC or cuBLAS is missing.  ``w2x/nn/backend.py`` builds the
"cupy" row of its table from the plain functions here.
"""
from __future__ import annotations

import functools

import numpy as np

from w2x.nn import kernel_files
from w2x.nn.errors import BackendUnavailableError
from w2x.nn.ops import out_size, transposed_out_size

try:
    import cupy
except ImportError:  # CPU-only install: the pure-Python helpers below still work
    cupy = None

BLOCK = 256               # threads per block of every kernel: 8 warps, a multiple of the 32-lane warp
MAX_GRID_X = 2**31 - 1    # CUDA limit on gridDim.x
MAX_GRID_Y = 65535        # CUDA limit on gridDim.y; the kernels loop over planes beyond it
INT32_MAX = 2**31 - 1     # the kernels index inside a plane with 32-bit ints

# kernel function -> its source file in kernels/ (one primitive per file; se.cu holds both SE halves)
KERNELS = {
    "w2x_im2col_f32": "im2col.cu",
    "w2x_im2col_f16": "im2col.cu",
    "w2x_col2im_f32": "col2im.cu",
    "w2x_bias_leaky_relu_f32": "bias_leaky_relu.cu",
    "w2x_channel_mean_f32": "se.cu",
    "w2x_se_scale_f32": "se.cu",
    "w2x_crop_add_f32": "crop_add.cu",
    "w2x_pad_replicate_f32": "pad_replicate.cu",
}


# --- launch geometry (pure Python) ----------------------------------------------------------
def launch_grid(per_plane: int, planes: int, block: int = BLOCK) -> tuple[int, int, int]:
    """Grid of the "one thread per element of a plane, loop over planes" kernels:
    ``(ceil(per_plane / block), min(planes, MAX_GRID_Y), 1)``; 0 blocks when there is no work.

    Raises
    ------
    ValueError
        a plane of more than 2**31 - 1 elements (the kernels index a plane with int32): the
        batch is too large, use fewer or smaller tiles.
    """
    if per_plane > INT32_MAX or planes > INT32_MAX:
        raise ValueError(f"{planes} planes of {per_plane} elements exceed the kernels' 32-bit "
                         f"indexing (at most {INT32_MAX} per plane); use fewer or smaller tiles")
    return (-(-per_plane // block), min(planes, MAX_GRID_Y), 1)


def reduce_grid(planes: int) -> tuple[int, int, int]:
    """Grid of ``w2x_channel_mean_f32``: one block per plane, looping beyond ``MAX_GRID_X``."""
    return (min(planes, MAX_GRID_X), 1, 1)


def free_device_bytes() -> int:
    """Device memory free for new arrays: ``cudaMemGetInfo`` plus what CuPy's pool holds unused."""
    if cupy is None:
        raise BackendUnavailableError("reading free device memory needs CuPy; pip install 'w2x[gpu]'")
    try:
        return cupy.cuda.runtime.memGetInfo()[0] + cupy.get_default_memory_pool().free_bytes()
    except cupy.cuda.runtime.CUDARuntimeError as e:
        raise BackendUnavailableError(f"no usable CUDA device to plan for ({e})") from None


# --- kernel loading ---------------------------------------------------------------------------
@functools.cache
def _module(filename: str, device_id: int):
    """The compiled module of one .cu file on one device (compiled by NVRTC on first use)."""
    return cupy.RawModule(code=kernel_files.source(filename))


@functools.cache
def _function(name: str, device_id: int):
    return _module(KERNELS[name], device_id).get_function(name)


def _launch(name: str, grid: tuple[int, int, int], args: tuple) -> None:
    """Launch kernel ``name`` on the current device and stream; ints go as int32, floats as
    float32 (the kernels' C types); nothing is launched for an empty grid."""
    if 0 in grid:
        return
    c_args = tuple(np.int32(a) if isinstance(a, (int, np.integer)) else
                   np.float32(a) if isinstance(a, (float, np.floating)) else a for a in args)
    _function(name, cupy.cuda.Device().id)(grid, (BLOCK, 1, 1), c_args)


# --- primitives (signatures of ops.py) --------------------------------------------------------
def _f32(x):
    return cupy.ascontiguousarray(x, dtype=cupy.float32)


def _inplace_f32(x, what: str):
    if x.dtype != cupy.float32 or not x.flags.c_contiguous:
        raise ValueError(f"{what} works in place on a C-contiguous float32 array, "
                         f"got {x.dtype} with strides {x.strides}")
    return x


def im2col(x, kh: int, kw: int, stride: int, out_dtype=np.float32):
    """GPU ``ops.im2col``: (C, N, H, W) -> (C*kh*kw, N*OH*OW); float16 cols when
    ``out_dtype`` is float16 (the fp16 GEMM's operand, written in one pass: ``im2col_f16``)."""
    x = _f32(x)
    c, n, h, w = x.shape
    oh, ow = out_size(h, kh, stride), out_size(w, kw, stride)
    cols = cupy.empty((c * kh * kw, n * oh * ow), dtype=out_dtype)   # (C*kh*kw, N*OH*OW)
    name = {np.float32: "w2x_im2col_f32", np.float16: "w2x_im2col_f16"}[cols.dtype.type]
    _launch(name, launch_grid(n * oh * ow, c * kh * kw), (x, cols, c, n, h, w, kh, kw, stride, oh, ow))
    return cols


def col2im(cols, shape: tuple[int, int, int, int], kh: int, kw: int, stride: int, pad: int):
    """GPU ``ops.col2im``: (OC*kh*kw, N*H*W) -> (OC, N, OH, OW), OH = (H-1)*stride - 2*pad + kh."""
    oc, n, h, w = shape
    cols = _f32(cols)
    if cols.shape != (oc * kh * kw, n * h * w):
        raise ValueError(f"col2im expected cols of shape {(oc * kh * kw, n * h * w)} for {shape}, "
                         f"k={kh}x{kw}, got {cols.shape}")
    oh, ow = transposed_out_size(h, kh, stride, pad), transposed_out_size(w, kw, stride, pad)
    y = cupy.empty((oc, n, oh, ow), dtype=cupy.float32)
    _launch("w2x_col2im_f32", launch_grid(oh * ow, oc * n),
            (cols, y, oc, n, h, w, kh, kw, stride, pad, oh, ow))
    return y


def bias_leaky_relu(y, bias, slope: float | None):
    """GPU ``ops.bias_leaky_relu``, in place: (OC, ...) += bias (OC,), then LeakyReLU(slope)."""
    _inplace_f32(y, "bias_leaky_relu")
    oc = y.shape[0]
    m = y.size // oc if oc else 0
    _launch("w2x_bias_leaky_relu_f32", launch_grid(m, oc),
            (y, _f32(bias), oc, m, 0.0 if slope is None else float(slope), int(slope is not None)))
    return y


def channel_mean(x):
    """GPU ``ops.channel_mean``: (C, N, H, W) -> (C, N), the mean of every plane."""
    x = _f32(x)
    c, n, h, w = x.shape
    z = cupy.empty((c, n), dtype=cupy.float32)
    if h * w:
        _launch("w2x_channel_mean_f32", reduce_grid(c * n), (x, z, c * n, h * w))
    return z


def se_scale(x, z):
    """GPU ``ops.se_scale``, in place: ``x[c, n] *= z[c, n]``; x (C, N, H, W), z (C, N)."""
    _inplace_f32(x, "se_scale")
    c, n, h, w = x.shape
    z = _f32(z)
    if z.shape != (c, n):
        raise ValueError(f"se_scale expected z of shape {(c, n)}, got {z.shape}")
    _launch("w2x_se_scale_f32", launch_grid(h * w, c * n), (x, z, c * n, h * w))
    return x


def crop_add(a, b, crop: int):
    """GPU ``ops.crop_add``: a (C, N, H, W) + b (C, N, H+2crop, W+2crop) cropped; a new array."""
    a, b = _f32(a), _f32(b)
    c, n, h, w = a.shape
    if b.shape != (c, n, h + 2 * crop, w + 2 * crop):
        raise ValueError(f"crop_add expected b of shape {(c, n, h + 2 * crop, w + 2 * crop)}, got {b.shape}")
    out = cupy.empty_like(a)
    _launch("w2x_crop_add_f32", launch_grid(h * w, c * n), (a, b, out, c * n, h, w, crop))
    return out


def pad_replicate(x, top: int, bottom: int, left: int, right: int):
    """GPU ``ops.pad_replicate``: edge-replicate padding of an image (C, H, W)."""
    x = _f32(x)
    c, h, w = x.shape
    oh, ow = h + top + bottom, w + left + right
    if min(top, bottom, left, right) < 0 or h * w == 0:
        raise ValueError(f"pad_replicate needs a non-empty image and paddings >= 0, "
                         f"got shape {x.shape} and {(top, bottom, left, right)}")
    y = cupy.empty((c, oh, ow), dtype=cupy.float32)
    _launch("w2x_pad_replicate_f32", launch_grid(oh * ow, c), (x, y, c, h, w, top, left, oh, ow))
    return y


# --- GEMM --------------------------------------------------------------------------------------
_ONE = np.ones((), np.float32)    # alpha and beta of the GEMM: host scalars (cuBLAS pointer mode host)
_ZERO = np.zeros((), np.float32)


def _gemm(a, b, in_dtype, compute_type: int):
    """C (M, N) float32 = A (M, K) @ B (K, N) through ``cublasGemmEx``, operands cast to
    ``in_dtype`` (float32 or float16), sums in float32 with cuBLAS ``compute_type``."""
    from cupy.cuda import cublas
    a = cupy.ascontiguousarray(a, dtype=in_dtype)
    b = cupy.ascontiguousarray(b, dtype=in_dtype)
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise ValueError(f"matmul shapes {a.shape} and {b.shape} do not chain")
    c = cupy.empty((m, n), dtype=cupy.float32)
    if 0 in (m, n, k):
        c.fill(0)
        return c
    rt = cupy.cuda.runtime
    ab_type = {np.float32: rt.CUDA_R_32F, np.float16: rt.CUDA_R_16F}[a.dtype.type]
    # cuBLAS is column-major: a C-contiguous (M, N) matrix is its (N, M) transpose, so
    # C^T (N, M) = B^T (N, K) @ A^T (K, M), all three as stored: ldb = N, lda = K, ldc = N.
    cublas.gemmEx(cupy.cuda.device.get_cublas_handle(), cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N,
                  n, m, k, _ONE.ctypes.data, b.data.ptr, ab_type, n, a.data.ptr, ab_type, k,
                  _ZERO.ctypes.data, c.data.ptr, rt.CUDA_R_32F, n,
                  compute_type, cublas.CUBLAS_GEMM_DEFAULT)
    return c


def _matmul_tf32(a, b):
    from cupy.cuda import cublas
    return _gemm(a, b, np.float32, cublas.CUBLAS_COMPUTE_32F_FAST_TF32)


def _matmul_fp16(a, b):
    from cupy.cuda import cublas
    return _gemm(a, b, np.float16, cublas.CUBLAS_COMPUTE_32F)


# --- the backend --------------------------------------------------------------------------------
def require_device() -> int:
    """Id of the current CUDA device, with cuBLAS and every kernel loaded on it."""
    if cupy is None:
        raise BackendUnavailableError("backend 'cupy' requested but CuPy is not installed; "
                                      "pip install 'w2x[gpu]' or use --backend numpy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise BackendUnavailableError("backend 'cupy' requested but no CUDA device is visible; "
                                          "use --backend numba or numpy")
        from cupy.cuda import cublas  # noqa: F401  (loads libcublas: ImportError where it is missing)
        device_id = cupy.cuda.Device().id
        for name in KERNELS:  # compile now, so a broken toolchain fails here and not mid-image
            _function(name, device_id)
    except (RuntimeError, OSError) as e:  # CUDARuntimeError (no driver/device), unloadable NVRTC
        raise BackendUnavailableError(f"backend 'cupy' requested but CUDA is not usable ({e}); "
                                      "check the driver, or use --backend numba or numpy") from None
    except ImportError as e:
        raise BackendUnavailableError(f"backend 'cupy' requested but a CUDA library is missing ({e}); "
                                      "install the CUDA toolkit libraries for your CuPy wheel") from None
    return device_id


im2col_f16 = functools.partial(im2col, out_dtype=np.float16)


def matmul(precision: str):
    """The GEMM of ``precision``: "fp32" (``cupy.matmul``, exact float32; it honours CuPy's
    own ``CUPY_TF32=1`` switch, so leave that unset for parity), "tf32" or "fp16" (see the
    module docstring for what each rounds)."""
    return {"fp32": cupy.matmul, "tf32": _matmul_tf32, "fp16": _matmul_fp16}[precision]
