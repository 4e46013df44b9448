"""Tiling as pure integer geometry (nagadomi/waifu2x lib/reconstruct.lua:86-130).

The padded image is cut into square ``tile`` x ``tile`` input blocks stepping ``step =
tile - 2*input_offset``; each block's output (``tile*scale - 2*offset`` square) is pasted,
without blending, at ``(i*scale, j*scale)``.  Because ``offset == input_offset*scale`` for
every released model, output tiles cover the canvas exactly, and for the purely local nets
(vgg_7, upconv_7) the result does not depend on the tile size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from w2x.nn.models import ModelConfig


class TileSizeError(ValueError):
    """A tile size that leaves no room for output pixels."""


@dataclass(frozen=True)
class TileGrid:
    """Where every tile of one image goes.  All sizes in pixels."""
    h: int            # image rows (before padding)
    w: int            # image columns
    tile: int         # input block size, context included
    step: int         # input stride between blocks = tile - 2*pad_lo
    pad_lo: int       # top/left replicate padding = input_offset
    n_h: int          # blocks down
    n_w: int          # blocks across
    scale_factor: int  # inner scale of the model
    out_tile: int     # output block size = tile*scale_factor - 2*offset

    @property
    def pad_bottom(self) -> int:
        return self.n_h * self.step + self.pad_lo - self.h

    @property
    def pad_right(self) -> int:
        return self.n_w * self.step + self.pad_lo - self.w

    @property
    def out_h(self) -> int:
        """Output rows: the image's, times the model's scale factor."""
        return self.h * self.scale_factor

    @property
    def out_w(self) -> int:
        return self.w * self.scale_factor

    def __len__(self) -> int:
        return self.n_h * self.n_w

    def corner(self, i: int) -> tuple[int, int]:
        """``(row, col)`` of tile ``i``'s top-left corner in the padded image (row-major)."""
        return (i // self.n_w) * self.step, (i % self.n_w) * self.step

    def tiles(self):
        """Yield ``(row, col)`` of each block's top-left corner in the padded image, row-major
        like the original's loop (reconstruct.lua:17-18)."""
        for i in range(len(self)):
            yield self.corner(i)


def snap_tile_size(config: ModelConfig, tile_size: int) -> int:
    """The model's accepted input size closest to ``tile_size`` (the first on a tie), as
    ``find_valid_block_size`` (reconstruct.lua:112-130); any size for vgg_7/upconv_7."""
    if config.valid_sizes is None:
        return tile_size
    return min(config.valid_sizes, key=lambda s: abs(s - tile_size))


def tile_grid(h: int, w: int, config: ModelConfig, tile_size: int = 256) -> TileGrid:
    """Lay the tiles for an ``h`` x ``w`` network input (``padding_params``, reconstruct.lua:86-111).

    For vgg_7/upconv_7 ``tile_size`` is a limit: the tiles shrink to the smallest square that
    needs no more of them (``balanced_tile``).  cunet/upcunet keep the original's exact sizes:
    their SE blocks average over the tile, so their output depends on it.

    Raises
    ------
    TileSizeError
        when the (snapped) tile size is not larger than twice the model's context.
    """
    tile = snap_tile_size(config, int(tile_size))
    pad = config.input_offset
    step = tile - 2 * pad
    if step <= 0 or (tile * config.scale_factor - 2 * config.offset) <= 0:
        raise TileSizeError(f"tile size {tile} is too small for {config.arch_name}: it needs more "
                            f"than {2 * pad} px of context; use --tile-size {2 * pad + 32} or larger")
    if config.valid_sizes is None:   # vgg_7/upconv_7: local, any tile size gives the same output
        tile = balanced_tile(h, w, step, pad)
        step = tile - 2 * pad
    return TileGrid(h, w, tile, step, pad, math.ceil(h / step), math.ceil(w / step),
                    config.scale_factor, tile * config.scale_factor - 2 * config.offset)


def balanced_tile(h: int, w: int, step: int, pad: int) -> int:
    """The smallest square tile that covers an ``h`` x ``w`` input in as few tiles as steps of
    ``step`` do: the tiles of the original's grid shrunk until the padding past the image on
    the bottom and right is as small as that tile count allows (on the longer side; the
    shorter one may keep more, tiles being square).

    2x of lena.png by vgg_7 (a 1024-px net input, 7 px of context): 256-px tiles step 242, so
    5 x 5 of them reach 1210 px, 186 of them padding; 5 x 5 tiles of 219 reach 1025, with 27%
    fewer pixels to run (the ``w2x`` command 3.1 -> 2.5 s, 2 threads).  Never larger than the
    padded input, nor than ``step`` + 2 * ``pad``.
    """
    n_h, n_w = max(1, math.ceil(h / step)), max(1, math.ceil(w / step))
    return max(math.ceil(h / n_h), math.ceil(w / n_w), 1) + 2 * pad   # an empty input: step 1, no tiles

