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


def transposed_out_size(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a transposed convolution (col2im): ``(size - 1)*stride - 2*pad + k``
    (nn.SpatialFullConvolution with no adjW)."""
    return (size - 1) * stride - 2 * pad + k


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, out: np.ndarray | None = None) -> np.ndarray:
    """Unfold every ``kh x kw`` window of an unpadded convolution into a column.

    Parameters
    ----------
    x : float32 array (C, N, H, W)
    kh, kw, stride : kernel size and stride (waifu2x convolutions have no padding)
    out : optional flat float32 array of C*kh*kw*N*OH*OW elements to write the columns into

    Returns
    -------
    cols : float32 array (C*kh*kw, N*OH*OW), C-contiguous, with
        ``cols[(c*kh + i)*kw + j, (n*OH + oy)*OW + ox] = x[c, n, oy*stride + i, ox*stride + j]``,
        the row order of a torch weight ``(OC, C, kh, kw)`` reshaped to ``(OC, C*kh*kw)``.
    """
    C, N, H, W = x.shape
    oh, ow = out_size(H, kh, stride), out_size(W, kw, stride)
    shape6 = (C, kh, kw, N, oh, ow)
    cols = np.empty(shape6, dtype=x.dtype) if out is None else out.reshape(shape6)
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
    oh, ow = transposed_out_size(h, kh, stride, pad), transposed_out_size(w, kw, stride, pad)
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


# Winograd F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
# CVPR 2016, eq. 7-9 with m = 2, r = 3): 16 products per 2x2 output tile instead of 36.
WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])  # filter transform (4, 3)


def winograd_weight(w2d: np.ndarray, in_channels: int) -> np.ndarray:
    """A 3x3 conv weight (OC, C*3*3) as the 16 Winograd matrices ``U = G g G^T``: (16, OC, C).

    Computed in float64 and rounded once, so U carries no more error than the weight itself.
    """
    oc = w2d.shape[0]
    g = w2d.reshape(oc, in_channels, 3, 3).astype(np.float64)          # (OC, C, 3, 3)
    u = np.einsum("ai,ocij,bj->aboc", WINOGRAD_G, g, WINOGRAD_G)       # (4, 4, OC, C)
    return np.ascontiguousarray(u.reshape(16, oc, in_channels), dtype=np.float32)


def kn2row_weight(w2d: np.ndarray, in_channels: int, k: int) -> np.ndarray:
    """A conv weight (OC, C*k*k) in kn2row's form (OC*k*k, C): one GEMM with the input
    (C, N*H*W) then gives every shifted plane at once (``kn2row_conv``)."""
    oc = w2d.shape[0]
    # (OC, C*k*k) -> (OC, C, k, k) -> (OC, k, k, C) -> (OC*k*k, C)
    return np.ascontiguousarray(w2d.reshape(oc, in_channels, k, k).transpose(0, 2, 3, 1)
                                .reshape(oc * k * k, in_channels))


def _winograd_bt(d: list) -> list:
    """``B^T d`` over a list of 4 arrays, B^T = [[1,0,-1,0], [0,1,1,0], [0,-1,1,0], [0,1,0,-1]]."""
    return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def winograd_conv3x3(x: np.ndarray, u: np.ndarray, bias: np.ndarray, slope: float | None) -> np.ndarray:
    """3x3 stride-1 valid convolution + bias + LeakyReLU(slope) by Winograd F(2x2, 3x3): the
    same result as im2col + GEMM + ``bias_leaky_relu`` up to float32 rounding (~1e-6).

    Parameters
    ----------
    x : float32 (C, N, H, W)
    u : float32 (16, OC, C), ``winograd_weight`` of the layer's weight
    bias : float32 (OC,); slope : float or None (no activation)

    Returns
    -------
    y : float32 (OC, N, H - 2, W - 2)

    Notes
    -----
    Each 2x2 output tile comes from a 4x4 input tile d (stride 2): ``V = B^T d B``,
    ``M = U * V`` summed over C (16 GEMMs (OC, C) @ (C, tiles)), ``y = A^T M A`` with
    ``A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]``.  This is the reference of the numba twin; the
    NumPy backend keeps im2col + GEMM, which NumPy runs faster than these strided copies.
    """
    c, n, h, w = x.shape
    oh, ow = h - 2, w - 2
    ty, tx = (oh + 1) // 2, (ow + 1) // 2                      # 2x2 output tiles per column, row
    # zero row/column when OH or OW is odd, so every 4x4 input tile exists
    x = np.pad(x, ((0, 0), (0, 0), (0, 2 * ty + 2 - h), (0, 2 * tx + 2 - w)))
    rows = _winograd_bt([x[:, :, i:i + 2 * ty:2] for i in range(4)])            # 4 x (C, N, TY, W')
    v = np.stack([e for r in rows for e in _winograd_bt([r[..., j:j + 2 * tx:2] for j in range(4)])])
    m = np.matmul(u, v.reshape(16, c, n * ty * tx))                              # (16, OC, P)
    m = m.reshape(4, 4, -1, n, ty, tx)                                           # (4, 4, OC, N, TY, TX)
    s = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]                                 # A^T M: 2 x (4, OC, ...)
    y = np.stack([np.stack([a[0] + a[1] + a[2], a[1] - a[2] - a[3]], axis=-1) for a in s],
                 axis=3)                                                         # (OC, N, TY, 2, TX, 2)
    y = np.ascontiguousarray(y.reshape(-1, n, 2 * ty, 2 * tx)[:, :, :oh, :ow])  # (OC, N, OH, OW)
    return bias_leaky_relu(y, bias, slope)


def pad_replicate(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Edge-replicate padding of an image (C, H, W) (``iproc.padding``: ``image.warp`` with
    "clamp", nagadomi/waifu2x lib/iproc.lua:82-98)."""
    return np.pad(x, ((0, 0), (top, bottom), (left, right)), mode="edge")
