"""Network stage: the reference primitives every backend provides, in plain NumPy.

Activations inside a network are laid out ``(C, N, H, W)`` ("channels, tiles,
rows, columns"), not PyTorch's ``(N, C, H, W)``.  With channels outermost, the
GEMM of every layer reads its right-hand side and writes its result with no
transpose at all: the im2col matrix of all N tiles is ``(C*kh*kw, N*OH*OW)``
and ``W2d @ cols`` is ``(OC, N*OH*OW)``, which *is* the next layer's
``(OC, N, OH, OW)`` activation.  This is torch7's SpatialConvolutionMM
(im2col + one GEMM per layer) batched over tiles.

The functions here are the "numpy" row of the backend table (``backend.py``);
``kernels/cpu_numba.py`` and ``kernels/*.cu`` are twins with the same
signatures, and the tests pit each twin against these.
"""
from __future__ import annotations

import numpy as np

LEAKY_SLOPE = 0.1  # nn.LeakyReLU(0.1, true) in every released arch (lib/srcnn.lua)


def out_size(size: int, k: int, stride: int) -> int:
    """Output length of a valid (unpadded) convolution: ``(size - k) // stride + 1``."""
    return (size - k) // stride + 1


def im2col(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """Unfold every ``kh x kw`` window of an unpadded convolution into a column.

    Parameters
    ----------
    x : float32 array (C, N, H, W)
    kh, kw, stride : kernel size and stride (waifu2x convolutions have no padding)

    Returns
    -------
    cols : float32 array (C*kh*kw, N*OH*OW), C-contiguous, with
        ``cols[(c*kh + i)*kw + j, (n*OH + oy)*OW + ox] = x[c, n, oy*stride + i, ox*stride + j]``,
        the row order of a torch weight ``(OC, C, kh, kw)`` reshaped to ``(OC, C*kh*kw)``.
    """
    C, N, H, W = x.shape
    oh, ow = out_size(H, kh, stride), out_size(W, kw, stride)
    cols = np.empty((C, kh, kw, N, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # (C, N, OH, OW) strided view of the window offset (i, j)
            cols[:, i, j] = x[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
    return cols.reshape(C * kh * kw, N * oh * ow)  # (C*kh*kw, N*OH*OW)


def col2im(cols: np.ndarray, shape: tuple[int, int, int, int], kh: int, kw: int,
           stride: int, pad: int) -> np.ndarray:
    """Scatter-add columns back into an image: the adjoint of im2col, used by
    transposed convolution.

    Parameters
    ----------
    cols : float32 array (OC*kh*kw, N*H*W), ``cols[(o*kh + i)*kw + j, (n*H + y)*W + x]`` is the
        contribution of input pixel (y, x) to output pixel ``(y*stride + i - pad, x*stride + j - pad)``
    shape : (OC, N, H, W), with H, W the *input* size of the transposed convolution
    kh, kw, stride, pad : as torch's SpatialFullConvolution(kW, kH, dW, dH, padW, padH)

    Returns
    -------
    y : float32 array (OC, N, OH, OW) with ``OH = (H - 1)*stride - 2*pad + kh``
    """
    oc, n, h, w = shape
    oh, ow = (h - 1) * stride - 2 * pad + kh, (w - 1) * stride - 2 * pad + kw
    y = np.zeros((oc, n, oh, ow), dtype=cols.dtype)
    cols6 = cols.reshape(oc, kh, kw, n, h, w)  # (OC, kh, kw, N, H, W)
    for i in range(kh):
        y0, y1, oy0 = _valid_range(h, oh, stride, i - pad)
        for j in range(kw):
            x0, x1, ox0 = _valid_range(w, ow, stride, j - pad)
            if y1 > y0 and x1 > x0:
                y[:, :, oy0:oy0 + stride * (y1 - y0):stride, ox0:ox0 + stride * (x1 - x0):stride] \
                    += cols6[:, i, j, :, y0:y1, x0:x1]
    return y


def _valid_range(n_in: int, n_out: int, stride: int, shift: int) -> tuple[int, int, int]:
    """Input indices [lo, hi) whose output ``idx*stride + shift`` lies in [0, n_out), and
    the first such output index."""
    lo = max(0, -(shift // stride))                  # ceil(-shift / stride)
    hi = min(n_in, (n_out - 1 - shift) // stride + 1)
    return lo, hi, lo * stride + shift


def bias_leaky_relu(y: np.ndarray, bias: np.ndarray, slope: float | None) -> np.ndarray:
    """In place: ``y += bias`` per channel, then LeakyReLU(slope) unless slope is None.

    y : float32 array (OC, M) (any trailing shape flattened to M); bias : (OC,)
    """
    y2 = y.reshape(y.shape[0], -1)  # (OC, M) view
    y2 += bias[:, None]
    if slope is not None:
        # max(v, slope*v) == LeakyReLU for 0 < slope < 1
        np.maximum(y2, y2 * np.float32(slope), out=y2)
    return y


def channel_mean(x: np.ndarray) -> np.ndarray:
    """SE squeeze, ``nn.Mean(-1,-1)`` twice (lib/srcnn.lua:232-244): (C, N, H, W) -> (C, N)."""
    return x.mean(axis=(2, 3), dtype=np.float32)


def se_scale(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """SE excite, in place: ``x[c, n] *= z[c, n]``.  x (C, N, H, W), z (C, N)."""
    x *= z[:, :, None, None]
    return x


def crop_add(a: np.ndarray, b: np.ndarray, crop: int) -> np.ndarray:
    """``a + b`` cropped by ``crop`` on every side (nn.SpatialZeroPadding(-crop) + CAddTable).

    a : (C, N, H, W); b : (C, N, H + 2*crop, W + 2*crop).  Returns a new array.
    """
    h, w = a.shape[2], a.shape[3]
    return a + b[:, :, crop:crop + h, crop:crop + w]


def pad_replicate(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Edge-replicate padding of an image (C, H, W) (``iproc.padding``: ``image.warp`` with
    "clamp", nagadomi/waifu2x lib/iproc.lua:82-98)."""
    return np.pad(x, ((0, 0), (top, bottom), (left, right)), mode="edge")
