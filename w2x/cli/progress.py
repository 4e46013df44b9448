"""Progress and result reporting for command-line runs (CLI stage, around the batch loop).

The batch loop (``batch.run_jobs``) calls one ``batch.Reporter`` at each event; this module
is where they become text:

* ``TextReporter``: on stderr, a line per written file (output, size, seconds, and the
  ``how`` of the run: model and backend), tqdm bars, one over files (when there are
  several) and one over the tiles of every pass of the file in hand, shown only once a file
  has taken ``LONG_WORK_S``; a ``w2x: error: ...`` line per failed file; a summary at the
  end of a multi-file run. ``quiet`` (``-q``) keeps only the error lines.
* ``JsonReporter``: one JSON object per line on **stdout** (stderr stays free for
  human-readable errors and stdout is otherwise unused, so a wrapper or GUI reads one
  stream and needs no parsing of bars). Events, each with an ``"event"`` key:

  ``start``   ``{"files": N}``
  ``file``    ``{"number": i, "files": N, "input": str, "output": str}``
  ``tiles``   ``{"number": i, "pass": p, "done": d, "total": t, "file_done": fd,
              "file_total": ft}`` (p counts network passes of this file from 1: denoise,
              2x, alpha, frames...; d of t in that pass, fd of ft over all of them)
  ``done``    ``{"number": i, "input", "output", "status": "written"|"skipped"|"failed",
              "seconds": s, "error": str|null, "width": w|null, "height": h|null}``
  ``summary`` ``{"written", "skipped", "failed", "seconds", "failures": [{"input", "error"}]}``

The original shows an ``xlua.progress`` bar in ``-l`` mode and prints each file's seconds
(waifu2x.lua:236-240, :73); JSON progress answers DeadSix27/waifu2x-converter-cpp#25/#140.
"""
from __future__ import annotations

import json
import sys
from typing import TextIO

from w2x.cli.batch import Outcome, Reporter, Summary

from w2x.cli.files import Job
from w2x.workload import TileProgress

LONG_WORK_S = 1.0        # a file's tile bar appears once it has run this long (tqdm delay)
PROGRESS_KINDS = ("auto", "bar", "json", "none")


def _reason(job: Job, error: str) -> str:
    """The error without a leading ``<input>: ``, so the path is not printed twice."""
    return error.removeprefix(f"{job.src}: ")


class TextReporter(Reporter):
    """Human output on ``stream`` (stderr): per-file lines, optional bars, errors, a summary.

    ``how`` ends each file's line, e.g. ``"cunet/art, numba"``; ``quiet`` leaves only the
    error lines (no bars either).
    """

    def __init__(self, *, bars: bool = True, quiet: bool = False, how: str = "",
                 stream: TextIO | None = None):
        self.bars, self.quiet, self.how = bars and not quiet, quiet, how
        self.stream = stream or sys.stderr
        self._files = self._tiles = None
        self._tqdm = None
        if self.bars:
            from tqdm import tqdm        # only with bars: a plain run does not import it
            self._tqdm = tqdm

    def start(self, n_files):
        if self.bars and n_files > 1:
            self._files = self._tqdm(total=n_files, unit="file", desc="w2x", file=self.stream,
                               dynamic_ncols=True)

    def begin(self, job, n_files):
        if self.bars:
            self._tiles = self._tqdm(total=0, unit="tile", desc=job.src.name, file=self.stream,
                               leave=False, delay=LONG_WORK_S, dynamic_ncols=True,
                               position=1 if self._files is not None else 0)

    def tiles(self, progress):
        if self._tiles is None:
            return
        self._tiles.total = progress.file_total        # all passes of the file: no fall-back
        self._tiles.update(progress.file_done - self._tiles.n)

    def end(self, job, outcome):
        if self._tiles is not None:
            self._tiles.close()
            self._tiles = None
        if outcome.error is not None:
            self._write(f"w2x: error: {job.src}: {_reason(job, outcome.error)}")
        elif outcome.status == "written" and not self.quiet:
            w, h = outcome.size
            how = f" ({self.how})" if self.how else ""
            self._write(f"w2x: {job.dst} {w}x{h} {outcome.seconds:.2f} s{how}")
        if self._files is not None:
            self._files.update(1)

    def finish(self, summary):
        if self._files is not None:
            self._files.close()
            self._files = None
        if self.quiet or summary.total <= 1:
            return
        self._write(f"w2x: {len(summary.written)} written, {len(summary.skipped)} skipped, "
                    f"{len(summary.failed)} failed in {summary.seconds:.1f} s")
        for job, error in summary.failed:
            self._write(f"w2x: failed: {job.src}: {_reason(job, error)}")

    def _write(self, line: str) -> None:
        if self._tqdm is None:
            print(line, file=self.stream, flush=True)
        else:
            self._tqdm.write(line, file=self.stream)   # above the bars, never through them


class JsonReporter(Reporter):
    """One JSON object per event and line on ``stream`` (stdout), flushed at once."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._number = 0

    def _emit(self, event: str, **fields) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()

    def start(self, n_files):
        self._emit("start", files=n_files)

    def begin(self, job, n_files):
        self._number = job.number
        self._emit("file", number=job.number, files=n_files, input=str(job.src),
                   output=str(job.dst))

    def tiles(self, progress: TileProgress):
        self._emit("tiles", number=self._number, **{"pass": progress.pass_number},
                   done=progress.done, total=progress.total, file_done=progress.file_done,
                   file_total=progress.file_total)

    def end(self, job: Job, outcome: Outcome):
        w, h = outcome.size or (None, None)
        self._emit("done", number=job.number, input=str(job.src), output=str(job.dst),
                   status=outcome.status, seconds=round(outcome.seconds, 3),
                   error=outcome.error, width=w, height=h)

    def finish(self, summary: Summary):
        self._emit("summary", written=len(summary.written), skipped=len(summary.skipped),
                   failed=len(summary.failed), seconds=round(summary.seconds, 3),
                   failures=[{"input": str(job.src), "error": error}
                             for job, error in summary.failed])


def make_reporter(kind: str = "auto", *, quiet: bool = False, how: str = "",
                  stdout: TextIO | None = None, stderr: TextIO | None = None) -> Reporter:
    """The reporter for ``--progress kind`` and ``--quiet``.

    ``auto`` shows bars when stderr is a terminal; ``json`` writes events to stdout (even
    with ``--quiet``, which then only drops the text); ``none`` and ``--quiet`` show no
    bars, and ``--quiet`` no per-file lines or summary either; error lines are always
    written. ``how`` (model, backend) ends each file's line.
    """
    if kind not in PROGRESS_KINDS:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_KINDS)}, got {kind!r}")
    stderr = stderr or sys.stderr
    if kind == "json":
        return JsonReporter(stdout or sys.stdout)
    bars = kind == "bar" or (kind == "auto" and stderr.isatty())
    return TextReporter(bars=bars, quiet=quiet, how=how, stream=stderr)
