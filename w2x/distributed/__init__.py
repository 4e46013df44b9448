"""Past one machine: w2x on a Dask cluster (optional extra ``pip install w2x[dask]``).

    from distributed import Client
    from w2x.distributed import convert_files, upscale
    with Client("tcp://scheduler:8786") as client:
        summary = convert_files(client, ["frames/"], "/shared/out/")   # one task per file
    big = upscale(dask_array_hw3, mode="scale", style="photo")          # lazy, chunk by chunk

``batch.py`` runs file batches, ``chunks.py`` one image too big for a machine, ``tiff.py``
reads and writes such images lazily, ``cluster.py`` turns ``--cluster`` into a client and
``cli.py`` is what the command line calls. The core never imports this package; Dask is
imported when these functions run.
"""
from w2x.distributed.batch import convert_files, run_batch
from w2x.distributed.chunks import upscale

__all__ = ["convert_files", "run_batch", "upscale"]
