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

import os
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
# int64 counters per cache line: each thread's done-counter on a line of its own.
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
    asks (``run``), one caller at a time.

    ``counters[0]`` is the run's number, set by the caller; ``counters[(i + 1) * _LINE]`` the
    last run thread i finished.  Both sides spin on them (module docstring) and then sleep
    on ``_wake``; every counter write happens under the GIL, whose lock orders it before
    the other side's next look."""

    def __init__(self, size: int):
        self.size = size
        self.counters = np.zeros((size + 1) * _LINE, np.int64)
        self._work: Callable[[int], None] = lambda i: None
        self._errors: list[BaseException] = []
        self._wake = threading.Condition()
        self._caller_sleeps = False
        self._busy = threading.Lock()
        self.pid = os.getpid()            # the threads exist only in the process that made them
        for i in range(size):
            threading.Thread(target=self._serve, args=(i,), daemon=True, name=f"w2x-crew-{i}").start()

    def _serve(self, i: int) -> None:
        seen = 0
        done = (i + 1) * _LINE
        while True:
            if not _spin_while_equal(self.counters, 0, seen, SPINS):
                with self._wake:
                    while self.counters[0] == seen:
                        self._wake.wait()
            seen = int(self.counters[0])
            try:
                self._work(i)
            except BaseException as e:    # re-raised by the caller
                self._errors.append(e)
            self.counters[done] = seen
            if self._caller_sleeps:
                with self._wake:
                    self._wake.notify_all()

    def try_run(self, work: Callable[[int], None], main: Callable[[], None]) -> bool:
        """Run ``work(i)`` on every thread of the crew and ``main()`` on the caller, and return
        True once all have returned (re-raising the first exception any raised); False,
        running nothing, when another caller holds the crew."""
        if not self._busy.acquire(blocking=False):
            return False
        try:
            self._work = work
            run = int(self.counters[0]) + 1
            with self._wake:
                self.counters[0] = run
                self._wake.notify_all()
            try:
                main()
            finally:
                self._wait_for(run)
            if self._errors:
                error = self._errors[0]
                self._errors.clear()
                raise error
            return True
        finally:
            self._work = lambda i: None
            self._busy.release()

    def _wait_for(self, run: int) -> None:
        for i in range(self.size):
            done = (i + 1) * _LINE
            if _spin_until_equal(self.counters, done, run, SPINS):
                continue
            with self._wake:
                self._caller_sleeps = True
                while self.counters[done] != run:
                    self._wake.wait()
                self._caller_sleeps = False
