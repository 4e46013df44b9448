"""Model loading: the original torch7-exported JSON (``tools/export_model.lua``) -> ``Model``.

The file is a JSON array, one object per parameterised layer in module order, with
``model_config`` on the first (docs/waifu2x-reference.md §2.1).  Everything is checked
against the architecture's layer spec here, once, so the network code never meets a
malformed weight.
"""
from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from w2x.nn.archs import ARCHS, Arch, LayerSpec
from w2x.nn.backend import Backend, get_backend
from w2x.nn.layers import Conv2d, ConvTranspose2d

CONV_CLASSES = {"nn.SpatialConvolutionMM", "nn.SpatialConvolution", "cudnn.SpatialConvolution"}
DECONV_CLASSES = {"nn.SpatialFullConvolution", "cudnn.SpatialFullConvolution"}
_REQUIRED_KEYS = ("nInputPlane", "nOutputPlane", "kW", "kH", "weight", "bias")


class ModelFormatError(ValueError):
    """A model file that is not a valid waifu2x JSON model; the message names file and layer."""


@dataclass(frozen=True)
class ModelConfig:
    """What the pipeline needs to know about a model: its architecture and its channels
    (the ``model_config`` of the JSON's first layer, srcnn.lua ``w2nn_*`` fields)."""
    arch: Arch
    channels: int              # 3 = RGB, 1 = luma (Y)

    @property
    def arch_name(self) -> str:
        return self.arch.name

    @property
    def scale_factor(self) -> int:
        """Inner scale factor: 2 if the net upsamples itself."""
        return self.arch.scale_factor

    @property
    def offset(self) -> int:
        """Output pixels lost per side."""
        return self.arch.offset

    @property
    def valid_sizes(self) -> range | None:
        """Accepted input tile sizes (cunet/upcunet), None = any."""
        return self.arch.valid_sizes

    @property
    def input_offset(self) -> int:
        """Context pixels an input tile needs on each side: ceil(offset / scale_factor)
        (lib/reconstruct.lua padding_params)."""
        return math.ceil(self.offset / self.scale_factor)


class Model:
    """A loaded waifu2x network: ``config`` plus its layers by name, in export order.

    The forward graph is ``config.arch.forward(layers, x, be)`` on (C, N, H, W) arrays
    already on ``be``'s device (``on(be)`` gives the model there); ``forward`` is the same
    for a host batch in PyTorch's (N, C, H, W) layout.
    """

    def __init__(self, config: ModelConfig, layers: dict, path: str = "<memory>"):
        self.config, self.layers, self.path = config, layers, path
        # id(backend) -> (backend, this model as it runs there); the backend is kept, so its id stays its own
        self._on: dict[int, tuple[Backend, Model]] = {}

    def forward(self, x: np.ndarray, backend: str | Backend = "auto") -> np.ndarray:
        """Forward a host batch in PyTorch layout: float32 (N, C, H, W) -> (N, C, OH, OW).

        ``OH = (H - 2*input_offset) * scale_factor`` for the sequential nets and
        ``H*scale_factor - 2*offset`` in general; the result is clipped to [0, 1] as every
        released model ends with ``w2nn.InplaceClip01``.
        """
        be = get_backend(backend) if isinstance(backend, str) else backend
        x = be.to_device(np.ascontiguousarray(np.asarray(x, np.float32).transpose(1, 0, 2, 3)))  # (C, N, H, W)
        net = self.on(be)
        y = net.config.arch.forward(net.layers, x, be)                     # (C, N, OH, OW)
        return np.ascontiguousarray(be.to_host(y).transpose(1, 0, 2, 3))  # (N, C, OH, OW)

    def on(self, be: Backend) -> "Model":
        """This model as ``be`` runs it (cached per backend table; ``get_backend`` makes one per
        name and precision): weights on its device, in its forms.  On a
        backend with ``channels_last``, the layers that output activations rather than an
        image (``Arch.image_layers``) write them channel-last where they can
        (``layers.Conv2d.channels_last``); every primitive reads either order."""
        if id(be) not in self._on:      # any change to a backend's table (dataclasses.replace) is another backend
            images = self.config.arch.image_layers
            assert images and set(images) <= set(self.layers), f"{self.config.arch_name}: image_layers {images}"
            layers = {name: layer.on(be, channels_last=name not in images) for name, layer in self.layers.items()}
            self._on[id(be)] = (be, Model(self.config, layers, self.path))
        return self._on[id(be)][1]

    def __repr__(self) -> str:
        c = self.config
        return (f"Model({c.arch_name}, channels={c.channels}, scale_factor={c.scale_factor}, "
                f"offset={c.offset}, path={self.path!r})")


