#!/usr/bin/env python3
"""PSNR benchmark as the original's tools/benchmark.lua: ``w2x benchmark`` from a checkout.

    python tools/psnr.py ../shared/datasets/BSD100 --bicubic-only
    python tools/psnr.py ../shared/datasets/BSD100 --style vgg_7/photo --tta-level 8

The protocol is ``w2x.psnr``; the options are ``w2x benchmark --help``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from w2x.cli.main import main  # noqa: E402  (after the path fix above)

if __name__ == "__main__":
    raise SystemExit(main(["benchmark", *sys.argv[1:]]))
