"""Atomic file replacement, for every stage that writes a file (io, download, psnr).

A file is written under a unique hidden name in its target's folder and renamed over the
target (``os.replace``, atomic on one file system), so readers see the old file or the
complete new one, and a failure leaves no partial file behind.
"""
from __future__ import annotations

import contextlib
import glob
import os
import secrets
from pathlib import Path
from typing import IO, Iterator

TMP_SUFFIX = ".tmp"   # temporaries are ".<name>.<8 hex digits>.tmp" beside their target


@contextlib.contextmanager
def replacing(path, *, text: bool = False, **open_kw) -> Iterator[IO]:
    """Yield a new file beside ``path``; on a clean exit it replaces ``path``.

    Parameters
    ----------
    path : str or os.PathLike; its folder must exist
    text : open in text mode (``open_kw`` such as ``newline=""`` or ``encoding`` apply)

    The temporary file is created with ``"x"`` (never clobbering) and permissions from the
    umask, like any new file. On any error, the write's or the body's, it is removed and the
    error propagates; ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    f = open(tmp, "x" if text else "xb", **open_kw)
    try:
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see ``replacing``)."""
    with replacing(path) as f:
        f.write(data)


def stray_temporaries(path) -> list[Path]:
    """The temporaries of ``path`` that a killed writer left behind (a process killed
    between writing and renaming leaves one, never a partial ``path``)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}"))