@dataclass(frozen=True)
class ModelWeights:
    """A model's numbers as the JSON holds them, before any layer is built: the architecture,
    the channels, and per layer of ``arch.spec(channels)`` its float32 weight in torch's
    layout (conv (OC, C, k, k), deconv (C, OC, k, k)) and bias (OC,)."""
    arch_name: str
    channels: int
    arrays: tuple[tuple[np.ndarray, np.ndarray], ...]


def load_model(path: str | Path) -> Model:
    """Load an original waifu2x JSON model (``.json`` or ``.json.gz``).

    The architecture comes from ``model_config.arch_name`` on the first layer, else it is
    inferred from the layer count and class names (docs/waifu2x-reference.md §2.1).  Both
    ``nn.*`` and ``cudnn.*`` class names are accepted.  Numbers are ``%.14g`` text, parsed as
    float64 and cast to float32, which is exact for weights exported from float32.

    Raises
    ------
    FileNotFoundError
        no such file.
    ModelFormatError
        invalid JSON, missing keys, wrong layer count, a layer whose shape differs from the
        architecture's, or non-finite numbers; the message names the file and the layer.
    """
    return model_from_weights(parse_model_json(read_model_file(path), path), path)


def read_model_file(path: str | Path) -> bytes:
    """The bytes of a model file; FileNotFoundError or ModelFormatError as ``load_model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelFormatError(f"{path}: not a readable waifu2x JSON model ({e})") from None


def parse_model_json(raw: bytes, path: str | Path = "<memory>") -> ModelWeights:
    """The numbers of a JSON model file's bytes (gzip or not), checked layer by layer
    against the architecture's spec; raises ``ModelFormatError`` as ``load_model`` says."""
    path = Path(path)
    try:
        if raw[:2] == b"\x1f\x8b":  # gzip magic
            raw = gzip.decompress(raw)
        entries = json.loads(raw)
    except (OSError, EOFError, ValueError) as e:
        raise ModelFormatError(f"{path}: not a readable waifu2x JSON model ({e})") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ModelFormatError(f"{path}: expected a JSON array of layer objects "
                               f"(tools/export_model.lua format), found {type(entries).__name__}")
    arch_name = _arch_name(path, entries)
    arch = ARCHS[arch_name]
    cfg = entries[0].get("model_config") or {}
    channels = int(cfg.get("channels", entries[0].get("nInputPlane", 0)))
    if channels not in (1, 3):
        raise ModelFormatError(f"{path}: expected 1 (Y) or 3 (RGB) channels, found {channels}")
    specs = arch.spec(channels)
    if len(entries) != len(specs):
        raise ModelFormatError(f"{path}: {arch_name} has {len(specs)} layers, the file has {len(entries)}")
    arrays = tuple(_layer_arrays(path, i, e, s) for i, (e, s) in enumerate(zip(entries, specs)))
    for key, expected in (("offset", arch.offset), ("scale_factor", arch.scale_factor)):
        if key in cfg and int(cfg[key]) != expected:
            raise ModelFormatError(f"{path}: model_config.{key} is {cfg[key]}, {arch_name} has {expected}")
    return ModelWeights(arch_name, channels, arrays)


