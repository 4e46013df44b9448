"""Network stage: the two parameterised layers of every waifu2x net, as im2col + GEMM.

Each layer holds its weight already reshaped for the GEMM (once, at load) and
calls backend primitives only.  Activations are (C, N, H, W); see ``ops.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import Backend
from .ops import out_size


@dataclass
class Conv2d:
    """nn.SpatialConvolutionMM(in, out, k, k, stride, stride, 0, 0): torch7's im2col + GEMM.

    ``w2d`` is the torch weight (OC, C, kh, kw) reshaped to (OC, C*kh*kw); the im2col row
    order (c, i, j) matches it, so the product needs no transpose (cross-correlation, no flip).
    """
    w2d: np.ndarray       # (OC, C*kh*kw) float32
    bias: np.ndarray      # (OC,) float32
    k: int
    stride: int = 1

    @property
    def in_channels(self) -> int:
        return self.w2d.shape[1] // (self.k * self.k)

    def __call__(self, x, be: Backend, slope: float | None):
        """x (C, N, H, W) -> (OC, N, OH, OW), bias added, LeakyReLU(slope) unless None."""
        c, n, h, w = x.shape
        oh, ow = out_size(h, self.k, self.stride), out_size(w, self.k, self.stride)
        if self.k == 1:
            cols = x.reshape(c, n * h * w)                        # (C, N*H*W): 1x1 needs no im2col
        else:
            cols = be.im2col(x, self.k, self.k, self.stride)      # (C*k*k, N*OH*OW)
        y = be.matmul(self.w2d, cols)                             # (OC, N*OH*OW)
        be.bias_leaky_relu(y, self.bias, slope)
        return y.reshape(self.w2d.shape[0], n, oh, ow)            # (OC, N, OH, OW)


@dataclass
class ConvTranspose2d:
    """nn.SpatialFullConvolution(in, out, k, k, stride, stride, pad, pad): GEMM + col2im.

    ``wt`` is the torch weight (C, OC, kh, kw) reshaped to (C, OC*kh*kw) and transposed to
    (OC*kh*kw, C): column (n, y, x) of ``wt @ x`` holds everything input pixel (y, x) adds to
    the output, which col2im scatters to ``(y*stride + i - pad, x*stride + j - pad)``.
    """
    wt: np.ndarray        # (OC*kh*kw, C) float32
    bias: np.ndarray      # (OC,) float32 (zeros for upconv_7's noBias layer)
    k: int
    stride: int
    pad: int

    @property
    def out_channels(self) -> int:
        return self.wt.shape[0] // (self.k * self.k)

    def __call__(self, x, be: Backend, slope: float | None):
        """x (C, N, H, W) -> (OC, N, (H-1)*stride - 2*pad + k, ...)."""
        c, n, h, w = x.shape
        cols = be.matmul(self.wt, x.reshape(c, n * h * w))       # (OC*k*k, N*H*W)
        y = be.col2im(cols, (self.out_channels, n, h, w), self.k, self.k, self.stride, self.pad)
        be.bias_leaky_relu(y, self.bias, slope)
        return y                                                  # (OC, N, OH, OW)
