"""Network stage: the four released waifu2x architectures, as layer specs and forward graphs.

The specs are the shapes the JSON layer list must have, in export order (depth-first module
order of nagadomi/waifu2x lib/srcnn.lua, see docs/waifu2x-reference.md §2); the forward
functions wire those layers back into the graph.  Every forward takes and returns
(C, N, H, W) activations and ends with the arch's ``w2nn.InplaceClip01``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from w2x.nn.backend import Backend
from w2x.nn.ops import LEAKY_SLOPE


class LayerSpec(NamedTuple):
    """One JSON entry: ``conv`` = SpatialConvolution(MM), ``deconv`` = SpatialFullConvolution."""
    kind: str
    in_channels: int
    out_channels: int
    k: int
    stride: int = 1
    pad: int = 0


def _convs(widths: list[int]) -> list[LayerSpec]:
    return [LayerSpec("conv", a, b, 3) for a, b in zip(widths, widths[1:])]


def vgg_7_spec(ch: int) -> list[LayerSpec]:
    """lib/srcnn.lua:333-357: seven 3x3 convs ch-32-32-64-64-128-128-ch."""
    return _convs([ch, 32, 32, 64, 64, 128, 128, ch])


def upconv_7_spec(ch: int) -> list[LayerSpec]:
    """lib/srcnn.lua:360-385: six 3x3 convs ch-16-32-64-128-128-256, FullConv 4x4 s2 p3."""
    return _convs([ch, 16, 32, 64, 128, 128, 256]) + [LayerSpec("deconv", 256, ch, 4, 2, 3)]


def _unet1_spec(ch: int, deconv: bool) -> list[LayerSpec]:
    """lib/srcnn.lua:514-573 unet1; JSON entries 0-9."""
    last = LayerSpec("deconv", 64, ch, 4, 2, 3) if deconv else LayerSpec("conv", 64, ch, 3)
    return [
        LayerSpec("conv", ch, 32, 3), LayerSpec("conv", 32, 64, 3),           # unet_conv(ch,32,64)
        LayerSpec("conv", 64, 64, 2, 2),                                       # branch down
        LayerSpec("conv", 64, 128, 3), LayerSpec("conv", 128, 64, 3),         # unet_conv(64,128,64,SE)
        LayerSpec("conv", 64, 8, 1), LayerSpec("conv", 8, 64, 1),             # SE(64, r=8)
        LayerSpec("deconv", 64, 64, 2, 2),                                     # branch up
        LayerSpec("conv", 64, 64, 3), last,
    ]


def _unet2_spec(ch: int) -> list[LayerSpec]:
    """lib/srcnn.lua:514-573 unet2; JSON entries 10-29."""
    return [
        LayerSpec("conv", ch, 32, 3), LayerSpec("conv", 32, 64, 3),           # unet_conv(ch,32,64)
        LayerSpec("conv", 64, 64, 2, 2),                                       # outer branch down
        LayerSpec("conv", 64, 64, 3), LayerSpec("conv", 64, 128, 3),          # unet_conv(64,64,128,SE)
        LayerSpec("conv", 128, 16, 1), LayerSpec("conv", 16, 128, 1),
        LayerSpec("conv", 128, 128, 2, 2),                                     # inner branch down
        LayerSpec("conv", 128, 256, 3), LayerSpec("conv", 256, 128, 3),      # unet_conv(128,256,128,SE)
        LayerSpec("conv", 128, 16, 1), LayerSpec("conv", 16, 128, 1),
        LayerSpec("deconv", 128, 128, 2, 2),                                   # inner branch up
        LayerSpec("conv", 128, 64, 3), LayerSpec("conv", 64, 64, 3),          # unet_conv(128,64,64,SE)
        LayerSpec("conv", 64, 8, 1), LayerSpec("conv", 8, 64, 1),
        LayerSpec("deconv", 64, 64, 2, 2),                                     # outer branch up
        LayerSpec("conv", 64, 64, 3), LayerSpec("conv", 64, ch, 3),
    ]


def upcunet_spec(ch: int) -> list[LayerSpec]:
    return _unet1_spec(ch, deconv=True) + _unet2_spec(ch)


def cunet_spec(ch: int) -> list[LayerSpec]:
    return _unet1_spec(ch, deconv=False) + _unet2_spec(ch)


# --- forward graphs ----------------------------------------------------------------------
def _clip01(x, be: Backend):
    """w2nn.InplaceClip01, the last module of every released arch."""
    return be.xp.clip(x, 0.0, 1.0, out=x)


def forward_sequential(layers, x, be: Backend):
    """vgg_7 and upconv_7: LeakyReLU(0.1) after every layer but the last, then clip."""
    for layer in layers[:-1]:
        x = layer(x, be, LEAKY_SLOPE)
    return _clip01(layers[-1](x, be, None), be)


def _se(x, squeeze, excite, be: Backend):
    """SEBlock (lib/srcnn.lua:232-244): x * sigmoid(excite(relu(squeeze(mean_hw(x)))))."""
    c, n = x.shape[:2]
    z = be.channel_mean(x).reshape(c, n, 1, 1)          # (C, N, 1, 1): a 1x1 "image" per tile
    z = squeeze(z, be, 0.0)                              # ReLU == LeakyReLU(0)
    z = excite(z, be, None)
    z = 1.0 / (1.0 + be.xp.exp(-z))                      # Sigmoid
    return be.se_scale(x, z.reshape(c, n))               # (C, N)


def _unet_conv(x, layers, be: Backend):
    """unet_conv: two 3x3 convs with LeakyReLU, then SE when 4 layers are given (-4 px)."""
    x = layers[0](x, be, LEAKY_SLOPE)
    x = layers[1](x, be, LEAKY_SLOPE)
    return _se(x, layers[2], layers[3], be) if len(layers) == 4 else x


def _unet_branch(x, down, inner: Callable, up, depad: int, be: Backend):
    """unet_branch: LReLU(up(inner(LReLU(down(x))))) + crop(x, depad)."""
    y = down(x, be, LEAKY_SLOPE)
    y = up(inner(y), be, LEAKY_SLOPE)
    return be.crop_add(y, x, depad)


def _unet1(L, x, be: Backend):
    x = _unet_conv(x, L[0:2], be)
    x = _unet_branch(x, L[2], lambda y: _unet_conv(y, L[3:7], be), L[7], 4, be)
    x = L[8](x, be, LEAKY_SLOPE)
    return L[9](x, be, None)


def _unet2(L, x, be: Backend):
    def inner(y):
        y = _unet_conv(y, L[3:7], be)
        y = _unet_branch(y, L[7], lambda z: _unet_conv(z, L[8:12], be), L[12], 4, be)
        return _unet_conv(y, L[13:17], be)
    x = _unet_conv(x, L[0:2], be)
    x = _unet_branch(x, L[2], inner, L[17], 16, be)
    x = L[18](x, be, LEAKY_SLOPE)
    return L[19](x, be, None)


def forward_cunet(layers, x, be: Backend):
    """cunet / upcunet (lib/srcnn.lua:575-633): clip(unet2(z1) + crop20(z1)), z1 = unet1(x).

    There is no clip on z1 before unet2: InplaceClip01 only follows the CAddTable (:585).
    """
    z1 = _unet1(layers[:10], x, be)
    z2 = _unet2(layers[10:], z1, be)
    return _clip01(be.crop_add(z2, z1, 20), be)


@dataclass(frozen=True)
class Arch:
    """What differs between architectures: its layers, its graph and its geometry."""
    spec: Callable[[int], list[LayerSpec]]
    forward: Callable
    offset: int             # output pixels lost on each side (w2nn offset)
    scale: int              # inner scale: 2 for the nets that upsample themselves
    valid_sizes: range | None = None   # input tile sizes the graph accepts (srcnn.lua:597-630)


ARCHS = {
    "vgg_7": Arch(vgg_7_spec, forward_sequential, offset=7, scale=1),
    "upconv_7": Arch(upconv_7_spec, forward_sequential, offset=14, scale=2),
    "upcunet": Arch(upcunet_spec, forward_cunet, offset=36, scale=2, valid_sizes=range(76, 513, 4)),
    "cunet": Arch(cunet_spec, forward_cunet, offset=28, scale=1, valid_sizes=range(100, 513, 4)),
}
