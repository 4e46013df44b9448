"""Images too big to hold: read in regions, written band by band (distributed stage, I/O).

Reading: a TIFF (tiled or in strips, any compression tifffile decodes) becomes a lazy
``dask.array`` (H, W, S) whose chunks each read only the TIFF segments under them, on the
worker that needs them (``read_lazy``). Other formats cannot be read by region through
Pillow; ``read_whole`` reads them in the client (a quarter of a 2x output's pixels).

Writing: ``write_bands`` fetches the output's blocks one row of blocks (a band) at a time,
in order, and streams them to a tiled TIFF (tifffile, tiles of ``TIFF_TILE``) or a PNG
(pypng, row by row), written to a temporary file beside the target and renamed, as
w2x/io/write.py. The client holds a band and a few tile rows, never the image.

tifffile is the ``dask`` extra's TIFF library (pure Python on NumPy); Zarr was the other
candidate (``dask.array.to_zarr`` lets each worker write its own chunk), left out to keep
the extra small: a band at a time through the client costs a band of memory there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from w2x import atomic

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
WRITE_SUFFIXES = TIFF_SUFFIXES + PNG_SUFFIXES
TIFF_TILE = 512          # output TIFF tile side (a multiple of 16, as TIFF requires)
BIGTIFF_BYTES = 2 ** 32 - 2 ** 28   # past ~3.75 GiB of samples the 32-bit offsets overflow


def _tifffile():
    try:
        import tifffile
    except ImportError:
        raise ImportError("reading and writing big TIFFs needs tifffile; install it with: "
                          "pip install 'w2x[dask]'") from None
    return tifffile


def read_lazy(path: str | Path, chunk: int):
    """A TIFF's first image as a lazy dask.array (H, W, S), chunks ``chunk`` x ``chunk``.

    Raises ValueError for a file tifffile cannot read, planar (separate) samples, or
    samples other than uint8/uint16.
    """
    import dask.array as da
    tifffile = _tifffile()
    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            shape, dtype, contig = page.shape, page.dtype, page.planarconfig == 1
    except (OSError, ValueError, tifffile.TiffFileError) as e:
        raise ValueError(f"{path}: not a readable TIFF ({e})") from None
    if len(shape) == 2:
        shape = (*shape, 1)
    if not contig or len(shape) != 3 or np.dtype(dtype) not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: expected 8- or 16-bit samples stored per pixel (H, W, S), "
                         f"got shape {page.shape} {dtype}; re-save it as a plain RGB TIFF")
    h, w, s = shape
    rows, cols = _split(h, chunk), _split(w, chunk)
    return da.map_blocks(_read_block, str(path), shape, rows, cols, chunks=(rows, cols, (s,)),
                         dtype=dtype, meta=np.empty((0, 0, 0), dtype))


def _split(n: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, n - i) for i in range(0, n, chunk))


def _read_block(path: str, shape, rows, cols, block_id=None) -> np.ndarray:
    i, j, _ = block_id
    r0, c0 = sum(rows[:i]), sum(cols[:j])
    return read_region(path, r0, r0 + rows[i], c0, c0 + cols[j], shape[2])


def read_region(path: str, r0: int, r1: int, c0: int, c1: int, samples: int) -> np.ndarray:
    """Rows ``r0:r1``, columns ``c0:c1`` of a TIFF's first image, reading only the tiles or
    strips that hold them."""
    tifffile = _tifffile()
    with tifffile.TiffFile(path) as tf:
        page, fh = tf.pages[0], tf.filehandle
        out = np.empty((r1 - r0, c1 - c0, samples), page.dtype)
        seg_h, seg_w = ((page.tilelength, page.tilewidth) if page.is_tiled
                        else (page.rowsperstrip or page.imagelength, page.imagewidth))
        across = -(-page.imagewidth // seg_w)                      # segments per row
        for sr in range(r0 // seg_h, (r1 - 1) // seg_h + 1):
            for sc in range(c0 // seg_w, (c1 - 1) // seg_w + 1):
                index = sr * across + sc
                fh.seek(page.dataoffsets[index])
                seg, _, _ = page.decode(fh.read(page.databytecounts[index]), index)
                seg = seg.reshape(seg.shape[-3], seg.shape[-2], -1)   # (1, h, w, S) -> (h, w, S)
                y0, x0 = sr * seg_h, sc * seg_w
                ya, yb = max(r0, y0), min(r1, y0 + seg.shape[0])
                xa, xb = max(c0, x0), min(c1, x0 + seg.shape[1])
                out[ya - r0:yb - r0, xa - c0:xb - c0] = seg[ya - y0:yb - y0, xa - x0:xb - x0]
    return out


def bands(client, array) -> Iterator[np.ndarray]:
    """The rows of blocks of a lazy (H, W, S) array, top to bottom, each (h_i, W, S).

    The whole graph is submitted at once (intermediate passes are computed once, not per
    band); each band's blocks are fetched when the writer reaches it and released then.
    """
    n_rows, n_cols = array.numblocks[:2]
    flat = client.compute([array.blocks[i, j] for i in range(n_rows) for j in range(n_cols)])
    for i in range(n_rows):
        futures = flat[i * n_cols:(i + 1) * n_cols]
        blocks = client.gather(futures)
        for f in futures:
            f.release()
        yield np.concatenate(blocks, axis=1)


def write_bands(path: str | Path, band_iter: Iterator[np.ndarray], shape: tuple[int, int, int],
                dtype, on_band: Callable[[int], None] | None = None) -> None:
    """Write an image given as bands of rows to ``path`` (.tif/.tiff or .png), atomically.

    ``on_band(rows_done)`` is called after each band. Raises ValueError for another
    extension; a failed write leaves no file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"{path}: chunked output is written as TIFF or PNG; use "
                         f"{', '.join(WRITE_SUFFIXES)}")
    counted = _counting(band_iter, on_band)
    with atomic.replacing(path) as f:
        if suffix in TIFF_SUFFIXES:
            _write_tiff(f, counted, shape, dtype)
        else:
            _write_png(f, counted, shape, dtype)


def _counting(band_iter, on_band):
    done = 0
    for band in band_iter:
        yield band
        done += band.shape[0]
        if on_band is not None:
            on_band(done)


def _write_tiff(f, band_iter, shape, dtype) -> None:
    tifffile = _tifffile()
    h, w, s = shape
    big = h * w * s * np.dtype(dtype).itemsize > BIGTIFF_BYTES
    tifffile.imwrite(f, _tiles(band_iter, w, TIFF_TILE), shape=shape, dtype=dtype,
                     tile=(TIFF_TILE, TIFF_TILE), photometric="rgb" if s == 3 else "minisblack",
                     bigtiff=big)


def _tiles(band_iter, width: int, t: int) -> Iterator[np.ndarray]:
    """Re-cut bands of any height into t x t tiles, row-major (the last row and column of
    tiles smaller; tifffile pads them)."""
    held = None
    for band in band_iter:
        held = band if held is None else np.concatenate([held, band])
        while held.shape[0] >= t:
            yield from (held[:t, c:c + t] for c in range(0, width, t))
            held = held[t:]
    if held is not None and held.shape[0]:
        yield from (held[:, c:c + t] for c in range(0, width, t))


def _write_png(f, band_iter, shape, dtype) -> None:
    import png
    h, w, s = shape
    rows = (row.reshape(-1) for band in band_iter for row in band)        # (W, S) -> (W*S,)
    writer = png.Writer(w, h, greyscale=s == 1, alpha=False,
                        bitdepth=8 * np.dtype(dtype).itemsize)
    writer.write(f, rows)
