"""The machine a run uses (CLI stage): CPU threads, the GPU, and what to tell about them.

``--threads N`` limits the BLAS library NumPy uses (threadpoolctl, whichever BLAS it is)
and Numba's pool; ``-g/--gpu N`` makes CUDA device N current for the cupy backend (-1: the
CPU). The library is not told: ``pipeline.Options`` has no device, and the backends run on
the current device.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Iterator

from w2x.io import png_encode
from w2x.nn.backend import BackendUnavailableError, get_backend
from w2x.pipeline import Plan


class DeviceError(ValueError):
    """A device that cannot be used as asked (one line: what is wrong, what to give)."""


def choose_device(gpu: int | None, backend: str) -> str:
    """The backend for ``-g gpu`` and ``--backend backend``; makes device ``gpu`` current.

    ``-g -1`` is the CPU (``auto`` becomes numba, else numpy); ``-g N`` is CUDA device N
    through CuPy (``auto`` becomes cupy). Raises DeviceError for a clash with ``backend``,
    no CuPy or CUDA, or no device N.
    """
    if gpu is None:
        return backend
    if gpu < 0:
        if backend == "cupy":
            raise DeviceError(f"-g {gpu} asks for the CPU but --backend cupy for the GPU; drop one")
        return backend if backend != "auto" else _best_cpu_backend()
    if backend in ("numpy", "numba"):
        raise DeviceError(f"-g {gpu} asks for a GPU but --backend {backend} runs on the CPU; "
                          "drop one")
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except ImportError:
        raise DeviceError(f"-g {gpu}: no CUDA here (CuPy is not installed: pip install "
                          "'w2x[gpu]'); use -g -1 for the CPU") from None
    except Exception as e:          # cupy's CUDARuntimeError: no driver, no device
        raise DeviceError(f"-g {gpu}: no CUDA device usable here ({e}); use -g -1 for the CPU") from None
    if gpu >= count:
        raise DeviceError(f"-g {gpu}: this machine has {count} CUDA device(s), "
                          f"numbered from 0{f' to {count - 1}' if count > 1 else ''}")
    cupy.cuda.Device(gpu).use()
    return "cupy"


def _best_cpu_backend() -> str:
    try:
        return get_backend("numba").name
    except BackendUnavailableError:
        return "numpy"


def resolve_backend(name: str, precision: str = "fp32") -> tuple[str, str | None]:
    """(the backend ``name`` runs on, a note when ``auto`` fell back to slow numpy).

    Raises BackendUnavailableError or ValueError as ``get_backend``.
    """
    chosen = get_backend(name, precision).name
    if name != "auto" or chosen != "numpy":
        return chosen, None
    try:
        get_backend("numba")
    except BackendUnavailableError as e:
        why = ("Numba is not installed" if importlib.util.find_spec("numba") is None
               else f"Numba did not load ({e.__context__ or e})")   # the ImportError
        return chosen, (f"--backend auto runs on numpy, several times slower than numba: {why}; "
                        "pip install 'w2x[cpu]'")
    return chosen, None


def start_numba(backend: str) -> None:
    """Start Numba's CPU target now, with SciPy hidden, when the run uses the numba backend.

    When its target starts (at the first compiled kernel the process runs), Numba imports
    ``scipy.linalg`` (0.15-0.3 s of start-up) only to learn whether ``np.dot`` and
    ``np.linalg`` may be compiled in jitted code (numba/np/arraymath.py ``_check_blas``).
    w2x's kernels call no BLAS from jitted code (their GEMMs are NumPy's ``matmul``, called
    from Python, or kernels/cpu_gemm.py's own), so the command line, which owns its process, starts the target while
    ``import scipy.linalg`` fails.  A kernel that did call ``np.dot`` would then fail to
    compile in the ``w2x`` command (tests/test_startup.py runs it).  Where scipy.linalg is
    already imported, or for another backend, nothing is done; the library never does this.
    """
    if backend != "numba" or "scipy.linalg" in sys.modules:
        return
    from numba.core.registry import cpu_target
    sys.modules["scipy.linalg"] = None             # `import scipy.linalg...` raises ImportError
    try:
        cpu_target.target_context.refresh()        # what Numba runs before its first kernel
    finally:
        del sys.modules["scipy.linalg"]


# glibc's mallopt parameters (malloc.h) and the most M_TRIM_THRESHOLD takes (a C int)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_INT_MAX = 2**31 - 1


def reuse_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for the next allocation instead of handing it
    back to the kernel; True where the C library took the settings (glibc), else False.

    Every layer allocates its output, tens of MB for a 256-px tile.  glibc serves blocks
    that large by a fresh ``mmap`` and unmaps them when freed, so every layer of every tile
    page-faults its output in and the kernel zeroes it first.  Here big blocks come from
    the heap (``M_MMAP_MAX`` 0) and the heap's free top is never trimmed: vgg_7's forward of
    a 270-px tile on 2 threads took 62-66 ms as glibc does it and 52 ms so (tools/speed.py
    ``--torch-malloc-tuned`` sets the same for PyTorch).  The process keeps its peak
    memory until it ends, so only the command line, which owns its process, does this;
    the library never does.  (glibc still maps blocks of over 64 MiB that threads other
    than the main one allocate: their heaps cannot grow past that.)
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt        # the C library this process runs on
    except (OSError, AttributeError):              # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    took = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, _INT_MAX)]   # 1: taken
    return all(took)


@contextlib.contextmanager
def one_cpu_per_thread(backend: str) -> Iterator[bool]:
    """Inside the block, the calling thread and each worker thread of the numba backend run
    on a CPU of their own (``cpu_numba.one_cpu_per_thread``, which says why: a training
    step's many short blocks); yields whether they were bound (not for another backend, nor
    where Numba does not load: the run itself then says what to install).  ``w2x train``
    does this for its whole run; the library never does."""
    try:
        from w2x.nn import kernel_files
        kernels = kernel_files.module("cpu_numba") if backend == "numba" else None
    except ImportError:
        kernels = None
    if kernels is None:
        yield False
        return
    with kernels.one_cpu_per_thread() as bound:
        yield bound


def model_paths(plans: dict[str, Plan]) -> list[str]:
    """The model files of a run's plans, each once, in the order they run."""
    paths = {}
    for plan in plans.values():
        for _, model in plan.steps:
            paths[str(model.path)] = None
        if plan.scale_model is not None:
            paths[str(plan.scale_model.path)] = None
    return list(paths)


