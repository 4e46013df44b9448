"""Network stage: the one place a compute backend is chosen.

A backend is a short table of primitives (tinygrad's llops, Chainer's im2col
dispatcher).  Layers and architectures call ``be.im2col``, ``be.matmul`` ...
and never ask which device they run on.

======  ======================================  ================================
name    primitives from                         needs
======  ======================================  ================================
numpy   ``w2x/nn/ops.py`` (the reference)       numpy only
numba   ``kernels/cpu_numba.py``                ``pip install w2x[cpu]``
cupy    ``w2x/nn/cuda.py`` + ``kernels/*.cu``   ``pip install w2x[gpu]`` + CUDA
======  ======================================  ================================

This module alone builds the rows; the modules behind them export plain functions.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from w2x.nn import kernel_files, ops
from w2x.nn.errors import BackendUnavailableError

BACKENDS = ("numpy", "numba", "cupy")
PRECISIONS = ("fp32", "tf32", "fp16")   # GEMM operand precision; below fp32 only on the GPU


@dataclass(frozen=True)
class Backend:
    """The primitives a network needs, each with the signature of its ``ops.py`` twin."""
    name: str
    device: str                   # "cpu" (host arrays) or "cuda" (device arrays, streamed tiles)
    xp: Any                       # array module: numpy or cupy
    im2col: Callable
    col2im: Callable
    bias_leaky_relu: Callable
    channel_mean: Callable
    se_scale: Callable
    crop_add: Callable
    matmul: Callable              # (A, B) -> A @ B, float32
    to_device: Callable           # host ndarray -> backend array
    to_host: Callable             # backend array -> host ndarray
    # (x, u, bias, slope, pad=0, channels_last=False) -> y: a whole 3x3 stride-1 conv of x
    # zero-padded by pad, by Winograd F(2x2, 3x3), F(4x4, 3x3) or F(6x6, 3x3) (as u's length
    # says), twin of ops.winograd_conv3x3; None: such layers use im2col + matmul like every other conv
    winograd_conv3x3: Callable | None = None
    # True: convs with few outputs (128->3) run as kn2row (layers.Conv2d._kn2row), which the
    # CPU BLAS does faster; False keeps im2col + GEMM for every conv
    kn2row: bool = False
    # (x, wt, bias, k, stride, pad, slope) -> y: a whole transposed conv + bias + LeakyReLU,
    # twin of ops.conv_transpose; None: transposed convs run matmul, col2im, bias_leaky_relu
    conv_transpose: Callable | None = None
    # True: layers may write their outputs channel-last (ops.to_channels_last; models.Model.on
    # asks it of every layer whose output is not an image): winograd_conv3x3 takes
    # channels_last=True, and every primitive, the in-place ones included, works on such
    # arrays (layers.Conv2d._space_to_depth and ConvTranspose2d._depth_to_space need only that)
    channels_last: bool = False
    # (x, k) -> cols and (p, (N, H, W), k, bias, slope) -> y: the regroupings around the GEMM
    # of a channel-last k x k stride-k conv and transposed conv, twins of ops.space_to_depth
    # and ops.depth_to_space (layers.Conv2d._space_to_depth, ConvTranspose2d._depth_to_space);
    # set where channels_last is
    space_to_depth: Callable | None = None
    depth_to_space: Callable | None = None
    # u -> u': a channel-last Winograd weight ((m+2)^2, C, OC) in the form this backend's
    # winograd_conv3x3 multiplies fastest, which it takes as u (layers.Conv2d.on asks for it);
    # None: u as it is
    winograd_panels: Callable | None = None


def _identity(a):
    return a


_workspace = threading.local()   # per-thread im2col buffer of the numpy backend


def _im2col_reusing(x, kh: int, kw: int, stride: int):
    """``ops.im2col`` written into a per-thread buffer that the next call overwrites.

    A conv multiplies its columns at once, so one buffer serves every layer.  A fresh matrix
    per layer (up to 280 MB for a 256-px tile) would be page-faulted in each time, since
    glibc hands blocks over 32 MiB back to the OS on free: reuse made im2col ~1.8x faster.
    The buffer keeps the largest matrix seen for the life of the thread.
    """
    c, n, h, w = x.shape
    size = c * kh * kw * n * ops.out_size(h, kh, stride) * ops.out_size(w, kw, stride)
    buf = getattr(_workspace, "cols", None)
    if buf is None or buf.size < size:
        buf = _workspace.cols = np.empty(size, dtype=np.float32)
    return ops.im2col(x, kh, kw, stride, out=buf[:size])


def _numpy() -> Backend:
    """``w2x/nn/ops.py``: the reference, im2col + one BLAS GEMM per layer."""
    return Backend("numpy", "cpu", np, _im2col_reusing, ops.col2im, ops.bias_leaky_relu,
                   ops.channel_mean, ops.se_scale, ops.crop_add, np.matmul, _identity, _identity,
                   kn2row=True)


def _numba() -> Backend:
    """``kernels/cpu_numba.py``: Numba loops, Winograd 3x3 layers, GEMMs in column blocks,
    transposed convs as GEMM blocks gathered per output row with bias + LeakyReLU."""
    try:
        k = kernel_files.module("cpu_numba")
    except ImportError as e:  # numba missing or too old
        raise BackendUnavailableError(
            f"backend 'numba' requested but Numba is not usable ({e}); "
            "pip install 'w2x[cpu]' or use --backend numpy") from None
    return Backend("numba", "cpu", np, k.im2col, k.col2im, k.bias_leaky_relu, k.channel_mean,
                   k.se_scale, k.crop_add, k.matmul, _identity, _identity,
                   winograd_conv3x3=k.winograd_conv3x3, kn2row=True,
                   conv_transpose=k.conv_transpose, channels_last=True,
                   space_to_depth=k.space_to_depth, depth_to_space=k.depth_to_space,
                   winograd_panels=k.winograd_panels)


def _cupy(precision: str) -> Backend:
    """``w2x/nn/cuda.py`` + ``kernels/*.cu``: our CUDA kernels and cuBLAS GEMMs on the
    current device; named "cupy", or "cupy-tf32" / "cupy-fp16" for the rounded GEMMs."""
    from w2x.nn import cuda
    cuda.require_device()
    return Backend("cupy" if precision == "fp32" else f"cupy-{precision}", "cuda", cuda.cupy,
                   cuda.im2col_f16 if precision == "fp16" else cuda.im2col, cuda.col2im,
                   cuda.bias_leaky_relu, cuda.channel_mean, cuda.se_scale, cuda.crop_add,
                   cuda.matmul(precision), cuda.cupy.asarray, cuda.cupy.asnumpy)


def get_backend(name: str = "auto", precision: str = "fp32") -> Backend:
    """Return the backend called ``name``: "numpy", "numba", "cupy", or "auto" (the best that
    works here: cupy with a CUDA device, else numba, else numpy): one table per process for
    each (name, precision), however they are passed (a model keeps its weights in each
    backend's forms once per table: ``models.Model.on``).

    ``precision`` "tf32" or "fp16" rounds the GEMM operands on the GPU (see ``cuda.py``);
    the CPU backends compute in float32 only.

    Raises
    ------
    ValueError
        unknown name or precision, or a reduced precision on a CPU backend.
    BackendUnavailableError
        a named backend whose package or device is missing (the message says what to install).
    """
    return _get_backend(name, precision)


@functools.cache
def _get_backend(name: str, precision: str) -> Backend:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if precision != "fp32":
            return _get_backend("cupy", precision)
        for candidate in ("cupy", "numba"):
            try:
                return _get_backend(candidate, precision)
            except BackendUnavailableError:
                continue
        return _get_backend("numpy", precision)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of auto, {', '.join(BACKENDS)}")
    if name == "cupy":
        return _cupy(precision)
    if precision != "fp32":
        raise ValueError(f"precision {precision} needs the cupy backend; backend {name!r} computes in fp32")
    return _numba() if name == "numba" else _numpy()


get_backend.cache_clear = _get_backend.cache_clear   # forget the tables (tests that fake a missing package)
