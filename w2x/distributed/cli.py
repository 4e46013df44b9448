"""What the command line calls for ``--cluster`` and ``--chunk`` (distributed stage, CLI side).

The hook, for w2x/cli/main.py::

    from w2x.distributed import cli as dcli            # imports no Dask
    dcli.add_arguments(p.add_argument_group("cluster (Dask)"))
    ...
    if dcli.wanted(args):
        dcli.check_jobs(jobs, conv, args)              # before any file is read
        summary = dcli.run_batch(jobs, conv, reporter, existing, args)
    else:
        summary = batch.run_jobs(...)

``run_batch`` returns the ``Summary`` of ``batch.run_jobs`` (same lists, same messages), so
main prints the same summary and computes the same exit codes; a bad ``--cluster`` or a
missing Dask raises ``files.UsageError`` (exit 2), an unreachable scheduler ``OSError``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from w2x.cli import batch
from w2x.cli.batch import Conversion, Reporter, Summary
from w2x.cli.files import Job, UsageError

WORKER_LOST_NOTE = ("a task whose worker dies is run again elsewhere (up to "
                    "distributed.scheduler.allowed-failures times, then its files fail)")


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {n}")
    return n


def add_arguments(group) -> None:
    """Add ``--cluster``, ``--files-per-task`` and ``--chunk`` to an argparse group."""
    group.add_argument("--cluster", metavar="SPEC",
                       help="run on Dask: local:N (N worker processes here), tcp://HOST:PORT "
                            "(a running `dask scheduler`) or a scheduler file; outputs are "
                            "written by the workers, so -o must be shared storage")
    group.add_argument("--files-per-task", type=_positive, default=1, metavar="N",
                       help="files per cluster task (default 1)")
    group.add_argument("--chunk", type=_positive, metavar="PX",
                       help="convert each image in chunks of PX x PX pixels (TIFF read lazily, "
                            ".tif/.png written band by band) on the cluster (default local); "
                            "for images too big for one machine")


def wanted(args) -> bool:
    """True when the run goes to Dask (``--cluster`` or ``--chunk`` given)."""
    return args.cluster is not None or args.chunk is not None


def check_jobs(jobs: list[Job], conv: Conversion, args) -> None:
    """Refuse, before any file is read, what the Dask paths cannot do (``UsageError``)."""
    if getattr(args, "threads", None) is not None:
        raise UsageError("--threads sets this process's threads; on a cluster each worker's are "
                         "set where it starts (local:N gives each worker cores/N)")
    if args.chunk is None:
        return
    from w2x.distributed.lazyio import WRITE_SUFFIXES
    scale = 1.0 if conv.opts.mode == "noise" else 2.0
    if (conv.target.width, conv.target.height) != (None, None) or conv.target.scale != scale:
        raise UsageError(f"--chunk converts at {scale:g}x only (one model pass); drop "
                         "--scale/--width/--height")
    for job in jobs:
        if job.dst.suffix.lower() not in WRITE_SUFFIXES:
            raise UsageError(f"{job.dst}: --chunk writes {', '.join(WRITE_SUFFIXES)}; "
                             "choose such an -o or -f tif")


def run_batch(jobs: list[Job], conv: Conversion, reporter: Reporter | None, existing: str,
              args, *, plans=None) -> Summary:
    """The batch on Dask, as ``batch.run_jobs`` does it in one process.

    ``args`` holds ``cluster`` (a spec, or None: ``local``), ``files_per_task`` and
    ``chunk`` (None: one task per file group; else each image chunk by chunk). ``cluster``
    may also be a ``distributed.Client`` (tests, library callers).
    """
    from w2x.distributed import cluster as clusters
    spec = getattr(args, "cluster", None) or "local"
    chunk = getattr(args, "chunk", None)
    files_per_task = getattr(args, "files_per_task", 1)
    try:
        clusters.require_dask()
        if not isinstance(spec, str):
            return _run(spec, jobs, conv, reporter, existing, plans, chunk, files_per_task)
        with clusters.connect(spec) as client:
            return _run(client, jobs, conv, reporter, existing, plans, chunk, files_per_task)
    except (ImportError, clusters.ClusterSpecError) as e:
        raise UsageError(str(e)) from None


def _run(client, jobs, conv, reporter, existing, plans, chunk, files_per_task) -> Summary:
    if chunk is None:
        from w2x.distributed.batch import run_batch as run
        return run(client, jobs, conv, reporter, existing=existing, plans=plans,
                   files_per_task=files_per_task)
    return run_chunked(client, jobs, conv, reporter, existing=existing, chunk=chunk,
                       plans=plans)


def run_chunked(client, jobs: list[Job], conv: Conversion, reporter: Reporter | None = None, *,
                existing: str = "replace", chunk: int, plans=None) -> Summary:
    """Convert each job's image chunk by chunk on the cluster, one image after another:
    ``batch.run_jobs`` with ``convert_chunked`` for each file (the same events, skips,
    refusals and summary); the tile events count output rows written."""
    from w2x import pipeline
    plans = plans if plans is not None else pipeline.resolve_plans(conv.opts)

    def convert(src, dst, conv, *, plans, tiles):
        return convert_chunked(client, src, dst, conv, chunk, plans[conv.opts.mode], tiles)
    return batch.run_jobs(jobs, conv, reporter, existing=existing, plans=plans, convert=convert)


def convert_chunked(client, src: Path, dst: Path, conv: Conversion, chunk: int, plan,
                    progress=None) -> tuple[int, int]:
    """Read ``src`` lazily (TIFF) or whole, upscale in chunks, write ``dst`` band by band;
    ``progress(rows done, rows)``.  Returns the output's (width, height)."""
    import dask.array as da
    from w2x.color import quantize, to_unit_float
    from w2x.distributed import lazyio
    from w2x.distributed.chunks import upscale
    if src.suffix.lower() in lazyio.TIFF_SUFFIXES:
        samples = lazyio.read_lazy(src, chunk)
        if samples.shape[2] != 3:
            raise ValueError(f"{src}: --chunk takes RGB images, this one has "
                             f"{samples.shape[2]} samples per pixel")
        x = samples.map_blocks(to_unit_float, dtype="float32")   # the output's depth is conv's
    else:
        x = da.from_array(_read_whole(src, conv), chunks=(chunk, chunk, 3))
    o = conv.opts
    y = upscale(x, mode=o.mode, noise_level=o.noise_level, style=o.style,
                model_dir=o.model_dir, tile_size=o.tile_size, tta_level=o.tta_level,
                backend=o.backend, precision=o.precision, batch_size=o.batch_size, plan=plan)
    y = y.map_blocks(quantize, conv.depth, dtype="uint8" if conv.depth == 8 else "uint16")
    rows = y.shape[0]
    lazyio.write_bands(dst, lazyio.bands(client, y), y.shape, y.dtype,
                       None if progress is None else (lambda done: progress(done, rows)))
    return y.shape[1], y.shape[0]


def _read_whole(src: Path, conv: Conversion):
    """A non-TIFF input, read in this process (Pillow reads no regions): (H, W, 3) float."""
    from w2x.io import read_image
    pic = read_image(src, max_pixels=conv.max_pixels)
    if pic.alpha is not None:
        raise ValueError(f"{src}: has transparency, which --chunk does not convert; "
                         "drop --chunk or flatten the image")
    return pic.rgb.transpose(1, 2, 0)                                 # (3, H, W) -> (H, W, 3)
