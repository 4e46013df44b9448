"""One training step (forward + backward + Adam, batch 16, crop 48) of vgg_7 and upconv_7:
w2x on a backend against PyTorch CPU, in this process with the same thread count.

    PYTHONPATH=. python3 tools/train_speed.py [--backend numba] [--repeats 5] [--threads 2]

Prints milliseconds per step (medians) and the median ratios w2x / torch of interleaved
steps, wall and CPU time (the issue's target: <= 1.0); run it on a quiet machine and note
`uptime` beside the figures.  glibc's malloc is set as `w2x train` sets it
(``machine.reuse_freed_memory``), for both sides: they share the process.  w2x's steps
run with one CPU per thread (``machine.one_cpu_per_thread``), as ``w2x train`` runs them;
the binding is made and undone outside the timed calls, and torch's steps run unbound.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numba
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from w2x.cli import machine
from w2x.nn import grad
from w2x.train.adam import Adam
from w2x.train.loop import TrainConfig, he_init, train_step
from w2x.train import data

CROP, BATCH, CHANNELS = 48, 16, 3
# Pause before each timed step: torch's OpenMP threads (and OpenBLAS's, after a threaded
# GEMM) busy-wait for a while after returning, which would bill the next step, whichever
# side it is (tools/speed.py does the same).
SETTLE_S = 0.2


def _interleaved_times(fns, settings, repeats: int) -> tuple[list[list[float]], list[list[float]]]:
    """Wall and CPU seconds (all threads of this process) per call of each of ``fns``, each
    call inside its ``settings()`` context (entered and left outside the timed call), the
    calls interleaved (a, b, a, b, ...) so that a load from other processes on this shared
    machine slows both sides alike.  At one thread the CPU time is the work alone, which a
    loaded machine does not inflate; at more, it also counts threads that spin-wait."""
    for fn, setting in zip(fns, settings):
        with setting():
            fn()                          # warm-up (numba compiles, torch allocates)
    times = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(repeats):
        for fn, setting, ts, cs in zip(fns, settings, times, cpu):
            with setting():
                time.sleep(SETTLE_S)
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                ts.append(time.perf_counter() - t0)
                cs.append(time.process_time() - c0)
    return times, cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numba")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    machine.reuse_freed_memory()            # as `w2x train` does; torch in this process too
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)     # the worker threads of w2x's GEMM primitives
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("train_twin", Path(__file__).parent / "train_twin.py")
    twin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twin)
    be = grad.training_backend(args.backend)
    rng = np.random.default_rng(0)
    for arch in ("vgg_7", "upconv_7"):
        recipe = data.Recipe(arch, CHANNELS, "scale", crop_size=CROP)
        s, t = recipe.input_size, CROP - 2 * recipe.offset
        x = rng.uniform(0, 1, (CHANNELS, BATCH, s, s)).astype(np.float32)
        y = rng.uniform(0, 1, (CHANNELS, BATCH, t, t)).astype(np.float32)
        params, adam = he_init(arch, CHANNELS, rng), Adam()
        cfg = TrainConfig(arch, "scale", ".", "unused.json")
        tparams = twin.to_torch(arch, params)
        opt = torch.optim.Adam([v for wb in tparams.values() for v in wb], lr=0.00025)
        tx, ty = torch.tensor(x.transpose(1, 0, 2, 3)), torch.tensor(y.transpose(1, 0, 2, 3))

        def torch_step():
            opt.zero_grad()
            twin.torch_loss(twin.torch_forward(arch, tparams, tx), ty).backward()
            opt.step()

        def our_step():
            train_step(cfg, params, adam, x, y, be)
        # w2x's steps with one CPU per thread, as `w2x train` runs them; torch's as it comes
        settings = [lambda: machine.one_cpu_per_thread(args.backend), contextlib.nullcontext]
        with threadpool_limits(args.threads):     # NumPy's BLAS at the same thread count
            (t_ours, t_theirs), (c_ours, c_theirs) = _interleaved_times([our_step, torch_step], settings, args.repeats)
        ours, theirs = statistics.median(t_ours), statistics.median(t_theirs)
        ratio = statistics.median(a / b for a, b in zip(t_ours, t_theirs))
        cpu_ratio = statistics.median(a / b for a, b in zip(c_ours, c_theirs))
        print(f"{arch}: w2x {args.backend} {ours * 1000:.1f} ms/step, torch CPU {theirs * 1000:.1f} ms/step, "
              f"ratio {ratio:.2f} (CPU-time ratio {cpu_ratio:.2f}; median of {args.repeats} interleaved pairs; "
              f"{args.threads} threads, batch {BATCH}, crop {CROP})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
