"""Network stage, CPU: the worker threads of kernels/cpu_numba.py's ``_run_blocks``, which wait
for the next run of blocks by spinning a while, outside the GIL, before they sleep.

A training step hands its workers ~16 runs of blocks, 0.3-8 ms each, with 0.05-0.6 ms of
serial Python between them.  Handed over through a queue (``concurrent.futures``), each run
cost two thread wake-ups through the kernel, ~30 us each on this virtual machine (a wake-up
that crosses CPUs is an interrupt to a halted virtual CPU): the worker started ~60 us after
the caller, and the caller learnt ~30 us late that the worker had finished.  Here a worker
that has finished a run reads a shared counter in a Numba loop for up to ``SPINS`` reads
(~0.1 ms; without the GIL, so the caller's Python runs on meanwhile) and starts as soon as it
changes; the caller waits for the workers' done-counters the same way.  Only past the spin
does either sleep on a condition variable.  Measured, upconv_7's training step (batch 16,
crop 48, 2 threads, one CPU per thread): 0.92-0.96x the time of the queue (four runs of 21-31
interleaved pairs), vgg_7's 0.99-1.01x; inference on lena.png (256-px tiles) 0.95-0.98x.
The price: up to ~0.1 ms of a spinning CPU after each run.

The counters are read with an atomic acquire load (``_load_acquire``), so that LLVM cannot
hoist the read out of the loop and the writes made before the counter changed are seen.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Reads of a counter before a waiting thread sleeps: 0.08-0.16 ms on this machine, about
# the serial Python between most of a training step's runs of blocks (0.05-0.2 ms); five
# times as many took 0.99x the step time.
SPINS = 300_000
# int64 counters per cache line: each counter on a line of its own.
_LINE = 8


@intrinsic
def _load_acquire(typingctx, array, index):
    """``array[index]`` (int64) by an atomic load with acquire ordering."""
    sig = types.int64(array, index)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        a = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, a, [args[1]])
        return builder.load_atomic(pointer, "acquire", 8)
    return sig, codegen


@njit(nogil=True, cache=True)
def _spin_while_equal(counters, index, value, spins):
    """Read counters[index] until it differs from ``value`` (True) or ``spins`` times (False)."""
    for _ in range(spins):
        if _load_acquire(counters, index) != value:
            return True
    return False


@njit(nogil=True, cache=True)
def _spin_until_equal(counters, index, value, spins):
    """Read counters[index] until it equals ``value`` (True) or ``spins`` times (False)."""
    for _ in range(spins):
        if _load_acquire(counters, index) == value:
            return True
    return False


class Crew:
    """``size`` daemon threads that run ``work(i)`` (i: the thread's index) whenever a caller
    asks (``try_run``), one caller at a time.

    ``counters[2i * _LINE]`` is the last run thread i was asked to take part in, set by the
    caller; ``counters[(2i + 1) * _LINE]`` the last run it finished.  Each thread spins on its
    own start counter (so a run for fewer threads wakes no others), the caller on the done
    counters (module docstring); a thread or caller past its spin sleeps on the thread's
    condition variable.  The counters are written and the sleep flags read under the GIL;
    the spins read without it, by an acquire load, and re-take it before going on."""

    def __init__(self, size: int):
        self.size = size
        self.counters = np.zeros(2 * size * _LINE, np.int64)
        self._work: Callable[[int], None] = _nothing
        self._errors: list[BaseException] = []
        self._wake = [threading.Condition() for _ in range(size)]
        self._caller_sleeps = [False] * size
        self._busy = threading.Lock()
        self._run = 0
        for i in range(size):
            threading.Thread(target=self._serve, args=(i,), daemon=True, name=f"w2x-crew-{i}").start()

    def _serve(self, i: int) -> None:
        start, done = 2 * i * _LINE, (2 * i + 1) * _LINE
        seen = 0
        while True:
            if not _spin_while_equal(self.counters, start, seen, SPINS):
                with self._wake[i]:
                    while self.counters[start] == seen:
                        self._wake[i].wait()
            seen = int(self.counters[start])
            try:
                self._work(i)
            except BaseException as e:    # re-raised by the caller
                self._errors.append(e)
            self.counters[done] = seen
            if self._caller_sleeps[i]:
                with self._wake[i]:
                    self._wake[i].notify_all()

    def try_run(self, work: Callable[[int], None], main: Callable[[], None], count: int | None = None) -> bool:
        """Run ``work(i)`` on the first ``count`` threads of the crew (all: None) and ``main()``
        on the caller, and return True once all have returned (raising the first exception
        any of them raised); False, running nothing, when another caller holds the crew."""
        if not self._busy.acquire(blocking=False):
            return False
        count = self.size if count is None else max(0, min(count, self.size))
        try:
            self._errors.clear()
            self._work = work
            self._run += 1
            for i in range(count):
                with self._wake[i]:
                    self.counters[2 * i * _LINE] = self._run
                    self._wake[i].notify_all()
            try:
                main()
            finally:
                self._wait_for(count)
            if self._errors:
                raise self._errors[0]
            return True
        finally:
            self._errors.clear()          # a helper's copy of the caller's error, too
            self._work = _nothing
            self._busy.release()

    def _wait_for(self, count: int) -> None:
        for i in range(count):
            done = (2 * i + 1) * _LINE
            if _spin_until_equal(self.counters, done, self._run, SPINS):
                continue
            with self._wake[i]:
                self._caller_sleeps[i] = True
                try:
                    while self.counters[done] != self._run:
                        self._wake[i].wait()
                finally:
                    self._caller_sleeps[i] = False


def _nothing(i: int) -> None:
    pass
