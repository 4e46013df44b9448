"""Past one machine: w2x on a Dask cluster (optional extra ``pip install w2x[dask]``).

    from distributed import Client
    from w2x.distributed import convert_files, upscale
    with Client("tcp://scheduler:8786") as client:
        summary = convert_files(client, ["frames/"], "/shared/out/")   # one task per file
    big = upscale(dask_array_hw3, mode="scale", style="photo")          # lazy, chunk by chunk

``batch.py`` runs file batches, ``chunks.py`` one image too big for a machine, ``tiff.py``
reads and writes such images lazily, ``cluster.py`` turns ``--cluster`` into a client and
``cli.py`` is what the command line calls. The core never imports this package; Dask is
imported when these functions run, and their modules when they are first asked for (the
command line imports ``cli.py`` alone for its options).
"""
from __future__ import annotations

__all__ = ["convert_files", "run_batch", "upscale"]


def __getattr__(name: str):
    if name in ("convert_files", "run_batch"):
        from w2x.distributed import batch
        return getattr(batch, name)
    if name == "upscale":
        from w2x.distributed.chunks import upscale
        return upscale
    raise AttributeError(f"module 'w2x.distributed' has no attribute {name!r}")
