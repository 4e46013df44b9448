"""Training stage: parameters <-> the original JSON layout (tools/export_model.lua:39-97,
reference §2.1), which ``w2x.nn.models.load_model`` reads back."""
from __future__ import annotations

import json

import numpy as np

from w2x.atomic import replacing
from w2x.nn.archs import ARCHS

_CLASS = {"conv": "nn.SpatialConvolutionMM", "deconv": "nn.SpatialFullConvolution"}


def model_entries(arch: str, channels: int, params: dict) -> list[dict]:
    """The JSON layer list of ``params`` (name -> (w, b) in GEMM form, ``w2x.nn.grad``)."""
    a = ARCHS[arch]
    entries = []
    for s in a.spec(channels):
        w, b = (np.asarray(v, np.float32) for v in params[s.name])
        if s.kind == "conv":
            weight = w.reshape(s.out_channels, s.in_channels, s.k, s.k)   # (OC, C*k*k) -> torch
        else:
            weight = w.T.reshape(s.in_channels, s.out_channels, s.k, s.k)  # (OC*k*k, C) -> (C, OC, k, k)
        entries.append({
            "class_name": _CLASS[s.kind], "kW": s.k, "kH": s.k, "dW": s.stride, "dH": s.stride,
            "padW": s.pad, "padH": s.pad, "nInputPlane": s.in_channels, "nOutputPlane": s.out_channels,
            # float32 -> Python float is exact, and JSON's shortest repr reads back to it
            "weight": weight.tolist(), "bias": b.tolist()})
    cfg = {"arch_name": arch, "channels": channels, "offset": a.offset, "scale_factor": a.scale_factor}
    if a.scale_factor == 2:
        cfg["resize"] = True
    if a.valid_sizes is not None:
        cfg["valid_input_size"] = list(a.valid_sizes)
    entries[0]["model_config"] = cfg
    return entries


def save_model(path, arch: str, channels: int, params: dict) -> None:
    """Write the model JSON atomically (a failed write leaves the old file as it was)."""
    text = json.dumps(model_entries(arch, channels, params), separators=(",", ":"))
    with replacing(path, text=True, encoding="utf-8") as f:
        f.write(text)