def model_label(paths: list[str]) -> str:
    """``arch/style`` of the model folders, e.g. ``cunet/art`` or ``vgg_7/photo+upconv_7/photo``."""
    return "+".join(dict.fromkeys(f"{Path(p).parent.parent.name}/{Path(p).parent.name}"
                                  for p in paths))


@contextlib.contextmanager
def threads(n: int | None, note: Callable[[str], None] | None = None) -> Iterator[None]:
    """Limit BLAS, Numba and PNG encoding to ``n`` threads inside the block (None: leave
    them as they are).

    ``note`` receives a line when a pool cannot be limited as asked (no BLAS that
    threadpoolctl knows, Numba capped by NUMBA_NUM_THREADS).
    """
    if n is None:
        yield
        return
    note = note or (lambda line: None)
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_info, threadpool_limits
        except ImportError:
            note(f"note: --threads {n}: threadpoolctl is not installed, so NumPy's BLAS keeps "
                 "its own thread count; pip install threadpoolctl")
        else:
            stack.enter_context(threadpool_limits(limits=n))
            if not any(lib["user_api"] == "blas" for lib in threadpool_info()):
                note(f"note: --threads {n}: no BLAS library found to limit (threadpoolctl)")
        if importlib.util.find_spec("numba") is not None:
            import numba
            cap = numba.config.NUMBA_NUM_THREADS
            if n > cap:
                note(f"note: --threads {n}: Numba has at most {cap} threads here "
                     "(NUMBA_NUM_THREADS); using that many")
            stack.callback(numba.set_num_threads, numba.get_num_threads())
            numba.set_num_threads(min(n, cap))
        stack.callback(setattr, png_encode, "thread_limit", png_encode.thread_limit)
        png_encode.thread_limit = n
        yield
