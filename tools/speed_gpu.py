#!/usr/bin/env python3
"""Tools: GPU speed of w2x's cupy backend against PyTorch CUDA on the same JSON models.

Seconds per output megapixel of one batched forward (``batch`` tiles of ``tile`` px, input
already on the device), for vgg_7, upconv_7, upcunet and cunet, in each w2x precision, and
with ``--vs-torch`` for PyTorch in the same process: the same weights in ``F.conv2d`` /
``F.conv_transpose2d`` wired by the same graph code (``archs.py``), cuDNN with
``cudnn.benchmark`` on, in IEEE float32 ("torch fp32", the issue's baseline) and in PyTorch's
default TF32 convolutions ("torch tf32").  Times are medians over ``--repeats`` runs measured
with CUDA events after ``--warmup`` runs.  ``--stream`` adds the end-to-end rate through
``w2x.stream`` (host tiles in, host tiles out); ``--parity`` the largest error of each
precision on the network fixtures of ../shared/reference.

    python tools/speed_gpu.py --precision fp32 tf32 fp16 --vs-torch --stream --parity

``tools/speed.py --backend cupy [--vs-torch]`` is meant to call ``bench_models`` from here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from w2x import load_model, stream  # noqa: E402  (after the path fix above)
from w2x.nn.backend import Backend, get_backend  # noqa: E402
from w2x.nn.layers import Conv2d  # noqa: E402
from w2x.nn.models import Model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("W2X_SHARED", ROOT.parent / "shared"))
MODEL_DIR = Path(os.environ.get("W2X_MODEL_DIR", SHARED / "weights"))
BENCH_MODELS = {  # arch -> one released model of it
    "vgg_7": "vgg_7/art/scale2.0x_model.json.gz",
    "upconv_7": "upconv_7/art/scale2.0x_model.json.gz",
    "upcunet": "cunet/art/scale2.0x_model.json.gz",
    "cunet": "cunet/art/noise1_model.json.gz",
}
# The bars (H100): w2x fp32 <= 1.2x and fp16 <= 0.8x PyTorch fp32, for these archs.
TARGETS = {"fp32": 1.2, "fp16": 0.8}
TARGET_ARCHS = ("vgg_7", "upconv_7", "upcunet")
DEFAULT_TILE = 256        # waifu2x's default -crop_size; a valid cunet/upcunet size
DEFAULT_BATCH = 16        # 16 x 256^2 px per forward fills an H100 for every arch


# --- timing --------------------------------------------------------------------------------
def _median_ms(run, events, sync, warmup: int, repeats: int) -> float:
    """Median milliseconds of ``run()`` between two device events, after ``warmup`` runs."""
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeats):
        start, end = events()
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(_elapsed_ms(start, end))
    return statistics.median(times)


def _elapsed_ms(start, end) -> float:
    return start.elapsed_time(end) if hasattr(start, "elapsed_time") else _cupy().cuda.get_elapsed_time(start, end)


def _cupy():
    import cupy
    return cupy


def w2x_seconds_per_mp(model: Model, be: Backend, x: np.ndarray, warmup: int, repeats: int):
    """(seconds per output megapixel, output) of ``model`` on backend ``be`` for the host batch
    ``x`` (C, N, t, t), uploaded once."""
    cp = _cupy()
    net, xd = model.on(be), cp.asarray(x)
    ms = _median_ms(lambda: net.config.arch.forward(net.layers, xd, be), lambda: (cp.cuda.Event(), cp.cuda.Event()),
                    cp.cuda.Device().synchronize, warmup, repeats)
    y = cp.asnumpy(net.config.arch.forward(net.layers, xd, be))                                       # (C, N, oh, ow)
    return ms / 1e3 / (y[0].size / 1e6), y


def torch_seconds_per_mp(model: Model, x: np.ndarray, precision: str, warmup: int, repeats: int):
    """As ``w2x_seconds_per_mp`` for PyTorch CUDA with cudnn.benchmark, convolutions in
    ``precision`` "ieee" (float32) or "tf32"."""
    import torch
    _torch_precision(torch, precision)
    torch.backends.cudnn.benchmark = True
    run = torch_twin(model, "cuda")
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2, 3))).cuda()   # (N, C, t, t)
    with torch.inference_mode():
        ms = _median_ms(lambda: run(xt), lambda: (torch.cuda.Event(enable_timing=True),
                                                 torch.cuda.Event(enable_timing=True)),
                        torch.cuda.synchronize, warmup, repeats)
        y = run(xt).cpu().numpy().transpose(1, 0, 2, 3)                           # (C, N, oh, ow)
    return ms / 1e3 / (y[0].size / 1e6), y


def _torch_precision(torch, precision: str) -> None:
    if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision"):
        torch.backends.cudnn.conv.fp32_precision = precision                     # torch >= 2.9
    else:
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def torch_twin(model: Model, device: str):
    """``model`` as PyTorch ops on ``device``: a callable (N, C, H, W) tensor -> (N, C, OH, OW).

    The graph is ``archs.py``'s own forward, run on NCHW tensors through a torch backend: its
    SE and skip code only names the first two axes and the last two, so NCHW works unchanged.
    """
    import torch
    F = torch.nn.functional

    def to(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    def layer(l):
        b = to(l.bias)
        if isinstance(l, Conv2d):
            w = to(l.w2d.reshape(l.w2d.shape[0], -1, l.k, l.k))                     # (OC, C, k, k)
            conv = lambda x: F.conv2d(x, w, b, l.stride)                          # noqa: E731
        else:
            w = to(l.wt.T.reshape(-1, l.out_channels, l.k, l.k))                  # (C, OC, k, k)
            conv = lambda x: F.conv_transpose2d(x, w, b, l.stride, l.pad)         # noqa: E731
        return lambda x, be, slope: conv(x) if slope is None else F.leaky_relu(conv(x), slope, inplace=True)

    be = Backend("torch", "cuda", SimpleNamespace(exp=torch.exp, clip=lambda x, lo, hi, out: x.clamp_(lo, hi)),
                 im2col=None, col2im=None, bias_leaky_relu=None,
                 channel_mean=lambda x: x.mean(dim=(2, 3)),                        # (N, C)
                 se_scale=lambda x, z: x.mul_(z[:, :, None, None]),
                 crop_add=lambda a, b, c: a + b[:, :, c:c + a.shape[2], c:c + a.shape[3]],
                 matmul=None, to_device=None, to_host=None)
    layers = {name: layer(l) for name, l in model.layers.items()}
    return lambda x: model.config.arch.forward(layers, x, be)


def stream_seconds_per_mp(model: Model, be: Backend, x: np.ndarray, n_batches: int) -> float:
    """Seconds per output megapixel through ``stream.stream_tiles``: ``n_batches`` batches
    of the tiles of ``x`` (C, N, t, t) from host memory to host memory, wall clock."""
    tiles = [np.ascontiguousarray(x[:, i]) for i in range(x.shape[1])] * n_batches
    out = {}

    def run(tile_list) -> int:
        n = 0
        for n, (_, y) in enumerate(stream.stream_tiles(model, be, tile_list, x.shape[1]), 1):
            out.setdefault(y.shape, np.empty(y.shape, np.float32))[...] = y     # a host copy per tile
        return n

    run(tiles[:x.shape[1]])                                                     # warm-up
    t0 = time.perf_counter()
    n = run(tiles)
    seconds = time.perf_counter() - t0
    (shape,) = out
    return seconds / (n * shape[1] * shape[2] / 1e6)


# --- the benchmark ---------------------------------------------------------------------------
def bench_models(precisions, vs_torch: bool, stream: bool, tile: int = DEFAULT_TILE,
                 batch: int = DEFAULT_BATCH, warmup: int = 3, repeats: int = 10, archs=tuple(BENCH_MODELS)):
    """One row per arch: seconds per output megapixel for each w2x precision ("w2x fp32", ...),
    and "torch fp32" / "torch tf32" with ``vs_torch``; "stream fp32" etc. with ``stream``;
    "torch maxdiff" = max |w2x fp32 - torch fp32| of the outputs, a check that both compute
    the same function."""
    rows = []
    for arch in archs:
        model = load_model(MODEL_DIR / BENCH_MODELS[arch])
        x = np.random.default_rng(0).random((model.config.channels, batch, tile, tile), dtype=np.float32)
        row = {"arch": arch, "model": BENCH_MODELS[arch], "tile": tile, "batch": batch}
        outs = {}
        for p in precisions:
            be = get_backend("cupy", p)
            row[f"w2x {p}"], outs[p] = w2x_seconds_per_mp(model, be, x, warmup, repeats)
            if stream:
                row[f"stream {p}"] = stream_seconds_per_mp(model, be, x, n_batches=4)
        if vs_torch:
            _cupy().get_default_memory_pool().free_all_blocks()   # hand CuPy's cached blocks to torch
            for tp, name in (("ieee", "torch fp32"), ("tf32", "torch tf32")):
                row[name], y = torch_seconds_per_mp(model, x, tp, warmup, repeats)
                if tp == "ieee" and "fp32" in outs:
                    row["torch maxdiff"] = float(np.abs(outs["fp32"] - y).max())
        rows.append(row)
    return rows


def parity_errors(precisions) -> list[dict]:
    """Largest |w2x - fixture| of every network fixture in each precision (the parity loss)."""
    manifest = json.loads((SHARED / "reference" / "manifest.json").read_text())
    rows = []
    for entry in manifest["network"]:
        ref = np.load(SHARED / "reference" / entry["file"])
        model = load_model(MODEL_DIR / entry["model"])
        row = {"fixture": entry["file"]}
        for p in precisions:
            row[p] = float(np.abs(model.forward(ref["input"], get_backend("cupy", p)) - ref["output"]).max())
        rows.append(row)
    return rows


def _verdicts(rows) -> list[str]:
    out = []
    for row in rows:
        base = row.get("torch fp32")
        for p, bar in TARGETS.items():
            if base and f"w2x {p}" in row and row["arch"] in TARGET_ARCHS:
                ratio = row[f"w2x {p}"] / base
                out.append(f"{'PASS' if ratio <= bar else 'FAIL'}  {row['arch']:9s} w2x {p} / torch fp32 "
                           f"= {ratio:.2f} (bar {bar})")
    return out


def _table(rows, keys) -> str:
    lines = ["  ".join(f"{k:>14.14s}" for k in keys)]
    for r in rows:
        lines.append("  ".join(f"{r[k]:14.4g}" if isinstance(r.get(k), float) else f"{str(r.get(k, '-')):>14.14s}"
                               for k in keys))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "tf32", "fp16"])
    ap.add_argument("--vs-torch", action="store_true", help="also time PyTorch CUDA on the same models")
    ap.add_argument("--stream", action="store_true", help="also time host-to-host streaming (w2x.stream)")
    ap.add_argument("--parity", action="store_true", help="largest error per precision on the fixtures")
    ap.add_argument("--arch", nargs="+", default=list(BENCH_MODELS), choices=list(BENCH_MODELS))
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE)
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", type=Path, help="write all figures to this file")
    args = ap.parse_args(argv)
    result = {}
    if args.parity:
        result["parity"] = parity_errors(args.precision)
        print("largest |w2x - fixture| per precision (fp32 must stay <= 1e-4):")
        print(_table(result["parity"], ["fixture", *args.precision]))
    rows = bench_models(args.precision, args.vs_torch, args.stream, args.tile, args.batch,
                        args.warmup, args.repeats, args.arch)
    result["speed"] = rows
    keys = ["arch", *(f"w2x {p}" for p in args.precision)]
    keys += [f"stream {p}" for p in args.precision] if args.stream else []
    keys += ["torch fp32", "torch tf32", "torch maxdiff"] if args.vs_torch else []
    print(f"seconds per output megapixel, {args.batch} tiles of {args.tile} px per forward:")
    print(_table(rows, keys))
    result["verdicts"] = _verdicts(rows)
    print("\n".join(result["verdicts"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
