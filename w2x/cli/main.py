"""Command line: ``w2x -i IN... [-o OUT] [options]``, ``w2x models list|download``,
``w2x benchmark DIR``, ``w2x serve`` and ``w2x train`` (CLI stage).

One argparse parser: the conversion's options at the top, the ``models`` (``models.py``),
``benchmark`` (``psnr.py``), ``serve`` (``w2x/web/cli.py``), ``train`` (``train.py``) and
``visualize`` (``visualize.py``) subcommands below; with no
subcommand it converts (on a Dask cluster with ``--cluster``/``--chunk``). Inputs
and outputs are planned by ``batch.py``, sizes by ``anyscale.py``, progress by
``progress.py``; the spellings of the original and of waifu2x-ncnn-vulkan by
``spellings.py``; threads and devices by ``machine.py``. Options and defaults follow the
original ``th waifu2x.lua`` (waifu2x.lua:252-271) where it has them.

Exit codes: 0 all written or skipped, 1 some file failed (each reported, the run goes on),
2 the run could not start (bad option, no input, clashing or unwritable outputs, no
models), 130 interrupted. Errors are one line on stderr, ``w2x: error: ...`` (``w2x
models: error: ...``, ``w2x benchmark: error: ...`` for those commands).
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

from w2x import anyscale, pipeline, reconstruct
from w2x.cli import batch, machine, spellings
from w2x.cli import files
from w2x.distributed import cli as dcli          # imports no Dask
from w2x.cli.progress import PROGRESS_KINDS, make_reporter
from w2x.io import DEFAULT_MAX_PIXELS
from w2x.nn.backend import BACKENDS, PRECISIONS
from w2x.pipeline import MODES, Options
from w2x.store import STYLES, ModelNotFoundError

# The subcommands and their one-line help; each one's parser (and its modules: downloads,
# PSNR, training, the web server) is built only when it is on the command line.
SUBCOMMANDS = {
    "models": "list or download waifu2x models",
    "benchmark": "PSNR benchmark of the original's tools/benchmark.lua",
    "serve": "the waifu2x web page and API (w2x[web])",
    "train": "train or fine-tune a model (the original's train.lua recipe)",
    "visualize": "pictures of every layer's output for an image (for learners)",
}
COMMANDS_METAVAR = "{" + ",".join(SUBCOMMANDS) + "}"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130   # 130 = 128 + SIGINT
NO_DENOISE = -1               # waifu2x-ncnn-vulkan's -n -1: no denoising, i.e. -m scale
DEFAULT_NOISE_LEVEL = 1       # waifu2x.lua:261
ORIGINAL_TTA_LEVEL = 8        # the original's -tta 1 alone (-tta_level 8), ncnn's -x


class OptionError(Exception):
    """A command line that does not parse: ``prog`` and a one-line ``message``."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog, self.message = prog, message


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``OptionError`` instead of printing the usage and exiting."""

    def error(self, message):
        raise OptionError(self.prog, _did_you_mean(self, message))


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """Add "did you mean --x?" to an unrecognised option close to a known one."""
    if message.startswith(f"argument {COMMANDS_METAVAR}: invalid choice: "):   # not a command
        arg = message.split("invalid choice: ")[1].split(" (choose")[0]
        return (f"unexpected argument {arg}; give inputs with -i (w2x -i {arg.strip(chr(39))}) "
                f"or a command: {', '.join(SUBCOMMANDS)}")
    if not message.startswith("unrecognized arguments: "):
        return message
    for arg in message.removeprefix("unrecognized arguments: ").split():
        if arg.startswith("-"):
            return _unknown_option(parser, arg)
    return message


def _unknown_option(parser: argparse.ArgumentParser, arg: str) -> str:
    known = [s for a in parser._actions for s in a.option_strings]
    close = difflib.get_close_matches(arg.split("=")[0], known, n=1, cutoff=0.6)
    return f"unknown option {arg}" + (f"; did you mean {close[0]}?" if close else
                                      f"; see {parser.prog} --help")


def _subcommand_at(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Index of the subcommand in ``argv`` (``len(argv)`` if none): the first of
    ``SUBCOMMANDS`` that is not the value of an option before it (``-o models`` is a file)."""
    one_value = {s for a in parser._actions if a.nargs not in (0, "+", "*") for s in a.option_strings}
    many_values = {s for a in parser._actions if a.nargs in ("+", "*") for s in a.option_strings}
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] in SUBCOMMANDS:
            return i
        if argv[i] in many_values:                 # -i IN [IN ...]: values up to the next option
            i += 1
            while i < len(argv) and not argv[i].startswith("-"):
                i += 1
            continue
        i += 2 if argv[i] in one_value else 1
    return len(argv)


