#!/usr/bin/env python3
"""Float32 error of the Winograd forms F(2x2), F(4x4) and F(6x6, 3x3) (tooling, not inference):
how far each lands from a float64 convolution, per layer and through a whole network.

    python tools/winograd_error.py                       # vgg_7/photo 2x, lena.png
    python tools/winograd_error.py --model cunet/art/scale2.0x_model.json.gz --crop 96

Per layer: every 3x3 stride-1 layer of the model on the same random input in [0, 1] (the
range of the activations a network sees), through the numba kernel where Numba is installed,
else the reference ``ops.winograd_conv3x3``, against im2col + GEMM in float64.  Whole
network (vgg_7 only: a chain of 3x3 layers; upconv_7 ends in a transposed convolution): a
centred crop of the image through every layer, each run by the form under test, against the
whole chain in float64.
Max and RMS of the difference; ``w2x/nn/ops.py`` quotes the figures.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

from w2x import load_model  # noqa: E402  (after the path fix above)
from w2x.nn import ops  # noqa: E402

TILES = (2, 4, 6)
SLOPE = 0.1   # LeakyReLU between the layers of vgg_7 (w2x/nn/archs.py)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path,
                   default=Path(os.environ.get("W2X_MODEL_DIR", ROOT.parent / "shared" / "weights")))
    p.add_argument("--model", default="vgg_7/photo/scale2.0x_model.json.gz")
    p.add_argument("--image", type=Path, default=ROOT.parent / "shared" / "images" / "lena.png")
    p.add_argument("--crop", type=int, default=128, help="centred CROP x CROP input of the whole-network check")
    p.add_argument("--size", type=int, default=64, help="per-layer input SIZE x SIZE")
    return p.parse_args(argv)


def winograd(tile: int):
    """conv(x, w2d, c, bias, slope) by F(tile x tile, 3x3) in float32 as a network runs it:
    the numba kernel where it loads, else the reference; F(4x4) and F(6x6) channel-last
    (products (tiles, C) @ (C, OC)), F(2x2) channel-major."""
    try:
        from w2x.kernels.cpu_numba import winograd_conv3x3
    except ImportError:
        winograd_conv3x3 = ops.winograd_conv3x3
    last = tile != 2
    return lambda x, w2d, c, bias, slope: winograd_conv3x3(
        ops.to_channels_last(x) if last else x, ops.winograd_weight(w2d, c, tile, channels_last=last),
        bias, slope, channels_last=last)


def direct64(x, w2d, c, bias, slope):
    """The same layer as im2col + GEMM in float64."""
    _, n, h, w = x.shape
    y = w2d.astype(np.float64) @ ops.im2col(x.astype(np.float64), 3, 3, 1) + bias[:, None]  # (OC, N*OH*OW)
    if slope is not None:
        y = np.maximum(y, y * slope)
    return y.reshape(-1, n, h - 2, w - 2)                                                   # (OC, N, OH, OW)


def stats(got, want) -> str:
    e = got - want
    return f"max {np.abs(e).max():.1e}, RMS {np.sqrt(np.mean(e * e)):.1e}"


def main(argv=None) -> int:
    args = parse_args(argv)
    model = load_model(args.model_dir / args.model)
    convs = [(name, l) for name, l in model.layers.items()
             if getattr(l, "k", None) == 3 and getattr(l, "stride", None) == 1]
    rng = np.random.default_rng(0)
    print(f"# {args.model}: float32 Winograd against float64 im2col + GEMM")
    print("| layer | C -> OC | " + " | ".join(f"F({t}x{t})" for t in TILES) + " |")
    print("|---|---|" + "---|" * len(TILES))
    for name, l in convs:
        c = l.in_channels
        x = rng.random((c, 1, args.size, args.size), dtype=np.float32)
        want = direct64(x, l.w2d, c, l.bias, None)
        cells = [stats(winograd(t)(x, l.w2d, c, l.bias, None), want) for t in TILES]
        print(f"| {name} | {c} -> {l.out_channels} | " + " | ".join(cells) + " |")
    if len(convs) == len(model.layers):   # a chain of 3x3 layers: the whole network too
        from PIL import Image
        img = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32) / 255   # (H, W, 3)
        h, w = img.shape[:2]
        r, q = max(0, (h - args.crop) // 2), max(0, (w - args.crop) // 2)
        x0 = np.ascontiguousarray(img[r:r + args.crop, q:q + args.crop].transpose(2, 0, 1)[:, None])  # (3, 1, S, S)

        def chain(conv, x):
            for i, (_, l) in enumerate(convs):
                x = conv(x, l.w2d, l.in_channels, l.bias, SLOPE if i < len(convs) - 1 else None)
            return x

        want = chain(direct64, x0)
        print(f"\nwhole network on a {args.crop}-px crop of {args.image.name}: " + "; ".join(
            f"F({t}x{t}) {stats(chain(winograd(t), x0), want)}" for t in TILES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
