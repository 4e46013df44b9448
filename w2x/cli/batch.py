"""The batch loop: convert a run's files one after another and report each event (CLI stage).

``files.py`` plans the run (which inputs, which outputs, checked before any file is read);
``run_jobs`` converts file after file with the models loaded once, and a file that fails is
recorded and the run goes on. ``Reporter`` is what the loop tells about a run; ``progress.py``
shows it, the Dask path (``w2x.distributed``) collects it from its workers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from w2x import anyscale, pipeline
from w2x.workload import FileTiles, TileProgress, count_tiles
from w2x.io import DEFAULT_MAX_PIXELS, Animation, Picture, read_frames, write_frames
from w2x.cli.files import Job, UsageError
from w2x.io.write import ANIMATION_FORMATS, STILL_FORMATS, quantize_image, write_samples
from w2x.pipeline import Options, Plan

# Files a directory scan picks up (what io reads and writes); named files are always tried.
FILE_ERRORS = (OSError, ValueError, RuntimeError, MemoryError)


@dataclass
class Summary:
    """What a run did: jobs written, skipped (``--resume``) and failed (with the reason)."""
    written: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.written) + len(self.skipped) + len(self.failed)

    def record(self, job: Job, outcome: "Outcome") -> None:
        """Add ``job`` to the list of its ``outcome``."""
        if outcome.status == "written":
            self.written.append(job)
        elif outcome.status == "skipped":
            self.skipped.append(job)
        else:
            self.failed.append((job, outcome.error or "failed"))


@dataclass(frozen=True)
class Outcome:
    """How one job ended: ``status`` written, skipped or failed (then ``error``), and the
    output's ``size`` (width, height) when written."""
    status: str
    seconds: float
    error: str | None = None
    size: tuple[int, int] | None = None


class Reporter(Protocol):
    """What the batch loop tells about a run, event by event (progress.py shows it)."""

    def start(self, n_files: int) -> None:
        """Called once, before the first file."""

    def begin(self, job: Job, n_files: int) -> None:
        """A file is about to be converted (or skipped)."""

    def tiles(self, progress: TileProgress) -> None:
        """A network tile of the current file is done."""

    def end(self, job: Job, outcome: Outcome) -> None:
        """A file is finished."""

    def finish(self, summary: Summary) -> None:
        """Called once, after the last file."""


class SilentReporter(Reporter):
    """A Reporter that shows nothing (``run_jobs`` without one): the Protocol's empty methods."""


@dataclass(frozen=True)
class Conversion:
    """Everything ``convert_file`` does to one file, fixed for the whole run."""
    opts: Options = Options()
    target: anyscale.Target = anyscale.Target()
    filter: str = anyscale.DEFAULT_FILTER
    depth: int = 8
    quality: int | None = None
    background: str | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        try:
            anyscale.check_target(self.opts.mode, self.target)
        except ValueError as e:
            raise UsageError(str(e)) from None


# --- the loop ---------------------------------------------------------------------------------

