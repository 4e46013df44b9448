"""``w2x benchmark DIR``: the PSNR benchmark on the command line (CLI stage).

Options and output of the original's ``tools/benchmark.lua -filter Catrom -color y
-range_bug 1``; the protocol itself is ``w2x.psnr``. Prints a markdown table on stdout; an
error is one line on stderr (``w2x benchmark: error: ...``) and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from w2x import psnr
from w2x.nn.backend import BACKENDS, BackendUnavailableError
from w2x.resize import FILTERS

PROG = "w2x benchmark"


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``benchmark`` to the subcommands of the ``w2x`` parser."""
    p = commands.add_parser(
        "benchmark", prog=PROG,
        description="PSNR benchmark as the original's tools/benchmark.lua "
                    "-filter Catrom -color y -range_bug 1 (prints a markdown table).")
    p.add_argument("dataset_dir", help="folder of ground-truth images (e.g. ../shared/datasets/BSD100)")
    p.add_argument("--model-dir", help="folder holding scale2.0x_model.json[.gz] / noise{N}_model.json[.gz]")
    p.add_argument("--style", help="model set in the search path instead of --model-dir: "
                                   "art, photo or an <arch>/<style> folder such as vgg_7/photo")
    p.add_argument("--method", choices=sorted(psnr.METHODS), default="scale")
    p.add_argument("--filter", choices=sorted(FILTERS), default=psnr.DOWNSCALE_FILTER,
                   help="GraphicsMagick filter for the 0.5x input of --method scale")
    p.add_argument("--noise-level", type=int, default=1, choices=(0, 1, 2, 3))
    p.add_argument("--jpeg-quality", type=int, default=psnr.JpegSettings.quality)
    p.add_argument("--jpeg-times", type=int, default=psnr.JpegSettings.times)
    p.add_argument("--jpeg-quality-down", type=int, default=psnr.JpegSettings.quality_down)
    p.add_argument("--tta-level", type=int, choices=psnr.TTA_LEVELS, default=1)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS)
    p.add_argument("--bicubic-only", action="store_true", help="score the baseline only (no model)")
    p.add_argument("--csv", help="write per-image figures to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(command=run)
    return p


def run(args) -> int:
    """Run the benchmark the parsed options ask for; returns the exit code."""
    if not args.bicubic_only and not (args.model_dir or args.style):
        return _fail("give --model-dir or --style, or --bicubic-only to score the baseline alone")
    try:
        jpeg = psnr.JpegSettings(args.jpeg_quality, args.jpeg_times, args.jpeg_quality_down)
        model_fn, model_name = (None, "-") if args.bicubic_only else psnr.model_step(
            args.method, args.noise_level, style=args.style, model_dir=args.model_dir,
            tile_size=args.tile_size, tta_level=args.tta_level, backend=args.backend)
        t0 = time.perf_counter()
        with tqdm(desc=Path(args.dataset_dir).name, unit="img", file=sys.stderr,
                  disable=args.quiet) as bar:
            scores = psnr.run(args.dataset_dir, args.method, model_fn, jpeg, args.filter,
                              progress=lambda done, total: _advance(bar, done, total))
        total = time.perf_counter() - t0
        if args.csv:
            psnr.write_csv(args.csv, scores)
    except (OSError, ValueError, BackendUnavailableError) as e:
        return _fail(str(e))
    dataset = Path(args.dataset_dir).resolve().name
    tta = args.tta_level if model_fn else "-"
    print(psnr.markdown_table(dataset, args.method, model_name, tta, scores, total))
    return 0


def _advance(bar: tqdm, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2
