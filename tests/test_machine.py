"""The command line's process settings (w2x/cli/machine.py): glibc's malloc keeps freed memory.

Each case runs in a fresh interpreter: the settings are for the whole process.
"""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

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
    from w2x.cli import machine
    monkeypatch.setattr(machine.sys, "platform", "darwin")
    assert machine.reuse_freed_memory() is False
