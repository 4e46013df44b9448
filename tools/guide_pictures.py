#!/usr/bin/env python3
"""Draw the pictures of docs/how-it-works.md into docs/pictures/ from docs/sample.jpg.

Uses only the bundled models (weights/), so a fresh clone can redraw them, and the same
code as ``w2x visualize`` (``w2x.visualize``, ``w2x.cli.visualize.save_png``):

    python tools/guide_pictures.py          # rewrites docs/pictures/*.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from w2x import tiling, visualize  # noqa: E402
from w2x.cli.visualize import save_png  # noqa: E402
from w2x.io import read_image  # noqa: E402
from w2x.nn.models import load_model  # noqa: E402
from w2x.reconstruct import gather_tile  # noqa: E402

SAMPLE = ROOT / "docs" / "sample.jpg"
OUT = ROOT / "docs" / "pictures"
VGG_7 = ROOT / "weights" / "vgg_7" / "photo" / "noise1_model.json.gz"
UPCONV_7 = ROOT / "weights" / "upconv_7" / "photo" / "scale2.0x_model.json.gz"
FACE = (slice(None), slice(76, 124), slice(36, 84))   # (C, rows, cols): a 48x48 crop of the face
TILE = 64                                             # tile size of the tiling picture
ENLARGE = 3                                           # px per pixel in the small pictures


def layer_pictures(image: np.ndarray) -> None:
    """vgg_7's first, middle and last layer, upconv_7's transposed conv, filters, im2col."""
    vgg = load_model(VGG_7)
    outs = visualize.layer_outputs(vgg, image[FACE])
    save_png(OUT / "input.png", visualize.enlarge(outs["input"], ENLARGE))
    for name in ("conv1", "conv4", "conv7"):
        save_png(OUT / f"vgg7-{name}.png", visualize.grid(outs[name]))
    save_png(OUT / "vgg7-filters.png", visualize.grid(visualize.filter_maps(vgg), symmetric=True))
    cols = visualize.im2col_matrix(outs["input"], 20, 20)                  # (27, 16)
    save_png(OUT / "im2col.png", visualize.enlarge((cols - cols.min()) / np.ptp(cols), 10))
    up = visualize.layer_outputs(load_model(UPCONV_7), image[FACE])
    save_png(OUT / "upconv7-deconv.png", visualize.grid(up["deconv"]))


def tiling_picture(image: np.ndarray) -> None:
    """The image edge-padded as vgg_7's tiles see it (7 px on the top and left, up to a whole
    number of steps on the bottom and right; the padding dimmed), each input tile (64 px
    asked, balanced to 62: ``tiling.balanced_tile``) outlined, one colour per (row, column)
    parity: neighbours overlap by 2 x 7 = 14 px."""
    config = load_model(VGG_7).config
    grid = tiling.tile_grid(image.shape[1], image.shape[2], config, TILE)
    h, w = grid.n_h * grid.step + 2 * grid.pad_lo, grid.n_w * grid.step + 2 * grid.pad_lo
    canvas = np.zeros((3, h, w), np.float32)
    for r, q in grid.tiles():
        canvas[:, r:r + grid.tile, q:q + grid.tile] = gather_tile(image, grid, r, q, 1)
    canvas = 0.35 + 0.3 * canvas                                          # dimmed: the padding
    canvas[:, grid.pad_lo:grid.pad_lo + image.shape[1], grid.pad_lo:grid.pad_lo + image.shape[2]] = image
    colours = np.array([[0.9, 0.1, 0.1], [0.1, 0.4, 0.95], [0.1, 0.7, 0.2], [0.9, 0.6, 0.0]], np.float32)
    for i, (r, q) in enumerate(grid.tiles()):
        _outline(canvas, r, q, grid.tile, colours[(i // grid.n_w) % 2 * 2 + (i % grid.n_w) % 2])
    save_png(OUT / "tiling.png", visualize.enlarge(canvas, 2))


def _outline(canvas: np.ndarray, r: int, q: int, size: int, colour: np.ndarray) -> None:
    """A 1-px square outline, clipped to the canvas."""
    h, w = canvas.shape[1:]
    r1, q1 = min(r + size - 1, h - 1), min(q + size - 1, w - 1)
    canvas[:, r, q:q1 + 1] = canvas[:, r1, q:q1 + 1] = colour[:, None]
    canvas[:, r:r1 + 1, q] = canvas[:, r:r1 + 1, q1] = colour[:, None]


def main() -> int:
    OUT.mkdir(exist_ok=True)
    image = read_image(SAMPLE).rgb                                        # (3, 144, 192)
    layer_pictures(image)
    tiling_picture(image)
    total = sum(p.stat().st_size for p in OUT.glob("*.png"))
    print(f"{len(list(OUT.glob('*.png')))} pictures, {total // 1024} KB, in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
