"""Throughput of a batch on a Dask LocalCluster against the single-process loop, same cores.

    PYTHONPATH=. python3 tools/cluster_speed.py [--files 40] [--size 96] [--workers 2]
        [--style upconv_7/art] [--mode scale] [--files-per-task 1]

Writes ``--files`` crops of ../shared/images (``--size`` px square) into a temporary folder,
then converts them (1) with ``w2x.cli.batch.run_jobs`` in this process and (2) with
``w2x.distributed.run_batch`` on ``local:N`` workers (one thread each, the cores split
between them). Both are warmed first (models loaded, Numba kernels loaded from its cache,
one file converted), so the times compare steady throughput; the cluster's start-up is
reported on its own. Prints seconds, files/s and the ratio cluster / single process.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("W2X_MODEL_DIR", str(ROOT.parent / "shared" / "weights"))

from w2x import pipeline  # noqa: E402
from w2x.anyscale import Target  # noqa: E402
from w2x.cli import batch  # noqa: E402
from w2x.cli import files  # noqa: E402
from w2x.cli.batch import Conversion  # noqa: E402
from w2x.distributed import cluster  # noqa: E402
from w2x.distributed.batch import run_batch  # noqa: E402
from w2x.pipeline import Options  # noqa: E402

IMAGES = ROOT.parent / "shared" / "images"


def make_inputs(folder: Path, n: int, size: int) -> None:
    names = sorted(p for p in IMAGES.iterdir() if p.suffix in (".png", ".jpg"))
    rng = np.random.default_rng(0)
    for k in range(n):
        im = Image.open(names[k % len(names)]).convert("RGB")
        im = im.resize((max(im.width, size), max(im.height, size)))
        x, y = rng.integers(0, im.width - size + 1), rng.integers(0, im.height - size + 1)
        im.crop((x, y, x + size, y + size)).save(folder / f"f{k:04d}.png")


def jobs_for(src: Path, out: Path, mode: str):
    jobs = files.plan_jobs(files.expand_inputs([str(src)]), str(out) + "/", mode=mode)
    files.prepare_output_dirs(jobs)
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--style", default="upconv_7/art")
    ap.add_argument("--mode", default="scale")
    ap.add_argument("--files-per-task", type=int, default=1)
    a = ap.parse_args()
    scale = 1.0 if a.mode == "noise" else 2.0
    conv = Conversion(Options(mode=a.mode, style=a.style), Target(scale))
    plans = pipeline.resolve_plans(conv.opts)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        (tmp / "warm").mkdir()
        make_inputs(tmp / "in", a.files, a.size)
        make_inputs(tmp / "warm", 2 * a.workers, a.size)

        batch.run_jobs(jobs_for(tmp / "warm", tmp / "w1", a.mode), conv, plans=plans)
        t = time.perf_counter()
        one = batch.run_jobs(jobs_for(tmp / "in", tmp / "one", a.mode), conv, plans=plans)
        t_one = time.perf_counter() - t

        t = time.perf_counter()
        with cluster.connect(f"local:{a.workers}") as client:
            client.wait_for_workers(a.workers)
            t_start = time.perf_counter() - t
            run_batch(client, jobs_for(tmp / "warm", tmp / "w2", a.mode), conv, plans=plans)
            t = time.perf_counter()
            many = run_batch(client, jobs_for(tmp / "in", tmp / "many", a.mode), conv,
                             plans=plans, files_per_task=a.files_per_task)
            t_many = time.perf_counter() - t
    assert len(one.written) == len(many.written) == a.files, (one.failed, many.failed)
    print(f"{a.files} files of {a.size} px, {a.style} {a.mode}, {os.cpu_count()} cores")
    print(f"  one process      : {t_one:7.2f} s  {a.files / t_one:6.2f} files/s")
    print(f"  local:{a.workers} cluster : {t_many:7.2f} s  {a.files / t_many:6.2f} files/s"
          f"  (start-up {t_start:.1f} s, not counted)")
    print(f"  cluster / one process = {t_many / t_one:.3f}")


if __name__ == "__main__":
    main()
