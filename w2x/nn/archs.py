"""Network stage: the four released waifu2x architectures, as named layer specs and forward graphs.

The specs are the shapes the JSON layer list must have, in export order (depth-first module
order of nagadomi/waifu2x lib/srcnn.lua, see docs/waifu2x-reference.md §2); each layer has a
name (``conv3``, ``unet2.conv3.se.excite``) that the forward graphs look it up by and that
loader errors quote.  Every forward takes ``layers`` (name -> layer) and (C, N, H, W)
activations, and ends with the arch's ``w2nn.InplaceClip01``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from w2x.nn.backend import Backend
from w2x.nn.ops import LEAKY_SLOPE


class LayerSpec(NamedTuple):
    """One JSON entry: ``conv`` = SpatialConvolution(MM), ``deconv`` = SpatialFullConvolution."""
    name: str
    kind: str
    in_channels: int
    out_channels: int
    k: int
    stride: int = 1
    pad: int = 0


def _conv(name: str, c: int, oc: int, k: int = 3, stride: int = 1) -> LayerSpec:
    return LayerSpec(name, "conv", c, oc, k, stride)


def _deconv(name: str, c: int, oc: int, k: int, stride: int, pad: int = 0) -> LayerSpec:
    return LayerSpec(name, "deconv", c, oc, k, stride, pad)


def _plain_convs(widths: list[int]) -> list[LayerSpec]:
    """3x3 convs ``conv1``, ``conv2``, ... between consecutive widths."""
    return [_conv(f"conv{i + 1}", a, b) for i, (a, b) in enumerate(zip(widths, widths[1:]))]


def vgg_7_spec(ch: int) -> list[LayerSpec]:
    """lib/srcnn.lua:333-357: seven 3x3 convs ch-32-32-64-64-128-128-ch."""
    return _plain_convs([ch, 32, 32, 64, 64, 128, 128, ch])


def upconv_7_spec(ch: int) -> list[LayerSpec]:
    """lib/srcnn.lua:360-385: six 3x3 convs ch-16-32-64-128-128-256, FullConv 4x4 s2 p3."""
    return _plain_convs([ch, 16, 32, 64, 128, 128, 256]) + [_deconv("deconv", 256, ch, 4, 2, 3)]


def _unet_conv_spec(name: str, c: int, mid: int, oc: int, se_ratio: int | None) -> list[LayerSpec]:
    """unet_conv (lib/srcnn.lua:514-525): two 3x3 convs, then an SE block (srcnn.lua:232-244)
    squeezing ``oc`` channels by ``se_ratio`` when given."""
    convs = [_conv(f"{name}.0", c, mid), _conv(f"{name}.1", mid, oc)]
    if se_ratio is None:
        return convs
    return convs + [_conv(f"{name}.se.squeeze", oc, oc // se_ratio, 1),
                    _conv(f"{name}.se.excite", oc // se_ratio, oc, 1)]


def _unet1_spec(ch: int, deconv: bool) -> list[LayerSpec]:
    """lib/srcnn.lua:527-548 unet1; JSON entries 0-9."""
    out = _deconv("unet1.out", 64, ch, 4, 2, 3) if deconv else _conv("unet1.out", 64, ch)
    return [*_unet_conv_spec("unet1.conv1", ch, 32, 64, None),
            _conv("unet1.down1", 64, 64, 2, 2),
            *_unet_conv_spec("unet1.conv2", 64, 128, 64, 8),
            _deconv("unet1.up1", 64, 64, 2, 2),
            _conv("unet1.conv3", 64, 64),
            out]


def _unet2_spec(ch: int) -> list[LayerSpec]:
    """lib/srcnn.lua:550-573 unet2; JSON entries 10-29."""
    return [*_unet_conv_spec("unet2.conv1", ch, 32, 64, None),
            _conv("unet2.down1", 64, 64, 2, 2),
            *_unet_conv_spec("unet2.conv2", 64, 64, 128, 8),
            _conv("unet2.down2", 128, 128, 2, 2),
            *_unet_conv_spec("unet2.conv3", 128, 256, 128, 8),
            _deconv("unet2.up2", 128, 128, 2, 2),
            *_unet_conv_spec("unet2.conv4", 128, 64, 64, 8),
            _deconv("unet2.up1", 64, 64, 2, 2),
            _conv("unet2.conv5", 64, 64),
            _conv("unet2.out", 64, ch)]


def upcunet_spec(ch: int) -> list[LayerSpec]:
    return _unet1_spec(ch, deconv=True) + _unet2_spec(ch)


def cunet_spec(ch: int) -> list[LayerSpec]:
    return _unet1_spec(ch, deconv=False) + _unet2_spec(ch)


# --- forward graphs ----------------------------------------------------------------------
def _clip01(x, be: Backend):
    """w2nn.InplaceClip01, the last module of every released arch."""
    return be.xp.clip(x, 0.0, 1.0, out=x)


def forward_sequential(layers: dict, x, be: Backend):
    """vgg_7 and upconv_7: LeakyReLU(0.1) after every layer but the last, then clip."""
    *hidden, last = layers.values()
    for layer in hidden:
        x = layer(x, be, LEAKY_SLOPE)
    return _clip01(last(x, be, None), be)


def _se(x, layers: dict, name: str, be: Backend):
    """SEBlock (lib/srcnn.lua:232-244): x * sigmoid(excite(relu(squeeze(mean_hw(x)))))."""
    c, n = x.shape[:2]
    z = be.channel_mean(x).reshape(c, n, 1, 1)               # (C, N, 1, 1): a 1x1 "image" per tile
    z = layers[f"{name}.se.squeeze"](z, be, 0.0)              # ReLU == LeakyReLU(0)
    z = layers[f"{name}.se.excite"](z, be, None)
    z = 1.0 / (1.0 + be.xp.exp(-z))                           # Sigmoid
    return be.se_scale(x, z.reshape(c, n))                    # (C, N)


def _unet_conv(x, layers: dict, name: str, be: Backend):
    """unet_conv: two 3x3 convs with LeakyReLU (-4 px), then SE where the spec has one."""
    x = layers[f"{name}.0"](x, be, LEAKY_SLOPE)
    x = layers[f"{name}.1"](x, be, LEAKY_SLOPE)
    return _se(x, layers, name, be) if f"{name}.se.squeeze" in layers else x


def _unet_branch(x, down, inner: Callable, up, depad: int, be: Backend):
    """unet_branch (srcnn.lua:496-512): LReLU(up(inner(LReLU(down(x))))) + crop(x, depad)."""
    y = down(x, be, LEAKY_SLOPE)
    y = up(inner(y), be, LEAKY_SLOPE)
    return be.crop_add(y, x, depad)


def _unet1(L: dict, x, be: Backend):
    x = _unet_conv(x, L, "unet1.conv1", be)
    x = _unet_branch(x, L["unet1.down1"], lambda y: _unet_conv(y, L, "unet1.conv2", be),
                     L["unet1.up1"], 4, be)
    x = L["unet1.conv3"](x, be, LEAKY_SLOPE)
    return L["unet1.out"](x, be, None)


def _unet2(L: dict, x, be: Backend):
    def inner(y):
        y = _unet_conv(y, L, "unet2.conv2", be)
        y = _unet_branch(y, L["unet2.down2"], lambda z: _unet_conv(z, L, "unet2.conv3", be),
                         L["unet2.up2"], 4, be)
        return _unet_conv(y, L, "unet2.conv4", be)
    x = _unet_conv(x, L, "unet2.conv1", be)
    x = _unet_branch(x, L["unet2.down1"], inner, L["unet2.up1"], 16, be)
    x = L["unet2.conv5"](x, be, LEAKY_SLOPE)
    return L["unet2.out"](x, be, None)


def forward_cunet(layers: dict, x, be: Backend):
    """cunet / upcunet (lib/srcnn.lua:575-633): clip(unet2(z1) + crop20(z1)), z1 = unet1(x).

    There is no clip on z1 before unet2: InplaceClip01 only follows the CAddTable (:585).
    """
    z1 = _unet1(layers, x, be)
    z2 = _unet2(layers, z1, be)
    return _clip01(be.crop_add(z2, z1, 20), be)


@dataclass(frozen=True)
class Arch:
    """What differs between architectures: its layers, its graph and its geometry."""
    name: str
    spec: Callable[[int], list[LayerSpec]]
    forward: Callable       # (layers: name -> layer, x (C, N, H, W), be) -> (C, N, OH, OW)
    offset: int             # output pixels lost on each side (w2nn offset)
    scale_factor: int       # 2 for the nets that upsample themselves (model_config.scale_factor)
    valid_sizes: range | None = None   # input tile sizes the graph accepts (srcnn.lua:597-630)
    # the layers that output an image (1 or 3 channels); the others' outputs are activations,
    # which a backend may keep channel-last (models.Model.on)
    image_layers: tuple[str, ...] = ()


ARCHS = {a.name: a for a in (
    Arch("vgg_7", vgg_7_spec, forward_sequential, offset=7, scale_factor=1, image_layers=("conv7",)),
    Arch("upconv_7", upconv_7_spec, forward_sequential, offset=14, scale_factor=2, image_layers=("deconv",)),
    Arch("upcunet", upcunet_spec, forward_cunet, offset=36, scale_factor=2, valid_sizes=range(76, 513, 4),
         image_layers=("unet1.out", "unet2.out")),
    Arch("cunet", cunet_spec, forward_cunet, offset=28, scale_factor=1, valid_sizes=range(100, 513, 4),
         image_layers=("unet1.out", "unet2.out")),
)}