def _check_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Refuse an unknown ``--option`` before parsing: argparse would take its value for a
    subcommand and say "invalid choice" about the value instead."""
    known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    for arg in argv:
        if arg == "--":
            return
        name = arg.split("=")[0]
        if name.startswith("--") and not any(k.startswith(name) for k in known):
            raise OptionError(parser.prog, _unknown_option(parser, arg))


class _Version(argparse.Action):
    """``--version``: ``w2x X.Y.Z`` on stdout, the version read only then (w2x.version)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from w2x.version import __version__
        print(f"w2x {__version__}")
        parser.exit()


def _quality(text: str) -> int:
    q = int(text)
    if not 0 <= q <= 100:
        raise argparse.ArgumentTypeError(f"quality must be 0..100, got {q}")
    return q


def build_parser(subcommand: str | None = None) -> argparse.ArgumentParser:
    """The parser of the conversion's options, with ``subcommand``'s full parser (the
    others answer ``--help`` with their help line only)."""
    p = _Parser(
        prog="w2x", description="waifu2x: denoise and upscale images with the original models.",
        epilog="The original's spellings work too (-noise_level 1 -crop_size 128 -tta 1 ...), "
               "and waifu2x-ncnn-vulkan's -t -x -j -g -v -f -n -1. "
               "Exit codes: 0 ok, 1 some file failed, 2 usage error.")
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    io_ = p.add_argument_group("files")
    io_.add_argument("-i", "--input", nargs="+", action="extend", default=[], metavar="IN",
                     help="image files, directories or glob patterns")
    io_.add_argument("-l", "--list", metavar="LIST", help="text file of input paths, one a line")
    io_.add_argument("-o", "--output", metavar="OUT",
                     help="file, directory (mirrors the input tree) or template with %%s "
                          "(input name) / %%d (number); default <input>_<mode>.png beside it")
    io_.add_argument("-r", "--recursive", action="store_true", help="include subdirectories")
    io_.add_argument("-f", "--format", choices=files.OUTPUT_FORMATS, default=files.DEFAULT_FORMAT,
                     help="format of generated output names (default png); -o FILE.ext wins")
    existing = io_.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="skip outputs that exist (the original's -resume 1)")
    existing.add_argument("--no-overwrite", action="store_true",
                          help="fail files whose output exists (default: replace atomically)")
    io_.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                     help=f"refuse larger inputs (default {DEFAULT_MAX_PIXELS}; 0 = no limit)")

    conv = p.add_argument_group("conversion")
    conv.add_argument("-m", "--mode", choices=MODES, default="noise_scale", help="default: noise_scale")
    conv.add_argument("-n", "--noise-level", type=int, choices=(NO_DENOISE, 0, 1, 2, 3),
                      help=f"default: {DEFAULT_NOISE_LEVEL}; -1: no denoising (-m scale)")
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
    conv.add_argument("-t", "--tile-size", type=int, default=reconstruct.DEFAULT_TILE_SIZE,
                      help="input tile size incl. context (default 256; cunet snaps to its valid sizes)")
    conv.add_argument("--batch-size", type=int, default=None,
                      help="tiles per forward (default: as many as fit on the GPU, 1 on the CPU)")
    conv.add_argument("--tta-level", type=int, choices=sorted(reconstruct.TTA_LEVELS),
                      help="test-time augmentation: average of 1, 2, 4 or 8 flips (default 1 = off)")
    conv.add_argument("-x", dest="tta_level", action="store_const", const=ORIGINAL_TTA_LEVEL,
                      help=f"TTA level {ORIGINAL_TTA_LEVEL} (waifu2x-ncnn-vulkan's -x)")
    conv.add_argument("--tta", type=int, choices=(0, 1), help=argparse.SUPPRESS)  # -tta 0|1
    conv.add_argument("--backend", choices=("auto",) + BACKENDS,
                      default=os.environ.get("W2X_BACKEND", "auto"), help="default: auto (or $W2X_BACKEND)")
    conv.add_argument("--precision", choices=PRECISIONS, default="fp32",
                      help="GEMM precision on the GPU: fp32 (default, exact parity), tf32 or fp16")
    conv.add_argument("-g", "--gpu", type=int, metavar="N",
                      help="CUDA device N (the cupy backend); -1: the CPU")
    conv.add_argument("-j", "--threads", type=spellings.thread_count, metavar="N",
                      help="CPU threads for BLAS and Numba (also ncnn's load:proc:save form)")

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
                     help="no bars, no per-file lines, no summary; errors only (the original's -q 1)")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="also say which model files and backend the run uses")

    dcli.add_arguments(p.add_argument_group("cluster (Dask; pip install 'w2x[dask]')"))

    commands = p.add_subparsers(dest="subcommand", metavar=COMMANDS_METAVAR,
                                parser_class=_Parser)
    for name, line in SUBCOMMANDS.items():
        if name == subcommand:
            _add_subcommand(commands, name)
        else:
            commands.add_parser(name, help=line)
    return p


