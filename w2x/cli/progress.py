"""Progress and result reporting for command-line runs (CLI stage, around the batch loop).

The batch loop (``batch.run_jobs``) calls one ``Reporter`` at each event; this module is
where they become text:

* ``TextReporter``: tqdm bars on stderr, one over files (when there are several) and one
  over the tiles of the file in hand, shown only once a file has taken ``LONG_WORK_S``;
  a ``w2x: error: ...`` line per failed file; a summary at the end of a multi-file run.
  ``--quiet`` keeps only the error lines.
* ``JsonReporter``: one JSON object per line on **stdout** (stderr stays free for
  human-readable errors and stdout is otherwise unused, so a wrapper or GUI reads one
  stream and needs no parsing of bars). Events, each with an ``"event"`` key:

  ``start``   ``{"files": N}``
  ``file``    ``{"number": i, "files": N, "input": str, "output": str}``
  ``tiles``   ``{"number": i, "pass": p, "done": d, "total": t}`` (p counts network passes
              of this file from 1: denoise, 2x, alpha, frames...)
  ``done``    ``{"number": i, "input", "output", "status": "written"|"skipped"|"failed",
              "seconds": s, "error": str|null}``
  ``summary`` ``{"written", "skipped", "failed", "seconds", "failures": [{"input", "error"}]}``

The original shows an ``xlua.progress`` bar in ``-l`` mode and prints each file's seconds
(waifu2x.lua:236-240, :73); JSON progress answers DeadSix27/waifu2x-converter-cpp#25/#140.
"""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from w2x.cli.batch import Job, Summary

LONG_WORK_S = 1.0        # a file's tile bar appears once it has run this long (tqdm delay)
PROGRESS_KINDS = ("auto", "bar", "json", "none")


class Reporter:
    """Receives the events of a run and shows nothing; the base of the two below."""

    def start(self, n_files: int) -> None:
        """Called once, before the first file."""

    def begin(self, job: Job, n_files: int) -> None:
        """A file is about to be converted (or skipped)."""

    def tiles(self, done: int, total: int) -> None:
        """Tiles done of the current network pass (``pipeline.convert_planes``'s callback)."""

    def end(self, job: Job, status: str, seconds: float, error: str | None = None) -> None:
        """A file is finished: ``status`` is written, skipped or failed (then ``error``)."""

    def finish(self, summary: Summary) -> None:
        """Called once, after the last file."""


class _PassCounter:
    """Numbers the network passes from the (done, total) calls of one file."""

    def __init__(self):
        self.passes, self.done, self.total = 0, 0, 0

    def step(self, done: int, total: int) -> tuple[bool, int]:
        """(a new pass started, tiles newly done); a pass starts when ``done`` falls back
        or the previous pass ended."""
        new_pass = self.passes == 0 or done <= self.done or self.done >= self.total
        prev = 0 if new_pass else self.done
        self.passes += new_pass
        self.done, self.total = done, total
        return new_pass, done - prev


def _reason(job: Job, error: str) -> str:
    """The error without a leading ``<input>: ``, so the path is not printed twice."""
    return error.removeprefix(f"{job.src}: ")


class TextReporter(Reporter):
    """Human output on ``stream`` (stderr): optional bars, error lines, a summary."""

    def __init__(self, *, bars: bool = True, summary: bool = True, stream: TextIO | None = None):
        self.bars, self.summary, self.stream = bars, summary, stream or sys.stderr
        self._files = self._tiles = None
        self._counter = _PassCounter()

    def start(self, n_files):
        if self.bars and n_files > 1:
            self._files = tqdm(total=n_files, unit="file", desc="w2x", file=self.stream,
                               dynamic_ncols=True)

    def begin(self, job, n_files):
        self._counter = _PassCounter()
        if self.bars:
            self._tiles = tqdm(total=0, unit="tile", desc=job.src.name, file=self.stream,
                               leave=False, delay=LONG_WORK_S, dynamic_ncols=True,
                               position=1 if self._files is not None else 0)

    def tiles(self, done, total):
        if self._tiles is None:
            return
        new_pass, newly_done = self._counter.step(done, total)
        if new_pass:
            self._tiles.total += total                 # the total grows pass by pass
        self._tiles.update(newly_done)

    def end(self, job, status, seconds, error=None):
        if self._tiles is not None:
            self._tiles.close()
            self._tiles = None
        if error is not None:
            self._write(f"w2x: error: {job.src}: {_reason(job, error)}")
        if self._files is not None:
            self._files.update(1)

    def finish(self, summary):
        if self._files is not None:
            self._files.close()
            self._files = None
        if not self.summary or summary.total <= 1:
            return
        self._write(f"w2x: {len(summary.written)} written, {len(summary.skipped)} skipped, "
                    f"{len(summary.failed)} failed in {summary.seconds:.1f} s")
        for job, error in summary.failed:
            self._write(f"w2x: failed: {job.src}: {_reason(job, error)}")

    def _write(self, line: str) -> None:
        tqdm.write(line, file=self.stream)             # above the bars, never through them


class JsonReporter(Reporter):
    """One JSON object per event and line on ``stream`` (stdout), flushed at once."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._number = 0
        self._counter = _PassCounter()

    def _emit(self, event: str, **fields) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()

    def start(self, n_files):
        self._emit("start", files=n_files)

    def begin(self, job, n_files):
        self._number, self._counter = job.number, _PassCounter()
        self._emit("file", number=job.number, files=n_files, input=str(job.src),
                   output=str(job.dst))

    def tiles(self, done, total):
        self._counter.step(done, total)
        self._emit("tiles", number=self._number, **{"pass": self._counter.passes},
                   done=done, total=total)

    def end(self, job, status, seconds, error=None):
        self._emit("done", number=job.number, input=str(job.src), output=str(job.dst),
                   status=status, seconds=round(seconds, 3), error=error)

    def finish(self, summary):
        self._emit("summary", written=len(summary.written), skipped=len(summary.skipped),
                   failed=len(summary.failed), seconds=round(summary.seconds, 3),
                   failures=[{"input": str(job.src), "error": error}
                             for job, error in summary.failed])


def make_reporter(kind: str = "auto", *, quiet: bool = False, stdout: TextIO | None = None,
                  stderr: TextIO | None = None) -> Reporter:
    """The reporter for ``--progress kind`` and ``--quiet``.

    ``auto`` shows bars when stderr is a terminal; ``json`` writes events to stdout (even
    with ``--quiet``, which then only drops the text); ``none`` and ``--quiet`` show no
    bars, and ``--quiet`` no summary either; error lines are always written.
    """
    if kind not in PROGRESS_KINDS:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_KINDS)}, got {kind!r}")
    stderr = stderr or sys.stderr
    if kind == "json":
        return JsonReporter(stdout or sys.stdout)
    bars = not quiet and (kind == "bar" or (kind == "auto" and stderr.isatty()))
    return TextReporter(bars=bars, summary=not quiet, stream=stderr)
