"""The command line's process settings (w2x/cli/machine.py): glibc's malloc keeps freed memory
(each case in a fresh interpreter: the settings are for the whole process); the threads of a
training run each on a CPU of their own (undone after the block, so in this process).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from w2x.cli import machine

ROOT = Path(__file__).resolve().parents[1]

# Allocates a 64 MiB block and reads glibc's count of bytes it holds in mappings of their
# own (mallinfo2's hblkhd): glibc serves a block that big by a mapping unless told not to.
_CHILD = """
import ctypes, sys
sys.path.insert(0, {root!r})
import numpy as np
from w2x.cli import machine
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
took = machine.reuse_freed_memory() if {tune} else None
before = mallinfo2().hblkhd
block = np.ones(64 << 18, np.float32)          # 64 MiB
print(took, (mallinfo2().hblkhd - before) >> 20)
"""


def _run(tune: bool) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), tune=tune)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


_LIBC, _VERSION = platform.libc_ver()


@pytest.mark.skipif(_LIBC != "glibc" or tuple(map(int, _VERSION.split(".")[:2])) < (2, 33),
                    reason="mallopt settings are glibc's; mallinfo2 needs glibc 2.33")
def test_reuse_freed_memory_takes_big_blocks_from_the_heap():
    assert _run(tune=False) == ("None", 64)         # glibc's default: a mapping of its own
    assert _run(tune=True) == ("True", 0)           # from the heap instead


def test_reuse_freed_memory_is_a_no_op_off_linux(monkeypatch):
    monkeypatch.setattr(machine.sys, "platform", "darwin")
    assert machine.reuse_freed_memory() is False


def _crew_affinities(kn) -> list[frozenset]:
    """The CPUs each thread of kernels/cpu_crew.py's crew may run on, as each reports them."""
    crew = kn._the_crew()
    seen = [None] * crew.size

    def report(i):
        seen[i] = frozenset(os.sched_getaffinity(0))
    assert crew.try_run(report, lambda: None)
    return seen


def test_one_cpu_per_thread_binds_the_caller_and_the_workers_and_lets_them_go():
    """The caller on the first allowed CPU, each numba worker on one of the next; after the
    block, both may use every CPU they could before."""
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs Linux and at least 2 CPUs to bind threads to")
    pytest.importorskip("numba")
    from w2x.nn import kernel_files
    kn = kernel_files.module("cpu_numba")
    before = os.sched_getaffinity(0)
    cpus = sorted(before)
    with machine.one_cpu_per_thread("numba") as bound:
        assert bound
        assert os.sched_getaffinity(0) == {cpus[0]}
        seen = {frozenset(kn._pool().submit(os.sched_getaffinity, 0).result()) for _ in range(8)}
        assert seen <= {frozenset({c}) for c in cpus[1:]} and seen
        assert set(_crew_affinities(kn)) <= {frozenset({c}) for c in cpus[1:]}
    assert os.sched_getaffinity(0) == before
    assert kn._pool().submit(os.sched_getaffinity, 0).result() == before
    assert set(_crew_affinities(kn)) == {frozenset(before)}
    with pytest.raises(KeyError):                           # an error inside: let go all the same
        with machine.one_cpu_per_thread("numba"):
            raise KeyError("inside")
    assert os.sched_getaffinity(0) == before
    assert kn._pool().submit(os.sched_getaffinity, 0).result() == before
    assert set(_crew_affinities(kn)) == {frozenset(before)}
    with machine.one_cpu_per_thread("numpy") as bound:     # no worker threads to place
        assert not bound and os.sched_getaffinity(0) == before