def run_jobs(jobs: list[Job], conv: Conversion, reporter: Reporter | None = None, *,
             existing: str = "replace", plans: dict[str, Plan] | None = None,
             convert: Callable[..., tuple[int, int] | None] | None = None) -> Summary:
    """Convert every job, go on after a failure, and report each event.

    Parameters
    ----------
    jobs : from ``plan_jobs``
    conv : what to do to each file
    reporter : receives the events (progress.py); default: none
    existing : what to do with an output that exists: ``replace`` (the original, atomic),
        ``skip`` (``--resume``, waifu2x.lua:222) or ``refuse`` (``--no-overwrite``: the
        job fails)
    plans : models from ``pipeline.resolve_plans``, loaded once for the run
    convert : how one file is converted, ``convert(src, dst, conv, plans=, tiles=)`` returning
        the output's (width, height); default ``convert_file`` (the Dask chunked path gives its own)

    Returns
    -------
    Summary; a failed job leaves no output file (io writes atomically).
    """
    if existing not in ("replace", "skip", "refuse"):
        raise ValueError(f"existing must be replace, skip or refuse, got {existing!r}")
    reporter = reporter or SilentReporter()
    convert = convert or convert_file
    summary, t_run = Summary(), time.perf_counter()
    reporter.start(len(jobs))
    for job in jobs:
        reporter.begin(job, len(jobs))
        t, error, size = time.perf_counter(), None, None
        if job.dst.exists() and existing == "skip":
            outcome = Outcome("skipped", time.perf_counter() - t)
            summary.record(job, outcome)
            reporter.end(job, outcome)
            continue
        if job.dst.exists() and existing == "refuse":
            error = f"{job.dst} exists and --no-overwrite is set; remove it or use --resume"
        else:
            try:
                size = convert(job.src, job.dst, conv, plans=plans, tiles=FileTiles(reporter.tiles))
            except FILE_ERRORS as e:
                error = str(e) or type(e).__name__
        outcome = Outcome("written" if error is None else "failed", time.perf_counter() - t, error, size)
        summary.record(job, outcome)
        reporter.end(job, outcome)
    summary.seconds = time.perf_counter() - t_run
    reporter.finish(summary)
    return summary


def convert_file(src: Path, dst: Path, conv: Conversion, *,
                 plans: dict[str, Plan] | None = None,
                 tiles: FileTiles | None = None) -> tuple[int, int]:
    """Read ``src`` (every frame), convert, write ``dst`` atomically in its extension's format.

    An animated GIF/APNG/WebP has every frame converted, with durations, loop count and
    disposal kept (the original converts the first frame only, nagadomi/waifu2x#96); it
    needs an animation format for ``dst`` (.gif, .png, .webp) and 8-bit output. A still
    image written as .gif becomes a one-frame GIF. ``tiles`` receives the network's
    progress. Returns the output's (width, height).
    """
    anim = read_frames(src, max_pixels=conv.max_pixels)
    suffix = dst.suffix.lower()
    animated = len(anim.frames) > 1
    if animated and suffix not in ANIMATION_FORMATS:
        raise ValueError(f"{src}: has {len(anim.frames)} frames, which {suffix} cannot hold; "
                         f"write {', '.join(sorted(ANIMATION_FORMATS))}")
    if animated and conv.depth != 8:
        raise ValueError(f"{src}: animations are written with 8 bits per sample; "
                         "drop --depth 16 for it")
    if tiles is not None:
        tiles.planned(len(anim.frames) * count_tiles(
            *anim.frames[0].rgb.shape[1:], anim.frames[0].alpha is not None, conv.opts,
            conv.target, plans))
    frames = [_convert_picture(pic, conv, plans, tiles) for pic in anim.frames]
    h, w = frames[0].rgb.shape[1:]
    if animated or suffix not in STILL_FORMATS:
        write_frames(dst, Animation(frames, anim.durations, anim.loop, anim.disposal),
                     quality=conv.quality)
        return w, h
    # A still image: the float planes, the input's and then the output's, are let go before
    # the file is encoded, which then holds only the integer samples (for an 8000x8000 RGB
    # output: 192 MB instead of 768 + 192 + 192 MB).
    del anim
    pic = frames.pop()
    ready = quantize_image(dst, pic.rgb, pic.alpha, pic.meta, depth=conv.depth,
                           background=conv.background)
    meta = pic.meta
    del pic
    write_samples(dst, ready, meta, quality=conv.quality)
    return w, h


def _convert_picture(pic: Picture, conv: Conversion, plans, progress) -> Picture:
    rgb, alpha = pipeline.convert_planes(pic.rgb, pic.alpha, conv.opts, conv.target,
                                         filter=conv.filter, plans=plans, progress=progress)
    return Picture(rgb, alpha, pic.meta)
