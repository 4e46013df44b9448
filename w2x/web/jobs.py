"""Bounded worker pool and queue for conversions, with progress, cancel and results.

Inference runs on ``workers`` threads, off the event loop (NumPy/Numba/CuPy release the
GIL in their kernels). At most ``workers + max_queued`` jobs are queued or running; one
more is refused with 503 and ``Retry-After``. Finished jobs are kept for ``job_ttl``
seconds, at most ``keep_finished`` of them, so memory stays bounded: the inputs of the
queued jobs (each under the body limit) plus the kept results and the cache.
"""
from __future__ import annotations

import concurrent.futures
import enum
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from w2x.store import ModelNotFoundError
from w2x.web.cache import Entry, ResultCache, content_key
from w2x.web.engine import Engine, model_error
from w2x.web.errors import WebError, busy
from w2x.web.fields import ConvertRequest
from w2x.web.limits import Limits

log = logging.getLogger("w2x.web")
JOB_ID_BYTES = 12


class State(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = (State.DONE, State.FAILED, State.CANCELLED)


class Cancelled(Exception):
    """Raised from the progress callback to stop a cancelled job between tiles."""


@dataclass
class Job:
    id: str
    request: ConvertRequest
    filename: str
    key: str
    data: bytes | None
    state: State = State.QUEUED
    done: int = 0
    total: int = 0
    error: WebError | None = None
    entry: Entry | None = None
    finished_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    future: concurrent.futures.Future | None = None

    def to_json(self) -> dict:
        out = {"id": self.id, "state": self.state.value,
               "progress": {"done": self.done, "total": self.total},
               "options": {"style": self.request.style, "noise": self.request.noise,
                           "scale": self.request.scale, "tta_level": self.request.tta_level,
                           "format": self.request.format},
               "filename": self.filename,
               "error": None if self.error is None else self.error.to_json()["error"],
               "result": None}
        if self.entry is not None:
            r = self.entry.result
            out["result"] = {"url": f"/api/jobs/{self.id}/result", "media_type": r.media_type,
                             "width": r.width, "height": r.height, "bytes": len(r.data),
                             "etag": self.entry.etag}
        return out


class JobQueue:
    """Runs jobs on a thread pool; see the module docstring for the bounds."""

    def __init__(self, engine: Engine, limits: Limits, cache: ResultCache, *, workers: int = 1,
                 max_queued: int = 16, keep_finished: int = 64, job_ttl: float = 600,
                 retry_after: int = 5):
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, got {workers}")
        if max_queued < 0:
            raise ValueError(f"the queue size must be 0 or more, got {max_queued}")
        self.engine, self.limits, self.cache = engine, limits, cache
        self.workers, self.max_queued = workers, max_queued
        self.keep_finished, self.job_ttl, self.retry_after = keep_finished, job_ttl, retry_after
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="w2x-web")
        self._jobs: dict[str, Job] = {}
        self._active = 0
        self._lock = threading.Lock()

    # -- submitting ------------------------------------------------------------------
    def submit(self, data: bytes, req: ConvertRequest, filename: str) -> Job:
        """Queue a conversion (``req.tta_level`` resolved); a cached result is done at once.
        Raises WebError 503 when the queue is full."""
        self._purge()
        key = content_key(data, req.cache_key())
        job = Job(secrets.token_urlsafe(JOB_ID_BYTES), req, filename, key, data)
        entry = self.cache.get(key)
        if entry is not None:
            job.entry, job.state, job.data = entry, State.DONE, None
            job.finished_at = time.monotonic()
            job.future = concurrent.futures.Future()
            job.future.set_result(None)
        else:
            with self._lock:
                if self._active >= self.workers + self.max_queued:
                    raise busy(self.retry_after)
                self._active += 1
            job.future = self._pool.submit(self._run, job)
            job.future.add_done_callback(lambda f, job=job: self._release(job))
        with self._lock:
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Stop a job: a queued one never runs, a running one stops at its next tile."""
        job = self.get(job_id)
        if job is None or job.state in FINAL_STATES:
            return job
        job.cancel_event.set()
        if job.future is not None and job.future.cancel():    # still queued
            self._finish(job, State.CANCELLED)
        return job

    def stats(self) -> dict:
        with self._lock:
            states = [j.state for j in self._jobs.values()]
            active = self._active
        return {"workers": self.workers, "max_queued": self.max_queued, "active": active,
                "queued": states.count(State.QUEUED), "running": states.count(State.RUNNING)}

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- running ---------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        if job.cancel_event.is_set():
            self._finish(job, State.CANCELLED)
            return
        job.state = State.RUNNING

        def progress(done: int, total: int) -> None:
            if job.cancel_event.is_set():
                raise Cancelled
            job.done, job.total = done, total

        try:
            result = self.engine.convert(job.data, job.request, self.limits, progress)
        except Cancelled:
            self._finish(job, State.CANCELLED)
        except WebError as e:
            self._finish(job, State.FAILED, e)
        except ModelNotFoundError as e:
            self._finish(job, State.FAILED, model_error(e))
        except Exception:                                    # never a traceback to a client
            log.exception("job %s failed", job.id)
            self._finish(job, State.FAILED, WebError(
                500, "The conversion failed on the server; the error is in its log."))
        else:
            job.entry = self.cache.put(job.key, result)
            job.done = job.total = max(job.total, job.done)
            self._finish(job, State.DONE)

    def _finish(self, job: Job, state: State, error: WebError | None = None) -> None:
        job.error, job.data = error, None
        job.finished_at = time.monotonic()
        job.state = state

    def _release(self, job: Job) -> None:
        with self._lock:
            self._active -= 1

    def _purge(self) -> None:
        """Forget finished jobs past their TTL and the oldest beyond ``keep_finished``."""
        now = time.monotonic()
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.state in FINAL_STATES
                           and j.finished_at is not None), key=lambda j: j.finished_at)
            expired = [j for j in done if self.job_ttl and now - j.finished_at > self.job_ttl]
            excess = done[:max(len(done) - self.keep_finished, 0)]
            for j in expired + excess:
                self._jobs.pop(j.id, None)
