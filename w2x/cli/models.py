"""``w2x models list`` and ``w2x models download``: the model cache on the command line.

Fetching and checking is ``w2x.download``, the search path ``w2x.store``. An error is one
line on stderr (``w2x models: error: ...``) and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from w2x.download import DEFAULT_BASE_URL, download, style_files
from w2x.store import STYLES, cache_root, list_installed, search_dirs

PROG = "w2x models"


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``models list|download`` to the subcommands of the ``w2x`` parser."""
    p = commands.add_parser("models", prog=PROG,
                            description="List or download waifu2x models.")
    actions = p.add_subparsers(dest="models_command", required=True, metavar="{list,download}")
    # prog: errors read "w2x models: error: ..." whichever action they are about
    listing = actions.add_parser("list", prog=PROG, help="models found in $W2X_MODEL_DIR and the cache")
    listing.set_defaults(command=_list)
    fetch = actions.add_parser("download", prog=PROG, help="fetch the original models into the cache")
    fetch.add_argument("--style", choices=[*STYLES, "all"], default="art",
                       help="art: cunet/art; photo: upconv_7/photo + vgg_7/photo noise")
    fetch.add_argument("--base-url", default=DEFAULT_BASE_URL,
                       help="root of a copy of the nagadomi/waifu2x repository")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    fetch.set_defaults(command=_download)
    return p


def _list(args) -> int:
    installed = list_installed()
    for model in installed:
        print(f"{model.style_dir}/{model.name}\t{model.path}")
    if not installed:
        print(f"no models in {', '.join(map(str, search_dirs()))}; "
              f"run `w2x models download --style art` (or photo, all)")
    return 0


def _download(args) -> int:
    try:
        fetched = download(args.style, base_url=args.base_url, progress=not args.quiet)
    except (ValueError, OSError) as e:   # DownloadError is an OSError
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        present = len(style_files(args.style)) - len(fetched)
        print(f"{len(fetched)} downloaded, {present} already present, in {cache_root()}")
    return 0
