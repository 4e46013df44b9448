"""An image past one machine's comfort: SIZE x SIZE -> 2*SIZE square, chunk by chunk on Dask.

    PYTHONPATH=. python3 tools/gigapixel.py [--size 8000] [--chunk 1024] [--workers 2]
        [--style upconv_7/art] [--keep DIR]

Writes a tiled TIFF input (lena tiled and noised, generated tile by tile: this script never
holds it either), converts it with ``w2x.distributed.cli.run_chunked`` (the ``--chunk``
path: read lazily, chunks on ``local:N`` worker processes, written band by band as a tiled
TIFF), and reports the time, the peak resident memory of every worker and of this client
process, and what one chunk and the whole image weigh, so that the peak can be read
against both. ``--size 8000`` takes about ten minutes on 2 cores only with a fast CPU or a
GPU worker; smaller sizes show the same bound.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("W2X_MODEL_DIR", str(ROOT.parent / "shared" / "weights"))

import tifffile  # noqa: E402

from w2x.anyscale import Target  # noqa: E402
from w2x.cli.batch import Conversion  # noqa: E402
from w2x.cli.files import Job  # noqa: E402
from w2x.cli.batch import SilentReporter  # noqa: E402
from w2x.workload import TileProgress  # noqa: E402
from w2x.distributed import cluster  # noqa: E402
from w2x.distributed.cli import run_chunked  # noqa: E402
from w2x.pipeline import Options  # noqa: E402

TILE = 512


def peak_rss() -> int:
    """Peak resident memory of the calling process in bytes (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_input(path: Path, size: int) -> None:
    base = np.asarray(Image.open(ROOT.parent / "shared" / "images" / "lena.png").convert("RGB"))
    rng = np.random.default_rng(0)

    def tiles():
        for r in range(0, size, TILE):
            for c in range(0, size, TILE):
                rows = (np.arange(r, r + TILE) % base.shape[0])[:, None]
                cols = (np.arange(c, c + TILE) % base.shape[1])[None, :]
                t = base[rows, cols].astype(np.int16) + rng.integers(-6, 7, (TILE, TILE, 3))
                yield np.clip(t, 0, 255).astype(np.uint8)

    tifffile.imwrite(path, tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(TILE, TILE),
                     photometric="rgb", bigtiff=size * size * 3 > 2 ** 31)


class Rows(SilentReporter):
    def __init__(self):
        self.t0, self.last = time.perf_counter(), 0.0

    def tiles(self, progress: TileProgress) -> None:
        done, total = progress.done, progress.total
        now = time.perf_counter()
        if now - self.last > 30 or done == total:
            self.last = now
            print(f"  {done}/{total} output rows, {now - self.t0:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8000)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--style", default="upconv_7/art")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--keep", help="a folder to keep the input and output in")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(a.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        src, dst = folder / f"in_{a.size}.tif", folder / f"out_{2 * a.size}.tif"
        t = time.perf_counter()
        make_input(src, a.size)
        print(f"input {src.name}: {src.stat().st_size / 2**20:.0f} MiB in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        conv = Conversion(Options(mode="scale", style=a.style, backend=a.backend), Target(2.0))
        client_before = peak_rss()
        with cluster.connect(f"local:{a.workers}") as client:
            client.wait_for_workers(a.workers)
            base = client.run(peak_rss)
            s = run_chunked(client, [Job(src, dst, 1)], conv, Rows(), chunk=a.chunk)
            peaks = client.run(peak_rss)
        assert s.written, s.failed
        with tifffile.TiffFile(dst) as tf:
            shape = tf.pages[0].shape
        mib = 2 ** 20
        out_bytes = (2 * a.size) ** 2 * 3 * 4                  # float32 samples
        chunk_bytes = (2 * a.chunk) ** 2 * 3 * 4
        print(f"{a.size}x{a.size} -> {shape[1]}x{shape[0]} ({a.style}, chunk {a.chunk}, "
              f"{a.workers} workers): {s.seconds:.0f} s, "
              f"{a.size * a.size / s.seconds / 1e6:.3f} Mpx/s of input")
        print(f"  worker peak RSS MiB: {', '.join(f'{v / mib:.0f}' for v in peaks.values())} "
              f"(idle: {', '.join(f'{v / mib:.0f}' for v in base.values())})")
        print(f"  client peak RSS MiB: {peak_rss() / mib:.0f} "
              f"(before the run {client_before / mib:.0f})")
        print(f"  one output chunk (float32): {chunk_bytes / mib:.0f} MiB; the whole output: "
              f"{out_bytes // 4 / mib:.0f} MiB as uint8, {out_bytes / mib:.0f} MiB as float32")


if __name__ == "__main__":
    main()
