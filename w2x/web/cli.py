"""``w2x serve``: options and the uvicorn runner (the command line of the web stage).

The merge hooks ``add_arguments`` and ``run`` into ``w2x serve``; ``python -m w2x.web``
runs ``main``. Defaults are the original web server's (web.lua:27-39): port 8812, 5 MiB
bodies, 3000^2 / 1500^2 pixels; 0 turns a limit off. Exit codes: 0 stopped cleanly,
2 bad option or missing dependency.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from w2x.web.limits import MIB

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8812          # web.lua -port
EXIT_OK, EXIT_USAGE = 0, 2


def _style(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=ARCH/STYLE such as art=upconv_7/art, got {text!r}")
    return name, folder


def _non_negative(kind):
    def parse(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected 0 or more, got {text}")
        return value
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``w2x serve`` options."""
    net = p.add_argument_group("server")
    net.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    net.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    net.add_argument("--workers", type=int, default=1,
                     help="images converted at the same time (default 1)")
    net.add_argument("--queue", type=_non_negative(int), default=16,
                     help="images waiting beyond those; one more gets 503 (default 16)")
    net.add_argument("--allow-url", action="store_true",
                     help="accept a 'url' field and fetch it (public http(s) addresses only)")
    net.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    lim = p.add_argument_group("limits (0 = none)")
    lim.add_argument("--max-body", type=_non_negative(int), default=5 * MIB,
                     help="request body in bytes (default 5 MiB)")
    lim.add_argument("--max-noise-pixels", type=_non_negative(int), default=3000 * 3000,
                     help="input pixels for noise reduction only (default 3000x3000)")
    lim.add_argument("--max-scale-pixels", type=_non_negative(int), default=1500 * 1500,
                     help="input pixels when upscaling (default 1500x1500; /4 for scale 4)")
    lim.add_argument("--cache-mb", type=_non_negative(int), default=256,
                     help="result cache size in MiB (default 256)")
    lim.add_argument("--cache-ttl", type=_non_negative(float), default=3600,
                     help="seconds a cached result is kept (default 3600)")
    conv = p.add_argument_group("conversion")
    conv.add_argument("--style", action="append", type=_style, default=[], metavar="NAME=DIR",
                      help="the model folder of a style, e.g. art=upconv_7/art (default "
                           "art=cunet/art, photo=upconv_7/photo)")
    conv.add_argument("--backend", default=os.environ.get("W2X_BACKEND", "auto"),
                      help="numpy | numba | cupy | auto (default; or $W2X_BACKEND)")
    conv.add_argument("--tile-size", type=int, default=None, help="input tile size (default 256)")


def config_from_args(args):
    from w2x.store import STYLES
    from w2x.web.app import ServerConfig
    from w2x.web.limits import Limits
    if args.workers < 1:
        raise ValueError(f"--workers must be 1 or more, got {args.workers}")
    return ServerConfig(
        limits=Limits(args.max_body, args.max_noise_pixels, args.max_scale_pixels),
        workers=args.workers, max_queued=args.queue, cache_bytes=args.cache_mb * MIB,
        cache_ttl=args.cache_ttl, styles={**STYLES, **dict(args.style)}, backend=args.backend,
        tile_size=args.tile_size, allow_url=args.allow_url)


def run(args) -> int:
    """Serve until interrupted."""
    try:
        import uvicorn
        from w2x.web.app import create_app
    except ImportError as e:
        print(f"w2x: error: the web server needs its extra ({e.name} is missing); "
              "run: pip install 'w2x[web]'", file=sys.stderr)
        return EXIT_USAGE
    try:
        app = create_app(config_from_args(args))
    except ValueError as e:
        print(f"w2x: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    print(f"w2x: serving on http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level=args.log_level)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="w2x serve", description="The waifu2x web page and API.")
    add_arguments(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    return run(args)
