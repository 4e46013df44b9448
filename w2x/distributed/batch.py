"""Batches on a Dask cluster: one task per file or small group of files (distributed stage).

The client plans the jobs exactly as the single-process CLI (``w2x.cli.batch``), then::

    client                              every worker (one thread, its own process)
    ------                              ------------------------------------------
    register _Models(plans) ----------> setup(): keep the plans (models loaded once)
    submit one task per group --------> batch.run_jobs(group, conv, existing=...)
                                          read, convert, write atomically to shared storage
    as tasks finish: <----------------- (job, status, seconds, error) per file
      reporter.begin/end, Summary

Each worker runs ``w2x.cli.batch.run_jobs`` itself, so a group behaves as in one process:
the same output names, ``--resume`` / ``--no-overwrite`` checks at conversion time, a file
that fails recorded with the same message and not retried. The models travel inside a
worker plugin, so workers need no model files, and a worker that joins later (a Nanny
restarting a dead one) gets them too. A task whose worker dies is rescheduled by Dask on
another worker; after ``distributed.scheduler.allowed-failures`` deaths (default 3) it is
given up and its files are reported failed. Outputs are written by the workers, so the
output folder must be storage every worker and the client see at the same path.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from w2x.cli import batch
from w2x.cli import files
from w2x.cli.batch import Conversion, Outcome, Reporter, SilentReporter, Summary
from w2x.cli.files import Job
from w2x.distributed.cluster import require_dask
from w2x import atomic, pipeline
from w2x.pipeline import Plan

DEFAULT_FILES_PER_TASK = 1   # a task costs ~1 ms of scheduling, a file far more: no need to group


@dataclass(frozen=True)
class FileResult:
    """What a worker did with one job (the arguments of ``Reporter.end``)."""
    job: Job
    outcome: Outcome


class _Recorder(SilentReporter):
    """Keeps the ``end`` events of ``run_jobs`` on a worker, to send back with the result."""

    def __init__(self):
        self.results: list[FileResult] = []

    def end(self, job: Job, outcome: Outcome) -> None:
        self.results.append(FileResult(job, outcome))


def _models_plugin(plans: dict[str, Plan], name: str):
    """A ``WorkerPlugin`` that keeps ``plans`` in every worker, present and future."""
    distributed = require_dask()

    class _Models(distributed.WorkerPlugin):
        def __init__(self):
            self.name, self.plans = name, plans

        def setup(self, worker):
            pass                                        # the plans arrived with the plugin

    return _Models()


def _convert_group(jobs: list[Job], conv: Conversion, existing: str,
                   plugin: str) -> list[FileResult]:
    """The task: ``run_jobs`` on one group, with the models the worker keeps."""
    from distributed import get_worker
    plans = get_worker().plugins[plugin].plans
    recorder = _Recorder()
    batch.run_jobs(jobs, conv, recorder, existing=existing, plans=plans)
    return recorder.results


def _lost(jobs: list[Job], error: BaseException) -> list[FileResult]:
    """Failed results for a task that raised instead of returning (a dead worker each time,
    or a bug): every file of it failed, with one line saying why."""
    if type(error).__name__ == "KilledWorker":
        why = ("the worker converting it died on every try (out of memory? a crash?); "
               "Dask gave up after distributed.scheduler.allowed-failures tries")
    else:
        why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return [FileResult(job, Outcome("failed", 0.0, why)) for job in jobs]


def run_batch(client, jobs: list[Job], conv: Conversion, reporter: Reporter | None = None, *,
              existing: str = "replace", plans: dict[str, Plan] | None = None,
              files_per_task: int = DEFAULT_FILES_PER_TASK) -> Summary:
    """Convert every job on the cluster behind ``client``; ``batch.run_jobs``'s contract.

    Parameters
    ----------
    client : a ``distributed.Client``
    jobs : from ``files.plan_jobs`` (output folders made by ``files.prepare_output_dirs``,
        on storage the workers share)
    conv, existing : as ``batch.run_jobs``
    reporter : receives start, then begin + end per file as its task finishes (in order
        of completion; no per-tile events), then finish
    plans : from ``pipeline.resolve_plans`` (loaded here when missing), shipped to the workers
    files_per_task : jobs per task

    Returns
    -------
    Summary, its lists in job order (as the single-process run), ``seconds`` the wall time.
    """
    if existing not in ("replace", "skip", "refuse"):
        raise ValueError(f"existing must be replace, skip or refuse, got {existing!r}")
    if files_per_task < 1:
        raise ValueError(f"files per task must be at least 1, got {files_per_task}")
    distributed = require_dask()
    plans = plans if plans is not None else pipeline.resolve_plans(conv.opts)
    reporter = reporter or SilentReporter()
    summary, t_run = Summary(), time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    plugin = f"w2x-models-{run_id}"
    groups = [jobs[i:i + files_per_task] for i in range(0, len(jobs), files_per_task)]
    reporter.start(len(jobs))
    client.register_plugin(_models_plugin(plans, plugin), name=plugin)
    futures = {}
    try:
        for group in groups:
            f = client.submit(_convert_group, group, conv, existing, plugin, pure=False,
                              key=f"w2x-convert-{run_id}-{group[0].number}")
            futures[f] = group
        for future in distributed.as_completed(futures):
            group = futures.pop(future)
            if future.status == "finished":
                results = future.result()
            else:
                results = _lost(group, future.exception())
            future.release()
            for r in results:
                reporter.begin(r.job, len(jobs))
                summary.record(r.job, r.outcome)
                reporter.end(r.job, r.outcome)
    finally:
        client.cancel(list(futures))                   # only left after an interruption
        client.unregister_worker_plugin(plugin)
        remove_stray_temporaries(jobs)
    sort_summary(summary)
    summary.seconds = time.perf_counter() - t_run
    reporter.finish(summary)
    return summary


def sort_summary(summary: Summary) -> None:
    summary.written.sort(key=lambda j: j.number)
    summary.skipped.sort(key=lambda j: j.number)
    summary.failed.sort(key=lambda f: f[0].number)


def remove_stray_temporaries(jobs: list[Job]) -> list[Path]:
    """Delete the temporary files a killed worker left beside the outputs of ``jobs``
    (``atomic.stray_temporaries``). Returns the paths removed. Call it only when no task of
    ``jobs`` still runs."""
    removed = [tmp for job in jobs for tmp in atomic.stray_temporaries(job.dst)]
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


def convert_files(client, inputs: list[str | Path], output: str | Path | None,
                  conv: Conversion = Conversion(), *, recursive: bool = False,
                  fmt: str | None = None, existing: str = "replace",
                  reporter: Reporter | None = None,
                  files_per_task: int = DEFAULT_FILES_PER_TASK) -> Summary:
    """Convert files, directories or globs on a Dask cluster, named as the CLI names them.

    >>> with Client("tcp://scheduler:8786") as client:                    # doctest: +SKIP
    ...     s = convert_files(client, ["frames/"], "/shared/out/", Conversion())

    ``inputs``, ``output``, ``recursive`` and ``fmt`` are the CLI's ``-i``, ``-o``, ``-r``
    and ``-f`` (``w2x.cli.files.expand_inputs`` / ``plan_jobs``); ``output`` must be on
    storage the workers share. Raises ``files.UsageError`` for a plan that cannot run.
    """
    out = None if output is None else str(output)
    sources = files.expand_inputs([str(i) for i in inputs], recursive=recursive,
                                  exclude=None if out is None else Path(out))
    jobs = files.plan_jobs(sources, out, mode=conv.opts.mode, fmt=fmt)
    files.prepare_output_dirs(jobs)
    return run_batch(client, jobs, conv, reporter, existing=existing,
                     files_per_task=files_per_task)
