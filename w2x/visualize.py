"""Learning aid (network stage, looked at from outside): what every layer computes, as pictures.

The original's ``tools/visualize_layer_output.lua`` saves each conv layer's output for one
image as a grid of feature maps (torch ``image.toDisplayTensor`` with 2 px padding).  This
module computes the same arrays with w2x's own forward graph: ``layer_outputs`` runs
``config.arch.forward`` on layers wrapped so that each one keeps a copy of what it returns,
so nothing of the forward is written twice.  ``grid``, ``filter_maps`` and ``im2col_matrix``
turn arrays into pictures as float arrays in [0, 1]; ``w2x/cli/visualize.py`` writes them.
"""
from __future__ import annotations

import math

import numpy as np

from w2x import color
from w2x.nn import ops
from w2x.nn.backend import Backend, get_backend
from w2x.nn.models import Model

MAX_SIDE = 512          # the original refuses images over 256 px; cunet tiles go up to 512
GRID_PADDING = 2        # image.toDisplayTensor{padding = 2} (visualize_layer_output.lua:73)
INPUT_NAME = "input"


class _Recorder:
    """One layer of the forward graph, called as the graph calls it; keeps its output."""

    def __init__(self, name: str, layer, outputs: dict, be: Backend):
        self.name, self.layer, self.outputs, self.be = name, layer, outputs, be

    def __call__(self, x, be: Backend, slope: float | None):
        y = self.layer(x, be, slope)
        # a copy: the graph later scales (SE) or clips the same buffer in place
        self.outputs[self.name] = np.array(self.be.to_host(y)[:, 0])    # (OC, OH, OW), tile 0
        return y


def network_input(model: Model, image: np.ndarray) -> np.ndarray:
    """The image as the net sees one tile of it: float32 (C, H, W) RGB in [0, 1] -> its luma
    for a Y model, edge-padded by ``input_offset`` on each side (so the last layer has the
    image's size, times the scale factor), and for cunet/upcunet padded on the bottom/right
    up to a size they accept (a multiple of 4, at least the smallest valid tile).

    Raises ValueError for an image that is not (3, H, W) or is over ``MAX_SIDE`` px a side.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3, H, W), got shape {image.shape}")
    if max(image.shape[1:]) > MAX_SIDE:
        raise ValueError(f"image is {image.shape[2]}x{image.shape[1]}: layer pictures are for "
                         f"crops of at most {MAX_SIDE} px a side; crop it first")
    x = color.rgb2y(image) if model.config.channels == 1 else image        # (C, H, W)
    pad = model.config.input_offset
    h, w = x.shape[1] + 2 * pad, x.shape[2] + 2 * pad
    extra_h, extra_w = _to_valid(model, h) - h, _to_valid(model, w) - w
    return ops.pad_replicate(np.asarray(x, np.float32), pad, pad + extra_h, pad, pad + extra_w)


def _to_valid(model: Model, n: int) -> int:
    """The smallest size >= n that the arch accepts (valid_sizes are 4 apart)."""
    sizes = model.config.valid_sizes
    if sizes is None:
        return n
    return max(sizes.start, -(-n // sizes.step) * sizes.step)


def layer_outputs(model: Model, image: np.ndarray, backend: str | Backend = "numpy") -> dict[str, np.ndarray]:
    """Every layer's output for one image, in the order the graph runs them.

    image : float32 RGB (3, H, W) in [0, 1].  Returns ``{"input": network_input(...), name:
    (OC, OH, OW), ...}`` with the layer names of ``archs.py``.  A hidden layer's output is
    after its activation (LeakyReLU, or ReLU in an SE squeeze), as the original's
    ``strip_conv_layers`` keeps the activation that follows a conv; the last layer's is
    before the clip to [0, 1].
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    x = network_input(model, image)
    outputs: dict[str, np.ndarray] = {INPUT_NAME: x}
    net = model.on(be)
    recording = {name: _Recorder(name, layer, outputs, be) for name, layer in net.layers.items()}
    net.config.arch.forward(recording, be.to_device(np.ascontiguousarray(x[:, None])), be)  # (C, 1, H, W)
    return outputs


def grid(maps: np.ndarray, padding: int = GRID_PADDING, symmetric: bool = False) -> np.ndarray:
    """Feature maps side by side, as ``image.toDisplayTensor{input, padding}``.

    maps : (M, h, w) grey maps, or (M, 3, h, w) colour ones.  All are scaled together to
    [0, 1] by the min and max of ``maps`` (``symmetric``: by ±max|maps|, so 0 is mid grey).
    ``floor(sqrt(M))`` maps a row, each in an ``(h + padding) x (w + padding)`` cell with
    ``padding // 2`` px of black before it.

    Returns float32 (rows*(h+padding), cols*(w+padding)), or that with a leading 3 for colour.
    """
    colour = maps.ndim == 4
    m, h, w = maps.shape[0], maps.shape[-2], maps.shape[-1]
    cols = min(max(1, math.isqrt(m)), m)
    rows = -(-m // cols)
    lo, hi = (-np.abs(maps).max(), np.abs(maps).max()) if symmetric else (maps.min(), maps.max())
    scaled = (maps - lo) / (hi - lo) if hi > lo else np.zeros_like(maps)
    cell_h, cell_w = h + padding, w + padding
    out = np.zeros(((3,) if colour else ()) + (rows * cell_h, cols * cell_w), np.float32)
    for i in range(m):
        r, q = divmod(i, cols)
        y0, x0 = r * cell_h + padding // 2, q * cell_w + padding // 2
        out[..., y0:y0 + h, x0:x0 + w] = scaled[i]
    return out


def filter_maps(model: Model, enlarge: int = 8) -> np.ndarray:
    """The first layer's filters as pictures: (OC, 3, k*e, k*e) colour for an RGB model,
    (OC, k*e, k*e) for a Y model, each weight an ``enlarge`` x ``enlarge`` block."""
    first = next(iter(model.layers.values()))
    c, k = first.in_channels, first.k
    w = np.asarray(first.w2d).reshape(-1, c, k, k)                     # (OC, C, k, k)
    w = w.repeat(enlarge, axis=2).repeat(enlarge, axis=3)               # (OC, C, k*e, k*e)
    return w if c == 3 else w[:, 0]


def im2col_matrix(x: np.ndarray, top: int, left: int, size: int = 6, k: int = 3) -> np.ndarray:
    """``ops.im2col`` of a ``size`` x ``size`` patch of ``x`` (C, H, W) at (top, left):
    (C*k*k, (size-k+1)**2), the matrix a k x k conv multiplies by its (OC, C*k*k) weight."""
    if top < 0 or left < 0 or top + size > x.shape[1] or left + size > x.shape[2]:
        raise ValueError(f"a {size}x{size} patch at ({top}, {left}) does not fit in a "
                         f"{x.shape[2]}x{x.shape[1]} image")
    patch = np.ascontiguousarray(x[:, None, top:top + size, left:left + size])  # (C, 1, size, size)
    return ops.im2col(patch, k, k, 1)                                   # (C*k*k, OH*OW)


def enlarge(a: np.ndarray, factor: int) -> np.ndarray:
    """Each value as a ``factor`` x ``factor`` block, over the last two axes (H, W)."""
    return a.repeat(factor, axis=-2).repeat(factor, axis=-1)
