"""kernels/cpu_crew.py: the worker threads that spin between runs of blocks."""
from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest

pytest.importorskip("numba")

from w2x.nn import kernel_files  # noqa: E402


@pytest.fixture(scope="module")
def cpu_crew():
    return kernel_files.module("cpu_crew")


def test_a_run_calls_every_thread_and_the_caller_once(cpu_crew):
    crew = cpu_crew.Crew(3)
    for _ in range(50):                          # back to back: the threads are spinning
        calls, lock = [], threading.Lock()

        def work(i):
            with lock:
                calls.append(i)
        assert crew.try_run(work, lambda: work("caller"))
        assert sorted(calls, key=str) == [0, 1, 2, "caller"]


def _within(seconds: float, fn) -> None:
    """Run fn on a thread and fail if it has not returned in time (a lost wake-up hangs)."""
    errors = []

    def run():
        try:
            fn()
        except BaseException as e:
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still waiting after {seconds} s: a lost wake-up"
    if errors:
        raise errors[0]


def test_threads_that_went_to_sleep_wake_for_the_next_run(cpu_crew, monkeypatch):
    """Past the spin the threads sleep on a condition, and the caller too while a thread
    works on: both are woken."""
    monkeypatch.setattr(cpu_crew, "SPINS", 10)   # read at each wait: they sleep at once
    crew = cpu_crew.Crew(2)
    out = np.zeros(2)

    def runs():
        for run in range(1, 6):
            time.sleep(0.02)                     # the threads are asleep by now

            def work(i, run=run):
                time.sleep(0.01 * i)             # the caller waits longer than its spin
                out[i] = run
            assert crew.try_run(work, lambda: None)
            assert list(out) == [run, run]
    _within(30, runs)


def test_a_run_for_fewer_threads_leaves_the_others_alone(cpu_crew):
    crew = cpu_crew.Crew(3)
    for count in (1, 3, 0, 2):
        calls = []
        assert crew.try_run(calls.append, lambda: None, count)
        assert sorted(calls) == list(range(count))


def test_an_error_in_a_thread_reaches_the_caller_after_all_have_finished(cpu_crew):
    crew = cpu_crew.Crew(2)
    finished = []

    def work(i):
        if i == 0:
            raise ValueError("in thread 0")
        time.sleep(0.05)
        finished.append(i)
    with pytest.raises(ValueError, match="in thread 0"):
        crew.try_run(work, lambda: None)
    assert finished == [1]                       # the caller waited for thread 1
    assert crew.try_run(lambda i: None, lambda: None)   # and the crew still works


def test_an_error_in_the_caller_and_the_threads_is_raised_once(cpu_crew):
    """The threads' copies of the caller's error do not surface in a later run."""
    crew = cpu_crew.Crew(2)

    def fail(*_):
        raise KeyError("everywhere")
    with pytest.raises(KeyError):
        crew.try_run(fail, fail)
    assert crew.try_run(lambda i: None, lambda: None)


def test_a_busy_crew_says_so_and_runs_nothing(cpu_crew):
    crew = cpu_crew.Crew(1)
    inner = []

    def main():
        inner.append(crew.try_run(lambda i: inner.append(i), lambda: None))
    assert crew.try_run(lambda i: None, main)
    assert inner == [False]


def test_run_blocks_from_several_threads_and_nested_uses_the_pool_beside_the_crew():
    """kernels/cpu_numba._run_blocks: a caller that finds the crew busy (another thread's
    run, or a block that runs blocks itself) works with the pool instead; every block once."""
    kn = kernel_files.module("cpu_numba")
    counts = np.zeros(4 * 64, np.int64)

    def outer(b):
        kn._run_blocks(list(range(b * 64, b * 64 + 64)), lambda k: counts.__setitem__(k, counts[k] + 1), blas=False)
    threads = [threading.Thread(target=kn._run_blocks, args=([t], outer), kwargs={"blas": False}) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (counts == 1).all()


def _child_runs_blocks(queue) -> None:
    kn = kernel_files.module("cpu_numba")
    out = np.zeros(8)
    kn._run_blocks(list(range(8)), lambda b: out.__setitem__(b, b), blas=False)
    kn._pool().submit(int).result()
    queue.put(out.tolist())


def test_a_forked_child_makes_its_own_workers():
    """The crew's and the pool's threads are not in a fork's child: it must make its own,
    not wait on them (kernels/cpu_numba._forget_threads)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    kn = kernel_files.module("cpu_numba")
    kn._run_blocks([0, 1], lambda b: None, blas=False)      # the parent's crew exists
    kn._pool().submit(int).result()                          # and its pool
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_runs_blocks, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=60) == list(range(8))
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
