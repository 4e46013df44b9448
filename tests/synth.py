"""Tiny random waifu2x JSON models, written as tools/export_model.lua would (tests only)."""
from __future__ import annotations

import json

import numpy as np

from w2x.nn.archs import ARCHS

_CLASS = {"conv": "nn.SpatialConvolutionMM", "deconv": "nn.SpatialFullConvolution"}


def model_entries(arch: str, channels: int = 3, seed: int = 0, scale: float = 0.1) -> list[dict]:
    """The JSON layer list of a random ``arch`` model (weights N(0, scale))."""
    rng = np.random.default_rng(seed)
    entries = []
    for s in ARCHS[arch].spec(channels):
        shape = ((s.out_channels, s.in_channels, s.k, s.k) if s.kind == "conv"
                 else (s.in_channels, s.out_channels, s.k, s.k))
        entries.append({
            "class_name": _CLASS[s.kind], "kW": s.k, "kH": s.k, "dW": s.stride, "dH": s.stride,
            "padW": s.pad, "padH": s.pad, "nInputPlane": s.in_channels, "nOutputPlane": s.out_channels,
            "weight": np.round(rng.standard_normal(shape) * scale, 4).tolist(),  # short numbers: fast JSON
            "bias": np.round(rng.standard_normal(s.out_channels) * scale, 4).tolist(),
        })
    a = ARCHS[arch]
    entries[0]["model_config"] = {"arch_name": arch, "channels": channels, "offset": a.offset,
                                  "scale_factor": a.scale_factor}
    return entries


def write_model(path, entries) -> str:
    path.write_text(json.dumps(entries))
    return str(path)
