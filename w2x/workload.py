"""Tiles one file's conversion will run, counted before it starts, and one count of the tiles
done over all of its passes (convert stage, progress; the CLI's bars and the web jobs use it).

The network reports progress per pass (``reconstruct.ProgressFn``: tiles done of the pass in
hand), and a file takes several passes: denoise, each 2x, their alpha, every TTA pattern,
every frame. A bar fed pass by pass falls back each time a pass starts (with ``-s 4``: 95 %
of the first 2x, then 23 %). Counting every pass's tiles up front lets one bar cover the
whole file. The count follows the passes of ``pipeline.convert_planes`` and the tiling of
``reconstruct.run_net``; ``FileTiles`` never lets the count go back should it fall short.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from w2x import anyscale, tiling
from w2x.anyscale import PASS_FACTOR
from w2x.pipeline import ALPHA_TILE_SIZE, Options, Plan, resolve_models
from w2x.reconstruct import TTA_LEVELS, upscale2x


def count_tiles(h: int, w: int, has_alpha: bool, opts: Options, target: anyscale.Target,
                plans: dict[str, Plan] | None = None) -> int:
    """Network tiles to convert one ``h`` x ``w`` image (one frame) to ``target``.

    Parameters
    ----------
    h, w : input size in pixels
    has_alpha : the image has an alpha plane (upscaled by the scale model at each 2x pass)
    opts : mode, tile size, TTA level
    target : the output size asked for
    plans : the run's models (``pipeline.resolve_plans``); others are resolved here
    """
    out_h, out_w = target.size(h, w)
    patterns = len(TTA_LEVELS[opts.tta_level])
    total = 0
    for mode in anyscale.pass_modes(opts.mode, anyscale.count_passes(h, w, out_h, out_w)):
        plan = (plans or {}).get(mode) or resolve_models(replace(opts, mode=mode))
        ph, pw = h, w                                  # alpha's size: the pass's input size
        for step, model in plan.steps:
            upscales = step is upscale2x
            pre = PASS_FACTOR // model.config.scale_factor if upscales else 1   # vgg_7: Box 2x first
            total += patterns * len(tiling.tile_grid(h * pre, w * pre, model.config, opts.tile_size))
            if upscales:
                h, w = h * PASS_FACTOR, w * PASS_FACTOR
        if has_alpha and plan.scale_model is not None and (h, w) != (ph, pw):
            cfg = plan.scale_model.config
            pre = PASS_FACTOR // cfg.scale_factor
            total += len(tiling.tile_grid(ph * pre, pw * pre, cfg, ALPHA_TILE_SIZE))   # no TTA
    return total


@dataclass(frozen=True)
class TileProgress:
    """Network tiles done in the file in hand: in its pass ``pass_number`` (from 1: denoise,
    2x, alpha, TTA pattern, frame...) and over all of its passes (``file_total`` counted
    before the file started, ``workload.count_tiles``; ``file_done`` never goes back)."""
    pass_number: int
    done: int
    total: int
    file_done: int
    file_total: int


class FileTiles:
    """Turns the per-pass (done, total) calls of the network into ``TileProgress`` events.

    A pass starts when ``done`` falls back or the previous pass ended; the file's total is
    set once the file is decoded (``planned``) and grows, never shrinks, should the passes
    run more tiles than counted.
    """

    def __init__(self, report: Callable[[TileProgress], None]):
        self.report = report
        self.passes = self.done = self.total = self.finished = self.file_total = 0

    def planned(self, file_total: int) -> None:
        self.file_total = file_total

    def __call__(self, done: int, total: int) -> None:
        if self.passes == 0 or done <= self.done or self.done >= self.total:
            self.passes += 1
            self.finished += self.done                 # tiles of the passes before
        self.done, self.total = done, total
        file_done = self.finished + done
        self.file_total = max(self.file_total, file_done)
        self.report(TileProgress(self.passes, done, total, file_done, self.file_total))
