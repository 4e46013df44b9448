"""``w2x visualize``: every layer's output for one image as PNG grids (CLI stage; the arrays
come from ``w2x.visualize``), as the original's ``tools/visualize_layer_output.lua``.

Writes into ``-o DIR``: ``layer-00-input.png`` (the network input itself, in colour for an
RGB model, as the original's ``layer-0.png``), ``layer-NN-<name>.png`` for each layer in the
order the graph runs them, ``filters.png`` (the first layer's weights) and ``im2col.png``
(the im2col matrix of a 6x6 patch of the input, each value a block of pixels).  Every
option is checked before the network runs; an error is one line on stderr
(``w2x visualize: error: ...``) and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from w2x import visualize
from w2x.api import load_model
from w2x.atomic import replacing
from w2x.io import read_image
from w2x.nn.backend import BACKENDS, get_backend
from w2x.nn.errors import BackendUnavailableError
from w2x.store import ModelNotFoundError

PROG = "w2x visualize"
DEFAULT_MODEL = "upconv_7/photo/scale2.0x"    # bundled, so the command works on a fresh clone
IM2COL_PATCH = 6                              # a 6x6 patch: 16 windows of 3x3
IM2COL_ENLARGE = 12                           # px per matrix entry in im2col.png
EXIT_USAGE = 2


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``visualize`` to the subcommands of the ``w2x`` parser."""
    p = commands.add_parser(
        "visualize", prog=PROG,
        description="Save each layer's output for one image as a grid of feature maps, the first "
                    "layer's filters, and the im2col matrix of a small patch (docs/how-it-works.md).")
    p.add_argument("-i", "--input", required=True, help="an image of at most 512 px a side")
    p.add_argument("-o", "--output", default="layer_outputs", help="folder for the PNGs (default layer_outputs)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a JSON model file or a name <arch>/<style>/<file> (default {DEFAULT_MODEL})")
    p.add_argument("--patch-at", type=int, nargs=2, metavar=("ROW", "COL"),
                   help="top-left corner of the im2col patch in the network input (default: the centre)")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="default: numpy (the reference)")
    p.set_defaults(command=run)
    return p


def run(args) -> int:
    try:
        model = _model(args.model)
        image = read_image(args.input).rgb                             # (3, H, W) in [0, 1]
        x = visualize.network_input(model, image)                      # refuses a large image
        patch_at = patch_corner(x.shape, args.patch_at)
        be = get_backend(args.backend)
        out = output_folder(args.output)
        outputs = visualize.layer_outputs(model, image, be)
        written = write_pictures(out, model, outputs, patch_at)
    except (OSError, ValueError, BackendUnavailableError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{PROG}: {len(written)} pictures in {out}", file=sys.stderr)
    return 0


def _model(name: str):
    """``load_model``, with a not-found message that names what this command accepts."""
    try:
        return load_model(name)
    except ModelNotFoundError:
        raise ModelNotFoundError(
            f"--model {name}: no such model in $W2X_MODEL_DIR, the download cache or the bundled "
            "weights/; give a JSON model file, or a name that `w2x models list` shows, such as "
            "vgg_7/photo/noise1") from None


def patch_corner(input_shape: tuple, patch_at=None) -> tuple[int, int]:
    """(row, col) of the im2col patch in the network input of shape (C, H, W): ``patch_at``,
    or the centre when None; a ValueError that gives the valid ranges when it does not fit."""
    h, w = input_shape[1:]
    if patch_at is None:
        return (h - IM2COL_PATCH) // 2, (w - IM2COL_PATCH) // 2
    row, col = patch_at
    if not (0 <= row <= h - IM2COL_PATCH and 0 <= col <= w - IM2COL_PATCH):
        raise ValueError(f"--patch-at {row} {col}: the {IM2COL_PATCH}x{IM2COL_PATCH} patch must lie in "
                         f"the network input, {h} rows x {w} columns (the image edge-padded); give "
                         f"ROW 0..{h - IM2COL_PATCH} and COL 0..{w - IM2COL_PATCH}")
    return row, col


def output_folder(path: str) -> Path:
    """``-o``: the folder, created if missing; a ValueError when a file is in the way."""
    out = Path(path)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(f"-o {path}: {p} is a file; give a folder for the pictures")
    out.mkdir(parents=True, exist_ok=True)
    return out


def picture_names(outputs: dict) -> list[str]:
    """``layer-NN-<name>.png`` for each entry of ``visualize.layer_outputs``, in order."""
    return [f"layer-{i:02d}-{name}.png" for i, name in enumerate(outputs)]


def write_pictures(out: Path, model, outputs: dict, patch_at=None) -> list[Path]:
    """Write every picture into ``out``; returns their paths.  ``patch_at``: (row, col) of the
    im2col patch in the network input, None for the centre."""
    x = outputs[visualize.INPUT_NAME]
    patch_at = patch_corner(x.shape, patch_at)
    paths = []
    for file, (name, maps) in zip(picture_names(outputs), outputs.items()):
        if name == visualize.INPUT_NAME:      # the image itself: RGB (3, H, W) or luma (1, H, W)
            paths.append(save_png(out / file, maps if maps.shape[0] == 3 else maps[0]))
        else:
            paths.append(save_png(out / file, visualize.grid(maps)))
    paths.append(save_png(out / "filters.png", visualize.grid(visualize.filter_maps(model), symmetric=True)))
    cols = visualize.im2col_matrix(x, *patch_at, size=IM2COL_PATCH)
    lo, hi = cols.min(), cols.max()
    cols = (cols - lo) / (hi - lo) if hi > lo else np.zeros_like(cols)
    paths.append(save_png(out / "im2col.png", visualize.enlarge(cols, IM2COL_ENLARGE)))
    return paths


def save_png(path: Path, a: np.ndarray) -> Path:
    """A float picture in [0, 1], grey (H, W) or colour (3, H, W), as an 8-bit PNG (atomically)."""
    samples = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    im = Image.fromarray(samples.transpose(1, 2, 0) if samples.ndim == 3 else samples)
    with replacing(path) as f:
        im.save(f, format="PNG", optimize=True)
    return path
