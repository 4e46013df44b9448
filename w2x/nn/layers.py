"""Network stage: the two parameterised layers of every waifu2x net, as im2col + GEMM.

Each layer holds its weight already reshaped for the GEMM (once, at load) and calls
backend primitives only.  Activations are (C, N, H, W), in either memory order (a layer
with ``channels_last`` writes its output channel-last); see ``ops.py``.  ``on(be)`` gives
the layer as backend ``be`` runs it: weights on its device, plus the other forms of the
same weight that only some backends use (Winograd's, kn2row's), made there and only there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from w2x.nn.backend import Backend
from w2x.nn.ops import kn2row_weight, out_size, winograd_weight

# A stride-1 conv with at least this many times more input than output channels (the last
# layer of vgg_7 and cunet: 128->3, 64->3) is cheaper as kn2row (Vasudevan, Anderson & Gregg,
# "Parallel Multi Channel Convolution using General Matrix Multiplication", ASAP 2017): its
# im2col matrix has C*k*k rows for only OC outputs, while kn2row's GEMM has OC*k*k.
KN2ROW_MIN_RATIO = 4
# Output tile of the Winograd form, F(m x m, 3x3): 4 needs 36 products per 16 outputs (4x
# fewer than im2col + GEMM, 1.8x fewer than F(2x2)'s 16 per 4) at a float32 error against
# float64 of up to 2-5e-5 on 128- and 256-channel layers fed random values in [0, 1] (F(2x2):
# 1-3e-5; ``python tools/winograd_error.py``), a few 1e-6 through a whole network.
WINOGRAD_TILE = 4
# Layers with at least this many channel pairs (C * OC) take F(6x6, 3x3) instead: 64
# products per 36 outputs, 1.27x fewer than F(4x4), and 1.27x fewer transformed values, at
# 3-5x its float32 error (``tools/winograd_error.py``).  With channel-last activations and
# the products by kernels/cpu_gemm.py, one layer on a 256-px (120-px) channel-last input, 2
# threads, medians of 24: F(6x6) took 0.94x (0.95x) the time of F(4x4) at 32->32, 0.89x
# (0.90x) at 64->64, 0.92x (0.91x) at 128->128, 1.04x (0.99x) at 16->32; lena.png's cunet
# forward 0.89-0.91x the time of the earlier 64 * 128 (vgg_7 0.93-1.02x, upconv_7 1.00x).
# (Measured where the products run by that kernel; elsewhere, by BLAS, the balance may differ.)
WINOGRAD_BIG_TILE_MIN_PAIRS = 32 * 32
# ... and at most this many input channels: the error grows with the sum over C, and
# cunet's 256->128 layer reached 2.0-2.3e-4 under F(6x6) (4.9-5.6e-5 under F(4x4)) on those inputs.
WINOGRAD_BIG_TILE_MAX_IN_CHANNELS = 128


def winograd_tile(in_channels: int, out_channels: int) -> int:
    """The output tile m of the F(m x m, 3x3) a 3x3 stride-1 layer runs by."""
    big = (in_channels * out_channels >= WINOGRAD_BIG_TILE_MIN_PAIRS
           and in_channels <= WINOGRAD_BIG_TILE_MAX_IN_CHANNELS)
    return 6 if big else WINOGRAD_TILE


@dataclass(frozen=True)
class Conv2d:
    """nn.SpatialConvolutionMM(in, out, k, k, stride, stride, 0, 0): torch7's im2col + GEMM.

    ``w2d`` is the torch weight (OC, C, kh, kw) reshaped to (OC, C*kh*kw); the im2col row
    order (c, i, j) matches it, so the product needs no transpose (cross-correlation, no flip).
    """
    w2d: np.ndarray       # (OC, C*kh*kw) float32
    bias: np.ndarray      # (OC,) float32
    k: int
    stride: int = 1
    # the same weight for Winograd F(m x m, 3x3), ((m+2)^2, OC, C), m = ``winograd_tile``
    # (with ``channels_last``, ((m+2)^2, C, OC) or the backend's packed form of that): set
    # by ``on`` for a backend with ``winograd_conv3x3``, on 3x3 stride-1 layers (4-5x fewer
    # flops than im2col + GEMM)
    winograd_u: np.ndarray | None = None
    # the same weight for kn2row, (OC*k*k, C): set by ``on`` for a backend with ``kn2row``,
    # on narrow stride-1 layers (C >= KN2ROW_MIN_RATIO * OC, e.g. 128->3)
    kn2row_w: np.ndarray | None = None
    # the same weight for a k x k stride-k conv written channel-last, (k*k*C, OC), rows in
    # (i, j, c) order (``_space_to_depth``): set by ``on`` where asked for and the backend can
    w_last: np.ndarray | None = None
    # True: the output is written channel-last (``ops.to_channels_last``): by the Winograd
    # form, with ``winograd_u`` as ((m+2)^2, C, OC) or the backend's packed form of that
    # (``Backend.winograd_panels``), or by ``_space_to_depth``
    channels_last: bool = False

    @property
    def in_channels(self) -> int:
        return self.w2d.shape[1] // (self.k * self.k)

    @property
    def out_channels(self) -> int:
        return self.w2d.shape[0]

    def on(self, be: Backend, channels_last: bool = False) -> Conv2d:
        """This layer as ``be`` runs it: arrays on its device, and its weight forms;
        ``channels_last``: write the output channel-last where ``be`` can (on a backend with
        ``channels_last``: a Winograd layer, or a k x k stride-k one by ``_space_to_depth``)."""
        c, k = self.in_channels, self.k
        winograd = be.winograd_conv3x3 is not None and k == 3 and self.stride == 1
        kn2row = be.kn2row and k > 1 and self.stride == 1 and c >= KN2ROW_MIN_RATIO * self.out_channels
        winograd = winograd and not kn2row
        strided = k > 1 and k == self.stride                     # windows that do not overlap
        last = channels_last and be.channels_last and (winograd or strided)
        u = winograd_weight(self.w2d, c, winograd_tile(c, self.out_channels), channels_last=last) if winograd else None
        if u is not None and last and be.winograd_panels is not None:
            u = be.winograd_panels(u)                            # the backend's packed form of it
        w_last = None
        if last and strided:    # (OC, C*k*k) -> (OC, C, k, k) -> (k, k, C, OC) -> (k*k*C, OC)
            w_last = np.ascontiguousarray(self.w2d.reshape(self.out_channels, c, k, k).transpose(2, 3, 1, 0)
                                          .reshape(k * k * c, self.out_channels))
        return Conv2d(be.to_device(self.w2d), be.to_device(self.bias), k, self.stride, winograd_u=u,
                      kn2row_w=kn2row_weight(self.w2d, c, k) if kn2row else None,
                      w_last=None if w_last is None else be.to_device(w_last), channels_last=last)

    def __call__(self, x, be: Backend, slope: float | None):
        """x (C, N, H, W) -> (OC, N, OH, OW), bias added, LeakyReLU(slope) unless None."""
        if self.kn2row_w is not None:
            return self._kn2row(x, be, slope)
        if self.winograd_u is not None:
            return be.winograd_conv3x3(x, self.winograd_u, self.bias, slope,   # (OC, N, OH, OW)
                                       channels_last=self.channels_last)
        if self.w_last is not None:
            return self._space_to_depth(x, be, slope)
        c, n, h, w = x.shape
        oh, ow = out_size(h, self.k, self.stride), out_size(w, self.k, self.stride)
        if self.k == 1:
            cols = x.reshape(c, n * h * w)                        # (C, N*H*W): 1x1 needs no im2col
        else:
            cols = be.im2col(x, self.k, self.k, self.stride)      # (C*k*k, N*OH*OW)
        y = be.matmul(self.w2d, cols)                             # (OC, N*OH*OW)
        be.bias_leaky_relu(y, self.bias, slope)
        return y.reshape(self.out_channels, n, oh, ow)            # (OC, N, OH, OW)

    def _space_to_depth(self, x, be: Backend, slope: float | None):
        """A k x k stride-k conv (cunet's 2x2 down-convs) written channel-last.  Its windows do
        not overlap, so its columns are x's pixels regrouped, with no pixel repeated
        (``be.space_to_depth``: (N*OH*OW, k*k*C), column (i*k + j)*C + c); one GEMM with
        ``w_last`` then gives y's pixels with their channels last, (N*OH*OW, OC)."""
        c, n, h, w = x.shape
        k, oc = self.k, self.out_channels
        y = be.matmul(be.space_to_depth(x, k), self.w_last)                     # (N*OH*OW, OC)
        y = y.reshape(n, h // k, w // k, oc).transpose(3, 0, 1, 2)              # (OC, N, OH, OW) view
        be.bias_leaky_relu(y, self.bias, slope)
        return y

    def _kn2row(self, x, be: Backend, slope: float | None):
        """One GEMM on the input, (OC*k*k, C) @ (C, N*H*W), then the k*k shifted planes added:
        ``y[o, n, oy, ox] = sum_ij P[o, i, j, n, oy + i, ox + j]``."""
        c, n, h, w = x.shape
        k, oc = self.k, self.out_channels
        oh, ow = h - k + 1, w - k + 1
        p = be.matmul(self.kn2row_w, x.reshape(c, n * h * w)).reshape(oc, k, k, n, h, w)  # (OC, k, k, N, H, W)
        y = p[:, 0, 0, :, :oh, :ow].copy()                                                # (OC, N, OH, OW)
        for i in range(k):
            for j in range(k):
                if i or j:
                    y += p[:, i, j, :, i:i + oh, j:j + ow]
        be.bias_leaky_relu(y, self.bias, slope)
        return y


@dataclass(frozen=True)
class ConvTranspose2d:
    """nn.SpatialFullConvolution(in, out, k, k, stride, stride, pad, pad): GEMM + col2im.

    ``wt`` is the torch weight (C, OC, kh, kw) reshaped to (C, OC*kh*kw) and transposed to
    (OC*kh*kw, C): column (n, y, x) of ``wt @ x`` holds everything input pixel (y, x) adds to
    the output, which col2im scatters to ``(y*stride + i - pad, x*stride + j - pad)``.  A
    backend with ``conv_transpose`` runs GEMM, gather, bias and LeakyReLU as one primitive.
    """
    wt: np.ndarray        # (OC*kh*kw, C) float32
    bias: np.ndarray      # (OC,) float32 (zeros for upconv_7's noBias layer)
    k: int
    stride: int
    pad: int
    # the same weight for a k x k stride-k unpadded transposed conv written channel-last,
    # (C, k*k*OC), columns in (i, j, o) order (``_depth_to_space``): set by ``on`` where
    # asked for and the backend can
    wt_last: np.ndarray | None = None

    @property
    def out_channels(self) -> int:
        return self.wt.shape[0] // (self.k * self.k)

    @property
    def channels_last(self) -> bool:
        """True: the output is written channel-last (``ops.to_channels_last``)."""
        return self.wt_last is not None

    def on(self, be: Backend, channels_last: bool = False) -> ConvTranspose2d:
        """This layer with its arrays on ``be``'s device; ``channels_last``: write the output
        channel-last where ``be`` can and no two input pixels reach the same output pixel
        (k == stride, no padding: cunet's 2x2 up-convs)."""
        k, oc = self.k, self.out_channels
        wt_last = None
        if channels_last and be.channels_last and k == self.stride and self.pad == 0:
            # (OC*k*k, C) -> (OC, k, k, C) -> (C, k, k, OC) -> (C, k*k*OC)
            wt_last = be.to_device(np.ascontiguousarray(self.wt.reshape(oc, k, k, -1).transpose(3, 1, 2, 0)
                                                        .reshape(-1, k * k * oc)))
        return ConvTranspose2d(be.to_device(self.wt), be.to_device(self.bias), k, self.stride, self.pad,
                               wt_last=wt_last)

    def __call__(self, x, be: Backend, slope: float | None):
        """x (C, N, H, W) -> (OC, N, (H-1)*stride - 2*pad + k, ...)."""
        if self.wt_last is not None:
            return self._depth_to_space(x, be, slope)
        if be.conv_transpose is not None:                         # GEMM and col2im fused
            return be.conv_transpose(x, self.wt, self.bias, self.k, self.stride, self.pad, slope)
        c, n, h, w = x.shape
        cols = be.matmul(self.wt, x.reshape(c, n * h * w))       # (OC*k*k, N*H*W)
        y = be.col2im(cols, (self.out_channels, n, h, w), self.k, self.k, self.stride, self.pad)
        be.bias_leaky_relu(y, self.bias, slope)
        return y                                                  # (OC, N, OH, OW)

    def _depth_to_space(self, x, be: Backend, slope: float | None):
        """A k x k stride-k unpadded transposed conv written channel-last.  Input pixel (y, x)
        alone reaches output pixels (y*k + i, x*k + j), so one GEMM (N*H*W, C) @ (C, k*k*OC)
        gives each input pixel's k x k output pixels, which ``be.depth_to_space`` regroups
        into y's rows with bias + LeakyReLU."""
        c, n, h, w = x.shape
        xt = be.xp.ascontiguousarray(x.transpose(1, 2, 3, 0))                 # (N, H, W, C): a view if channel-last
        p = be.matmul(xt.reshape(n * h * w, c), self.wt_last)                  # (N*H*W, k*k*OC)
        return be.depth_to_space(p, (n, h, w), self.k, self.bias, slope)       # (OC, N, OH, OW), channel-last
