"""The option spellings of the original and of waifu2x-ncnn-vulkan (CLI stage, before parsing).

The original ``th waifu2x.lua`` takes torch ``CmdLine`` single-dash long names
(waifu2x.lua:252-271, reference §4.1): ``-noise_level 1``, ``-crop_size 128``, ``-tta 1``.
argparse would read ``-noise_level`` as ``-n oise_level``, so ``translate`` rewrites those
names into w2x's before parsing. waifu2x-ncnn-vulkan's short options (reference §4.4) that
do not clash are real options of the parser (``-t -x -j -g -v -f``, ``-n -1``); its ``-m
models-cunet`` (a model folder, where w2x's ``-m`` is the mode) gets a one-line hint.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from w2x.pipeline import MODES

# the original's name -> w2x's (the value follows unchanged)
ORIGINAL_NAMES = {
    "-noise_level": "--noise-level", "-model_dir": "--model-dir", "-crop_size": "--tile-size",
    "-batch_size": "--batch-size", "-tta_level": "--tta-level", "-depth": "--depth",
    "-scale": "--scale", "-method": "--mode", "-tta": "--tta",
}
# the original's 0|1 switches -> w2x's flags
ORIGINAL_SWITCHES = {"-resume": "--resume", "-q": "--quiet"}
ORIGINAL_THREADS = "-thread"          # -thread N; -1 (its default) = as many as the machine has


class SpellingError(ValueError):
    """A foreign spelling that cannot be translated (one line saying what to write)."""


def translate(argv: list[str]) -> list[str]:
    """Rewrite the original's single-dash options into w2x's; everything else is kept.

    >>> translate(["-i", "a.png", "-noise_level", "2", "-tta", "1", "-resume", "1"])
    ['-i', 'a.png', '--noise-level', '2', '--tta', '1', '--resume']
    """
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return out + argv[i:]
        name, eq, value = arg.partition("=")
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if name in ORIGINAL_NAMES:
            out += [ORIGINAL_NAMES[name]] + ([value] if eq else [])
        elif name in ORIGINAL_SWITCHES:
            if not eq and nxt in ("0", "1"):
                value, i = nxt, i + 1
            if value not in ("0",):
                out.append(ORIGINAL_SWITCHES[name])      # -q alone is w2x's own -q
        elif name == ORIGINAL_THREADS:
            if not eq:
                value, i = (nxt or ""), i + 1
            if value != "-1":
                out += ["--threads", value]
        elif arg == "-m" and nxt is not None and nxt not in MODES and _is_model_folder(nxt):
            raise SpellingError(
                f"-m {nxt}: -m is the mode here ({', '.join(MODES)}); for waifu2x-ncnn-vulkan's "
                "model folder write --style art (models-cunet), --style photo "
                "(models-upconv_7_photo) or --model-dir DIR")
        elif arg in ("-g", "--gpu", "-t", "--tile-size") and nxt is not None and "," in nxt:
            raise SpellingError(f"{arg} {nxt}: one value, not one per GPU; w2x runs on one "
                                f"device (e.g. {arg} {nxt.split(',')[0]})")
        else:
            out.append(arg)
        i += 1
    return out


def _is_model_folder(value: str) -> bool:
    return value.startswith("models") or "/" in value or "\\" in value or Path(value).is_dir()


def thread_count(text: str) -> int:
    """``--threads N``, or waifu2x-ncnn-vulkan's ``-j load:proc:save``: its proc count."""
    parts = text.split(":")
    if len(parts) not in (1, 3) or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected a number of threads (or load:proc:save "
                                         f"such as 1:2:2), got {text!r}")
    n = int(parts[0] if len(parts) == 1 else parts[1])
    if n < 1:
        raise argparse.ArgumentTypeError(f"threads must be 1 or more, got {n}")
    return n
