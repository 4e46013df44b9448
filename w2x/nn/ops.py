"""Network stage: the reference primitives every backend provides, in plain NumPy.

Activations inside a network are laid out ``(C, N, H, W)`` ("channels, tiles,
rows, columns"), not PyTorch's ``(N, C, H, W)``.  With channels outermost, the
GEMM of every layer reads its right-hand side and writes its result with no
transpose at all: the im2col matrix of all N tiles is ``(C*kh*kw, N*OH*OW)``
and ``W2d @ cols`` is ``(OC, N*OH*OW)``, which *is* the next layer's
``(OC, N, OH, OW)`` activation.  This is torch7's SpatialConvolutionMM
(im2col + one GEMM per layer) batched over tiles.

The numba backend hands activations from layer to layer in channel-last memory order:
still arrays of shape ``(C, N, H, W)``, but views of C-contiguous ``(N, H, W, C)`` ones
(``to_channels_last``), so that its Winograd transforms and elementwise kernels run along
the channels of a pixel (``kernels/cpu_numba.py``; ``models.Model.on``).  Every function
here takes either order; the values are the same.

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


def is_channels_last(x) -> bool:
    """True where the (C, N, H, W) array x is the view of a C-contiguous (N, H, W, C) array
    (and not C-contiguous itself, as it also is where C == 1)."""
    return not x.flags.c_contiguous and x.transpose(1, 2, 3, 0).flags.c_contiguous


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """x (C, N, H, W) in channel-last memory order: the (C, N, H, W) view of a C-contiguous
    (N, H, W, C) copy."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)   # (N, H, W, C) -> (C, N, H, W)


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


