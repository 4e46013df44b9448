"""Command line: ``w2x -i IN... [-o OUT] [options]`` and ``w2x models list|download``.

Argument parsing and dispatch only: inputs and outputs are planned by ``batch.py``, sizes by
``anyscale.py``, progress by ``progress.py``. Options and defaults follow the original
``th waifu2x.lua`` (waifu2x.lua:252-271) where it has them. Exit codes: 0 all written or
skipped, 1 some file failed (each reported, the run goes on), 2 the run could not start
(bad option, no input, clashing or unwritable outputs, no models), 130 interrupted. Errors
are one line on stderr, ``w2x: error: ...``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from w2x import anyscale, pipeline, reconstruct

from w2x.cli import batch
from w2x.nn.backend import BACKENDS, PRECISIONS
from w2x.io import DEFAULT_MAX_PIXELS
from w2x.store import STYLES, ModelNotFoundError
from w2x.pipeline import MODES, Options
from w2x.cli.progress import PROGRESS_KINDS, make_reporter

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130   # 130 = 128 + SIGINT


def _quality(text: str) -> int:
    q = int(text)
    if not 0 <= q <= 100:
        raise argparse.ArgumentTypeError(f"quality must be 0..100, got {q}")
    return q


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="w2x", description="waifu2x: denoise and upscale images with the original models.",
        epilog="Models: `w2x models list`, `w2x models download --style art|photo|all`. PSNR: `w2x benchmark DIR`. "
               "Exit codes: 0 ok, 1 some file failed, 2 usage error.")
    io_ = p.add_argument_group("files")
    io_.add_argument("-i", "--input", nargs="+", action="extend", default=[], metavar="IN",
                     help="image files, directories or glob patterns")
    io_.add_argument("-l", "--list", metavar="LIST", help="text file of input paths, one a line")
    io_.add_argument("-o", "--output", metavar="OUT",
                     help="file, directory (mirrors the input tree) or template with %%s "
                          "(input name) / %%d (number); default <input>_<mode>.png beside it")
    io_.add_argument("-r", "--recursive", action="store_true", help="include subdirectories")
    io_.add_argument("-f", "--format", choices=batch.OUTPUT_FORMATS, default=batch.DEFAULT_FORMAT,
                     help="format of generated output names (default png); -o FILE.ext wins")
    existing = io_.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="skip outputs that exist")
    existing.add_argument("--no-overwrite", action="store_true",
                          help="fail files whose output exists (default: replace atomically)")
    io_.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                     help=f"refuse larger inputs (default {DEFAULT_MAX_PIXELS}; 0 = no limit)")

    conv = p.add_argument_group("conversion")
    conv.add_argument("-m", "--mode", choices=MODES, default="noise_scale", help="default: noise_scale")
    conv.add_argument("-n", "--noise-level", type=int, choices=(0, 1, 2, 3), default=1, help="default: 1")
    src = conv.add_mutually_exclusive_group()
    src.add_argument("--style", default="art",
                     help="art (cunet/art, default) or photo (upconv_7/photo; vgg_7/photo for noise), "
                          "or an <arch>/<style> folder such as vgg_7/art")
    src.add_argument("--model-dir", help="a folder holding the JSON models (the original's -model_dir)")
    conv.add_argument("-s", "--scale", type=float,
                      help="any factor > 0: 2x passes, then a downscale (default 2; 1 for -m noise)")
    conv.add_argument("--width", type=int, help="output width in pixels, aspect kept")
    conv.add_argument("--height", type=int, help="output height; with --width: fit inside both")
    conv.add_argument("--downscale-filter", choices=anyscale.FILTERS, default=anyscale.DEFAULT_FILTER,
                      help="filter from the last 2x pass to the target size (default lanczos)")
    conv.add_argument("--tile-size", type=int, default=reconstruct.DEFAULT_TILE_SIZE,
                      help="input tile size incl. context (default 256; cunet snaps to its valid sizes)")
    conv.add_argument("--batch-size", type=int, default=None,
                      help="tiles per forward (default: as many as fit on the GPU, 1 on the CPU)")
    conv.add_argument("--tta-level", type=int, choices=sorted(reconstruct.TTA_LEVELS), default=1,
                      help="test-time augmentation: average of 1, 2, 4 or 8 flips (default 1 = off)")
    conv.add_argument("--backend", choices=("auto",) + BACKENDS,
                      default=os.environ.get("W2X_BACKEND", "auto"), help="default: auto (or $W2X_BACKEND)")
    conv.add_argument("--precision", choices=PRECISIONS, default="fp32",
                      help="GEMM precision on the GPU: fp32 (default, exact parity), tf32 or fp16")

    out = p.add_argument_group("output")
    out.add_argument("--depth", type=int, choices=(8, 16), default=8, help="bits per sample (16: PNG only)")
    out.add_argument("--quality", type=_quality,
                     help="JPEG quality (default 95) or lossy WebP quality (WebP is lossless without it)")
    out.add_argument("--background", metavar="COLOR",
                     help="flatten transparency onto COLOR (white, #rrggbb) for JPEG/BMP output; "
                          "without it such output of a transparent image fails")
    out.add_argument("--progress", choices=PROGRESS_KINDS, default="auto",
                     help="auto (bars when stderr is a terminal), bar, json (events on stdout), none")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="no bars and no summary; errors only (the original's -q)")
    return p


def _conversion(args) -> batch.Conversion:
    if args.scale is not None and (args.width or args.height):
        raise batch.UsageError("give either --scale or --width/--height, not both")
    if args.max_pixels < 0:
        raise batch.UsageError(f"--max-pixels must be 0 (no limit) or more, got {args.max_pixels}")
    scale = args.scale if args.scale is not None else (1.0 if args.mode == "noise" else 2.0)
    opts = Options(mode=args.mode, noise_level=args.noise_level, style=args.style,
                   model_dir=args.model_dir, tile_size=args.tile_size, tta_level=args.tta_level,
                   backend=args.backend, precision=args.precision,
                   batch_size=args.batch_size)
    return batch.Conversion(opts, anyscale.Target(scale, args.width, args.height),
                            args.downscale_filter, args.depth, args.quality, args.background,
                            args.max_pixels or None)


def _load_models(opts: Options):
    """The run's models, or None after saying how to get them (offering a download)."""
    try:
        return pipeline.resolve_plans(opts)
    except ModelNotFoundError as e:
        if opts.model_dir is not None or opts.style not in STYLES:
            print(f"w2x: error: {e}", file=sys.stderr)
            return None
    from w2x.download import offer_download
    if offer_download(opts.style, sys.stdin, sys.stderr):
        return pipeline.resolve_plans(opts)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["models"]:
        from w2x.download import models_main
        return models_main(argv[1:])
    if argv[:1] == ["benchmark"]:
        from w2x.psnr import main as benchmark_main
        return benchmark_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)     # prints usage and exits 2 on a bad option
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        conv = _conversion(args)
        sources = batch.expand_inputs(args.input, list_file=args.list, recursive=args.recursive,
                                      exclude=None if args.output is None else Path(args.output))
        jobs = batch.plan_jobs(sources, args.output, mode=args.mode, fmt=args.format)
        batch.prepare_output_dirs(jobs)
        plans = _load_models(conv.opts)
        if plans is None:
            return EXIT_USAGE
        summary = batch.run_jobs(jobs, conv, make_reporter(args.progress, quiet=args.quiet),
                                 existing="skip" if args.resume else
                                 "refuse" if args.no_overwrite else "replace", plans=plans)
    except KeyboardInterrupt:
        print("w2x: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError, RuntimeError) as e:
        print(f"w2x: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not summary.failed:
        return EXIT_OK
    # one input that failed is an error of the run (as the original's); in a batch, the
    # others went on, so the run "partly failed"
    return EXIT_USAGE if len(jobs) == 1 else EXIT_FAILED