def model_from_weights(weights: ModelWeights, path: str | Path = "<memory>") -> Model:
    """The ``Model`` of ``weights``, checked against the architecture's layer spec (known
    arch and channels, one float32 finite (weight, bias) pair per layer, of the spec's
    shapes), so that numbers from anywhere (the JSON, a cache) run only when they fit."""
    if weights.arch_name not in ARCHS:
        raise ModelFormatError(f"{path}: architecture {weights.arch_name!r} is not supported; "
                               f"expected one of {', '.join(ARCHS)}")
    if weights.channels not in (1, 3):
        raise ModelFormatError(f"{path}: expected 1 (Y) or 3 (RGB) channels, found {weights.channels}")
    arch = ARCHS[weights.arch_name]
    specs = arch.spec(weights.channels)
    if len(weights.arrays) != len(specs):
        raise ModelFormatError(f"{path}: {arch.name} has {len(specs)} layers, found {len(weights.arrays)}")
    layers = {}
    for spec, (w, b) in zip(specs, weights.arrays):
        expected = (weight_shape(spec), np.float32), ((spec.out_channels,), np.float32)
        if ((w.shape, w.dtype), (b.shape, b.dtype)) != expected:
            raise ModelFormatError(f"{path}: layer {spec.name}: expected float32 weight {expected[0][0]} "
                                   f"and bias {expected[1][0]}, found {w.dtype} {w.shape} and {b.dtype} {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ModelFormatError(f"{path}: layer {spec.name}: weight or bias contains NaN or infinity")
        layers[spec.name] = _layer(spec, w, b)
    return Model(ModelConfig(arch, weights.channels), layers, str(path))


def weight_shape(spec: LayerSpec) -> tuple[int, int, int, int]:
    """The torch weight shape of a layer: conv (OC, C, k, k), deconv (C, OC, k, k)."""
    k = spec.k
    return ((spec.out_channels, spec.in_channels, k, k) if spec.kind == "conv"
            else (spec.in_channels, spec.out_channels, k, k))


def _arch_name(path: Path, entries: list[dict]) -> str:
    name = (entries[0].get("model_config") or {}).get("arch_name")
    if name is not None:
        if name not in ARCHS:
            raise ModelFormatError(f"{path}: architecture {name!r} is not supported; "
                                   f"expected one of {', '.join(ARCHS)}")
        return name
    # No model_config (exports before 2016-05): infer from the layer list (reference §2.1).
    last_is_deconv = entries[-1].get("class_name") in DECONV_CLASSES
    if len(entries) == 7:
        return "upconv_7" if last_is_deconv else "vgg_7"
    if len(entries) == 30:
        return "upcunet" if entries[9].get("class_name") in DECONV_CLASSES else "cunet"
    raise ModelFormatError(f"{path}: cannot tell the architecture: no model_config.arch_name and "
                           f"{len(entries)} layers (vgg_7/upconv_7 have 7, cunet/upcunet 30)")


def _layer_arrays(path: Path, i: int, e: dict, spec: LayerSpec) -> tuple[np.ndarray, np.ndarray]:
    where = f"{path}: layer {i} ({spec.name})"
    missing = [k for k in _REQUIRED_KEYS if k not in e]
    if missing:
        raise ModelFormatError(f"{where}: missing key(s) {', '.join(missing)}")
    cls = e.get("class_name", "nn.SpatialFullConvolution" if spec.kind == "deconv" else "nn.SpatialConvolutionMM")
    kind = "conv" if cls in CONV_CLASSES else "deconv" if cls in DECONV_CLASSES else None
    found = LayerSpec(spec.name, kind or cls, e["nInputPlane"], e["nOutputPlane"], e["kW"],
                      e.get("dW", 1), e.get("padW", 0))
    if e["kH"] != e["kW"] or e.get("dH", found.stride) != found.stride or e.get("padH", found.pad) != found.pad:
        raise ModelFormatError(f"{where}: non-square kernel/stride/pad are not used by any waifu2x arch")
    if found != spec:
        raise ModelFormatError(f"{where}: expected {_describe(spec)}, found {_describe(found)} ({cls})")
    try:
        w = np.asarray(e["weight"], dtype=np.float64)
        b = np.asarray(e["bias"], dtype=np.float64)
    except (ValueError, TypeError):
        raise ModelFormatError(f"{where}: weight/bias are not numeric arrays") from None
    w_shape = weight_shape(spec)
    if w.shape != w_shape:
        raise ModelFormatError(f"{where}: weight has shape {w.shape}, expected {w_shape}")
    if b.shape != (spec.out_channels,):
        raise ModelFormatError(f"{where}: bias has shape {b.shape}, expected ({spec.out_channels},)")
    return w.astype(np.float32), b.astype(np.float32)


def _layer(spec: LayerSpec, w32: np.ndarray, b32: np.ndarray) -> Conv2d | ConvTranspose2d:
    """The layer of torch-layout float32 weights, in the GEMM's forms."""
    if spec.kind == "conv":
        return Conv2d(np.ascontiguousarray(w32.reshape(spec.out_channels, -1)), b32, spec.k, spec.stride)
    # (C, OC, k, k) -> (C, OC*k*k) -> (OC*k*k, C)
    wt = np.ascontiguousarray(w32.reshape(spec.in_channels, -1).T)
    return ConvTranspose2d(wt, b32, spec.k, spec.stride, spec.pad)


def _describe(s: LayerSpec) -> str:
    return f"{s.kind} {s.in_channels}->{s.out_channels} k{s.k} s{s.stride} p{s.pad}"