def _add_subcommand(commands, name: str) -> None:
    if name == "models":
        from w2x.cli import models
        models.add_parser(commands)
    elif name == "benchmark":
        from w2x.cli import psnr
        psnr.add_parser(commands)
    elif name == "train":
        from w2x.cli import train
        train.add_parser(commands)
    elif name == "visualize":
        from w2x.cli import visualize
        visualize.add_parser(commands)
    else:
        from w2x.web import cli as web_cli               # imports no Starlette
        serve = commands.add_parser("serve", prog="w2x serve", help=SUBCOMMANDS["serve"],
                                    description="Serve the waifu2x web page and its API "
                                                "(pip install 'w2x[web]').")
        web_cli.add_arguments(serve)
        serve.set_defaults(command=web_cli.run)


def _conversion(args) -> batch.Conversion:
    if args.scale is not None and (args.width or args.height):
        raise files.UsageError("give either --scale or --width/--height, not both")
    if args.max_pixels < 0:
        raise files.UsageError(f"--max-pixels must be 0 (no limit) or more, got {args.max_pixels}")
    mode, noise_level = args.mode, args.noise_level
    if noise_level == NO_DENOISE:
        if mode == "noise":
            raise files.UsageError("-n -1 means no denoising, which -m noise cannot do; "
                                   "give -n 0..3")
        mode = "scale"
    scale = args.scale if args.scale is not None else (1.0 if mode == "noise" else 2.0)
    tta_level = args.tta_level
    if args.tta is not None:                       # the original's -tta 0|1 [-tta_level N]
        tta_level = (tta_level or ORIGINAL_TTA_LEVEL) if args.tta else 1
    opts = Options(mode=mode,
                   noise_level=DEFAULT_NOISE_LEVEL if noise_level in (None, NO_DENOISE) else noise_level,
                   style=args.style, model_dir=args.model_dir, tile_size=args.tile_size,
                   tta_level=tta_level or 1, backend=args.backend, precision=args.precision,
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


def _say(line: str) -> None:
    print(f"w2x: {line}", file=sys.stderr)


def _convert(args) -> int:
    """The default command: convert the inputs; returns the exit code."""
    if args.tile_size == 0:                        # waifu2x-ncnn-vulkan's -t 0: automatic
        args.tile_size = reconstruct.DEFAULT_TILE_SIZE
    try:
        args.backend = machine.choose_device(args.gpu, args.backend)
        conv = _conversion(args)
        sources = files.expand_inputs(args.input, list_file=args.list, recursive=args.recursive,
                                      exclude=None if args.output is None else Path(args.output))
        jobs = files.plan_jobs(sources, args.output, mode=conv.opts.mode, fmt=args.format)
        files.prepare_output_dirs(jobs)
        backend, note = machine.resolve_backend(conv.opts.backend, conv.opts.precision)
        machine.start_numba(backend)
        machine.reuse_freed_memory()
        plans = _load_models(conv.opts)
        if plans is None:
            return EXIT_USAGE
        notes = [note] if note else []
        notes += dict.fromkeys(n for plan in plans.values() for n in plan.notes)   # once each
        for line in [] if args.quiet else notes:
            _say(f"note: {line}")
        paths = machine.model_paths(plans)
        if args.verbose:
            _say(f"backend {backend}; models {', '.join(paths)}")
        how = f"{machine.model_label(paths)}, {backend}"
        reporter = make_reporter(args.progress, quiet=args.quiet, how=how)
        existing = "skip" if args.resume else "refuse" if args.no_overwrite else "replace"
        if dcli.wanted(args):                      # --cluster or --chunk: the batch on Dask
            dcli.check_jobs(jobs, conv, args)
            summary = dcli.run_batch(jobs, conv, reporter, existing, args, plans=plans)
        else:
            with machine.threads(args.threads, note=None if args.quiet else _say):
                summary = batch.run_jobs(jobs, conv, reporter, existing=existing, plans=plans)
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        at = _subcommand_at(parser, argv)          # the conversion's options come before it
        if at < len(argv):
            parser = build_parser(argv[at])
        head = spellings.translate(argv[:at])
        _check_options(parser, head)
        args = parser.parse_args(head + argv[at:])
    except spellings.SpellingError as e:
        print(f"w2x: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OptionError as e:
        print(f"{e.prog}: error: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:                        # --help, --version
        return e.code if isinstance(e.code, int) else EXIT_OK
    command = getattr(args, "command", None)
    return command(args) if command is not None else _convert(args)
