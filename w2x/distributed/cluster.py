"""Where the work runs: a ``--cluster`` spec turned into a Dask client (distributed stage).

``local:N`` starts a ``LocalCluster`` of N worker processes on this machine, ``local`` one
per core; ``tcp://HOST:PORT`` (or any Dask address: ``tls://``, ``ucx://``, ``inproc://``)
connects to a running scheduler; anything else must be a scheduler file, as written by
``dask scheduler --scheduler-file FILE``. Dask is imported here, never by the core.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

# A local worker computes on one thread and its native libraries are held to its share
# of the cores: Numba's GEMM threads (kernels/cpu_numba.py) and BLAS otherwise use all of
# them in every worker, N workers x N threads on N cores.
_THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "MKL_NUM_THREADS")
_LOCAL = re.compile(r"local(?::(\d+))?$")
_ADDRESS = re.compile(r"[a-z]+://")
INSTALL_HINT = "install Dask with: pip install 'w2x[dask]'"


class ClusterSpecError(ValueError):
    """A ``--cluster`` value that names no cluster w2x can reach or start."""


def require_dask():
    """Import ``distributed`` or raise ImportError with the install command."""
    try:
        import dask.array  # noqa: F401
        import distributed
    except ImportError as e:
        raise ImportError(f"the Dask features need dask[distributed] ({e.name} is missing); "
                          f"{INSTALL_HINT}") from None
    return distributed


def parse_spec(spec: str) -> tuple[str, int | str]:
    """``("local", workers)``, ``("address", addr)`` or ``("file", path)`` for a spec.

    >>> parse_spec("local:2")
    ('local', 2)
    """
    m = _LOCAL.match(spec)
    if m:
        n = int(m.group(1)) if m.group(1) else (os.cpu_count() or 1)
        if n < 1:
            raise ClusterSpecError(f"--cluster {spec}: give at least one worker, e.g. local:2")
        return "local", n
    if _ADDRESS.match(spec):
        return "address", spec
    if Path(spec).is_file():
        return "file", spec
    raise ClusterSpecError(f"--cluster {spec}: expected local:N, a scheduler address such as "
                           "tcp://HOST:8786, or a scheduler file (dask scheduler "
                           "--scheduler-file FILE)")


def worker_environment(n_workers: int, cores: int | None = None) -> dict[str, str]:
    """Thread limits for each of ``n_workers`` local workers sharing ``cores``."""
    share = max(1, (cores or os.cpu_count() or 1) // n_workers)
    return {name: str(share) for name in _THREAD_VARIABLES}


@contextlib.contextmanager
def connect(spec: str):
    """A ``distributed.Client`` for ``spec``, closed (with its local cluster) on exit.

    Raises ClusterSpecError for a malformed spec, OSError (Dask's own message) when the
    scheduler cannot be reached, ImportError when Dask is not installed.
    """
    kind, where = parse_spec(spec)
    distributed = require_dask()
    if kind == "local":
        cluster = distributed.LocalCluster(
            n_workers=where, threads_per_worker=1, processes=True, dashboard_address=None,
            env=worker_environment(where))
        with cluster, distributed.Client(cluster) as client:
            yield client
        return
    kw = {"address": where} if kind == "address" else {"scheduler_file": where}
    with distributed.Client(**kw, timeout="20s") as client:
        yield client
