"""Command line: ``w2x -i IN -o OUT [-m noise|scale|noise_scale] [-n N] ...``.

Options and defaults follow the original ``th waifu2x.lua`` (waifu2x.lua:252-271); ``w2x
models ...`` manages the model files.  Exceptions become one line on stderr and exit code 2;
nothing is left half-written (``io.write_image`` writes a temporary file, then renames).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import reconstruct
from .backend import BACKENDS
from .pipeline import MODES, Options, process

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="w2x", description="waifu2x: denoise and 2x-upscale images with the original models.",
        epilog="Models: `w2x models list`, `w2x models download --style art|photo|all`.")
    p.add_argument("-i", "--input", required=True, help="input image")
    p.add_argument("-o", "--output", help="output image (default: <input>_<mode>.png, as the original)")
    p.add_argument("-m", "--mode", choices=MODES, default="noise_scale", help="default: noise_scale")
    p.add_argument("-n", "--noise-level", type=int, choices=(0, 1, 2, 3), default=1, help="default: 1")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--style", default="art",
                     help="art (cunet/art, default) or photo (upconv_7/photo; vgg_7/photo for noise), "
                          "or an <arch>/<style> folder such as vgg_7/art")
    src.add_argument("--model-dir", help="a folder holding the JSON models (the original's -model_dir)")
    p.add_argument("--tile-size", type=int, default=reconstruct.DEFAULT_TILE_SIZE,
                   help="input tile size incl. context (default 256; cunet snaps to its valid sizes)")
    p.add_argument("--batch-size", type=int, default=reconstruct.DEFAULT_BATCH_SIZE, help="tiles per forward")
    p.add_argument("--tta-level", type=int, choices=sorted(reconstruct.TTA_LEVELS), default=1,
                   help="test-time augmentation: average of 1, 2, 4 or 8 flips (default 1 = off)")
    p.add_argument("--depth", type=int, choices=(8, 16), default=8, help="output bits per sample")
    p.add_argument("--backend", choices=("auto",) + BACKENDS,
                   default=os.environ.get("W2X_BACKEND", "auto"), help="default: auto (or $W2X_BACKEND)")
    return p


def default_output(input_path: str, mode: str) -> str:
    """``<dir>/<basename>_<mode>.png`` (waifu2x.lua:19-20)."""
    src = Path(input_path)
    return str(src.with_name(f"{src.stem}_{mode}.png"))


def convert_file(src: str, dst: str, opts: Options, depth: int = 8) -> None:
    """Read, process, write one file (atomically)."""
    from .io import read_image, write_image
    pic = read_image(src)
    rgb, alpha = process(pic.rgb, pic.alpha, opts)
    write_image(dst, rgb, alpha, pic.meta, depth=depth)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["models"]:
        from .download import models_main
        return models_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        opts = Options(mode=args.mode, noise_level=args.noise_level, style=args.style,
                       model_dir=args.model_dir, tile_size=args.tile_size,
                       tta_level=args.tta_level, backend=args.backend, batch_size=args.batch_size)
        dst = args.output or default_output(args.input, args.mode)
        if Path(dst).resolve() == Path(args.input).resolve():
            raise ValueError(f"output {dst} is the input itself; choose another -o")
        convert_file(args.input, dst, opts, args.depth)
    except KeyboardInterrupt:
        print("w2x: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError, RuntimeError) as e:
        print(f"w2x: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