def conv_transpose(x: np.ndarray, wt: np.ndarray, bias: np.ndarray, k: int, stride: int, pad: int,
                   slope: float | None) -> np.ndarray:
    """A whole transposed convolution (nn.SpatialFullConvolution) + bias + LeakyReLU(slope):
    one GEMM ``wt @ x``, ``col2im``, then ``bias_leaky_relu``.

    x : (C, N, H, W); wt : (OC*k*k, C) (see ``layers.ConvTranspose2d``); bias : (OC,).
    Returns (OC, N, (H-1)*stride - 2*pad + k, (W-1)*stride - 2*pad + k).  The reference of a
    backend's fused twin (the numba one gathers each output row from its phase's taps, the
    sub-pixel form, with no zero-filled image and no whole GEMM result in memory).
    """
    c, n, h, w = x.shape
    cols = wt @ x.reshape(c, n * h * w)                          # (OC*k*k, N*H*W)
    y = col2im(cols, (wt.shape[0] // (k * k), n, h, w), k, k, stride, pad)
    return bias_leaky_relu(y, bias, slope)


def _valid_range(n_in: int, n_out: int, stride: int, shift: int) -> tuple[int, int, int]:
    """Input indices [lo, hi) whose output ``idx*stride + shift`` lies in [0, n_out), and
    the first such output index."""
    lo = max(0, -(shift // stride))                  # ceil(-shift / stride)
    hi = min(n_in, (n_out - 1 - shift) // stride + 1)
    return lo, hi, lo * stride + shift


def space_to_depth(x: np.ndarray, k: int) -> np.ndarray:
    """The columns of a k x k stride-k convolution of x in channel-last order: its windows do
    not overlap, so this is x's pixels regrouped (a copy; no pixel repeated or, but the rows
    and columns past the last whole window, dropped).

    x : (C, N, H, W), either memory order.  Returns (N*OH*OW, k*k*C), OH = H // k, OW = W // k:
    ``cols[(n*OH + oy)*OW + ox, (i*k + j)*C + c] = x[c, n, oy*k + i, ox*k + j]``.
    """
    c, n, h, w = x.shape
    oh, ow = h // k, w // k
    xt = x.transpose(1, 2, 3, 0)[:, :oh * k, :ow * k]                          # (N, OH*k, OW*k, C) view
    cols = np.ascontiguousarray(xt.reshape(n, oh, k, ow, k, c).transpose(0, 1, 3, 2, 4, 5))  # (N, OH, OW, k, k, C)
    return cols.reshape(n * oh * ow, k * k * c)


def depth_to_space(p: np.ndarray, shape: tuple[int, int, int], k: int, bias: np.ndarray,
                   slope: float | None) -> np.ndarray:
    """The output of a k x k stride-k unpadded transposed convolution from its product with
    the input pixels: each input pixel alone reaches its output pixels, so this is p
    regrouped, + bias, LeakyReLU(slope) unless None.

    p : (N*H*W, k*k*OC), ``p[(n*H + y)*W + x, (i*k + j)*OC + o]`` what input pixel (y, x) gives
    output pixel (y*k + i, x*k + j); shape : (N, H, W).  Returns y (OC, N, H*k, W*k),
    channel-last (``to_channels_last``).
    """
    n, h, w = shape
    oc = p.shape[1] // (k * k)
    yt = np.ascontiguousarray(p.reshape(n, h, w, k, k, oc).transpose(0, 1, 3, 2, 4, 5))   # (N, H, k, W, k, OC)
    y = yt.reshape(n, h * k, w * k, oc).transpose(3, 0, 1, 2)                  # (OC, N, H*k, W*k) view
    return bias_leaky_relu(y, bias, slope)


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


# Winograd minimal filtering F(m x m, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
# Neural Networks", CVPR 2016, eq. 7-9): an m x m output tile from an (m+2) x (m+2) input tile d
# as ``A^T [(G g G^T) * (B^T d B)] A``, (m+2)^2 products instead of 9 m^2.  The matrices are
# Toom-Cook's for the points below (A^T = V_m^T, G = V_3, B^T = inv(V_{m+2})^T, V_k the k-column
# Vandermonde matrix of the points plus the point at infinity), each B^T row scaled to small
# integers and the G row divided by the same factor (their product is unchanged).
#   F(2x2): points 0, 1, -1, inf; 16 products per 4 outputs (2.25x fewer than direct).
#   F(4x4): points 0, 1, -1, 1/2, -2, inf; 36 products per 16 outputs (4x fewer).  Of the
#   point sets tried, this one (Barabasz et al., "Error analysis and improving the accuracy
#   of Winograd convolution", ACM TOMS 2020) had the smallest float32 error on 64- to
#   256-channel layers: 4-7e-6 max, 3-6e-7 RMS against float64, where Lavin's 0, +-1, +-2
#   and the symmetric 0, +-1, +-1/2 both had 0.9-2e-5 max, 5-9e-7 RMS (F(2x2): 0.8-1.8e-6;
#   im2col + GEMM 1-2e-6).  (Those on standard-normal layers; on the 128- and 256-channel layers of
#   vgg_7, upconv_7 and cunet fed random values in [0, 1], ``python tools/winograd_error.py``:
#   F(2x2) 1-3e-5 max, F(4x4) 2-5e-5.)
#   F(6x6): points 0, 1, -1, 1/2, -1/2, 2, -2, inf; 64 products per 36 outputs (5.06x fewer,
#   1.27x fewer than F(4x4)), at 3-5x F(4x4)'s float32 error (the tool above, channel-last as
#   the networks run it): on layers of 128 input channels up to 1.2e-4 max, 3.6-5.8e-6 RMS
#   (F(4x4) 2-3e-5, 1.3-2.4e-6), on cunet's 256->128 layer 2.0e-4 (F(4x4) 5.6e-5:
#   ``layers.winograd_tile`` keeps F(4x4) there); through the whole vgg_7 on lena 2.3e-6 max
#   (F(4x4) 0.8e-6, F(2x2) 0.7e-6).
WINOGRAD_BT = {
    2: np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
    4: np.array([[2, -3, -4, 3, 2, 0], [0, -2, 1, 5, 2, 0], [0, -2, 5, -1, -2, 0],
                 [0, 2, 1, -2, -1, 0], [0, 1, -2, -1, 2, 0], [0, 2, -3, -4, 3, 2]]),
    6: np.array([[4, 0, -21, 0, 21, 0, -4, 0], [0, -4, -4, 17, 17, -4, -4, 0],
                 [0, 4, -4, -17, 17, 4, -4, 0], [0, 4, 8, -5, -10, 1, 2, 0],
                 [0, -4, 8, 5, -10, -1, 2, 0], [0, 2, 1, -10, -5, 8, 4, 0],
                 [0, -2, 1, 10, -5, -8, 4, 0], [0, -4, 0, 21, 0, -21, 0, 4]]),
}  # input transform (m+2, m+2)
WINOGRAD_G = {
    2: np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
    4: np.array([[1 / 2, 0, 0], [1 / 6, 1 / 6, 1 / 6], [1 / 6, -1 / 6, 1 / 6],
                 [16 / 15, 8 / 15, 4 / 15], [1 / 30, -1 / 15, 2 / 15], [0, 0, 1 / 2]]),
    6: np.array([[1 / 4, 0, 0], [1 / 18, 1 / 18, 1 / 18], [1 / 18, -1 / 18, 1 / 18],
                 [16 / 45, 8 / 45, 4 / 45], [16 / 45, -8 / 45, 4 / 45],
                 [1 / 360, 1 / 180, 1 / 90], [1 / 360, -1 / 180, 1 / 90], [0, 0, 1 / 4]]),
}  # filter transform (m+2, 3), float64
WINOGRAD_AT = {
    2: np.array([[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, .5, -2, 0], [0, 1, 1, .25, 4, 0],
                 [0, 1, -1, .125, -8, 1]]),
    6: np.array([[1, 1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 1 / 2, -1 / 2, 2, -2, 0],
                 [0, 1, 1, 1 / 4, 1 / 4, 4, 4, 0], [0, 1, -1, 1 / 8, -1 / 8, 8, -8, 0],
                 [0, 1, 1, 1 / 16, 1 / 16, 16, 16, 0], [0, 1, -1, 1 / 32, -1 / 32, 32, -32, 1]]),
}  # output transform (m, m+2)
WINOGRAD_TILES = {(m + 2) ** 2: m for m in WINOGRAD_BT}  # len(U) -> output tile size m


def winograd_weight(w2d: np.ndarray, in_channels: int, m: int = 2,
                    channels_last: bool = False) -> np.ndarray:
    """A 3x3 conv weight (OC, C*3*3) as the (m+2)^2 Winograd matrices ``U = G g G^T`` of
    F(m x m, 3x3), m = 2, 4 or 6: ((m+2)^2, OC, C), or with ``channels_last`` their
    transposes ((m+2)^2, C, OC), the right-hand factors of the products (tiles, C) @ (C, OC)
    that write a channel-last output (``winograd_conv3x3``).

    Computed in float64 and rounded once, so U carries no more error than the weight itself:
    ``G g`` over all filters at once, then ``(G g) G^T`` (a one-pass einsum over both sums took
    2.5x as long: 24 ms for a 128->256 layer's 64 matrices, part of every run's start-up).
    """
    oc, g_t, t = w2d.shape[0], WINOGRAD_G[m], m + 2
    g = w2d.reshape(oc, in_channels, 3, 3).astype(np.float64)          # (OC, C, 3, 3)
    g = g.transpose(2, 3, 1, 0) if channels_last else g.transpose(2, 3, 0, 1)   # (3, 3, C, OC) or (3, 3, OC, C)
    gg = np.tensordot(g_t, g, axes=(1, 0))                             # G g: (m+2, 3, ...)
    u = np.moveaxis(np.tensordot(gg, g_t, axes=(1, 1)), -1, 1)         # (G g) G^T: (m+2, m+2, ...)
    return np.ascontiguousarray(u.reshape(t * t, *g.shape[2:]), dtype=np.float32)   # ((m+2)^2, ...)


def kn2row_weight(w2d: np.ndarray, in_channels: int, k: int) -> np.ndarray:
    """A conv weight (OC, C*k*k) in kn2row's form (OC*k*k, C): one GEMM with the input
    (C, N*H*W) then gives every shifted plane at once (``kn2row_conv``)."""
    oc = w2d.shape[0]
    # (OC, C*k*k) -> (OC, C, k, k) -> (OC, k, k, C) -> (OC*k*k, C)
    return np.ascontiguousarray(w2d.reshape(oc, in_channels, k, k).transpose(0, 2, 3, 1)
                                .reshape(oc * k * k, in_channels))


def winograd_conv3x3(x: np.ndarray, u: np.ndarray, bias: np.ndarray, slope: float | None,
                     pad: int = 0, channels_last: bool = False) -> np.ndarray:
    """3x3 stride-1 convolution of x zero-padded by ``pad`` + bias + LeakyReLU(slope) by
    Winograd F(m x m, 3x3): the same result as im2col + GEMM + ``bias_leaky_relu`` up to
    float32 rounding (pad 0: a valid convolution, as every layer runs; pad 2: the input
    gradient of one, ``grad.conv3x3_fast_backward``).

    Parameters
    ----------
    x : float32 (C, N, H, W)
    u : float32 ((m+2)^2, OC, C), ``winograd_weight(w2d, C, m)``: 16 matrices for F(2x2),
        36 for F(4x4), 64 for F(6x6); ((m+2)^2, C, OC) with ``channels_last``
    bias : float32 (OC,); slope : float or None (no activation); pad : zero rows and columns
        around x
    channels_last : y in channel-last memory order (``to_channels_last``)

    Returns
    -------
    y : float32 (OC, N, H + 2*pad - 2, W + 2*pad - 2)

    Notes
    -----
    Each m x m output tile comes from an (m+2) x (m+2) input tile d (stride m):
    ``V = B^T d B``, ``M = U * V`` summed over C ((m+2)^2 GEMMs (OC, C) @ (C, tiles)),
    ``y = A^T M A``, the transforms as dense float32 products with ``WINOGRAD_BT`` and
    ``WINOGRAD_AT``.  This is the reference of the numba twin; the NumPy backend keeps
    im2col + GEMM, which NumPy runs faster.
    """
    if channels_last:
        u = np.ascontiguousarray(u.transpose(0, 2, 1))                   # ((m+2)^2, OC, C)
        return to_channels_last(winograd_conv3x3(x, u, bias, slope, pad))
    m = WINOGRAD_TILES[u.shape[0]]
    t = m + 2
    bt, at = WINOGRAD_BT[m].astype(np.float32), WINOGRAD_AT[m].astype(np.float32)
    c, n, h, w = x.shape
    h, w = h + 2 * pad, w + 2 * pad                             # x padded by `pad` on every side
    oc, oh, ow = u.shape[1], h - 2, w - 2
    ty, tx = -(-oh // m), -(-ow // m)                           # m x m output tiles per column, row
    # `pad` zeros around x, and more below and right up to whole tiles (every input tile exists)
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad + m * ty + 2 - h), (pad, pad + m * tx + 2 - w)))
    d = np.lib.stride_tricks.sliding_window_view(x, (t, t), axis=(2, 3))[:, :, ::m, ::m]  # (C, N, TY, TX, t, t)
    v = np.einsum("ai,cnyxij->acnyxj", bt, d)                                  # B^T d: (t, C, N, TY, TX, t)
    v = np.einsum("acnyxj,bj->abcnyx", v, bt)                                  # B^T d B: (t, t, C, N, TY, TX)
    p = np.matmul(u, v.reshape(t * t, c, n * ty * tx))                         # (t*t, OC, P)
    p = p.reshape(t, t, oc, n, ty, tx)                                         # (t, t, OC, N, TY, TX)
    s = np.einsum("ia,abonyx->ibonyx", at, p)                                  # A^T M: (m, t, OC, N, TY, TX)
    y = np.einsum("ibonyx,jb->onyixj", s, at)                                  # (OC, N, TY, m, TX, m)
    y = np.ascontiguousarray(y.reshape(oc, n, m * ty, m * tx)[:, :, :oh, :ow])  # (OC, N, OH, OW)
    return bias_leaky_relu(y, bias, slope)


def pad_replicate(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Edge-replicate padding of an image (C, H, W) (``iproc.padding``: ``image.warp`` with
    "clamp", nagadomi/waifu2x lib/iproc.lua:82-98)."""
    return np.pad(x, ((0, 0), (top, bottom), (left, right)), mode="edge")
