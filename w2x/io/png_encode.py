"""Image output, PNG: the image chunks of a PNG, its rows filtered and deflated on several
threads (stage 3, called by ``w2x/io/write.py``, which adds the metadata chunks).

The original writes its PNGs through libpng (``image_loader.encode_png``, nagadomi/waifu2x
``lib/image_loader.lua:12-59``); this encoder makes the choices libpng makes (adaptive row
filters, zlib level 6) and deflates row bands in parallel into one zlib stream, so a 1 MP
picture is written in about half the time on two cores.
"""
from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PNG_COMPRESS_LEVEL = 6  # zlib default, as libpng
PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # planes -> grey, grey+alpha, RGB, RGBA
PNG_DEFAULT_THREADS = 4  # encoding threads at most where no thread_limit is set
PNG_BAND_BYTES = 1 << 20  # least filtered bytes deflated by one thread (small images: fewer bands)
PNG_FILTER_BYTES = 1 << 18  # bytes filtered at a time (~20x that in temporaries)
PNG_DEFLATE_FEED_BYTES = 1 << 18  # bytes handed to zlib at a time (no band's output copied whole)
PNG_WINDOW_BITS = 15  # deflate window: 32 KiB, as zlib's default
PNG_WINDOW = 1 << PNG_WINDOW_BITS
PNG_ZLIB_MEM_LEVEL = 9  # zlib's most (as Pillow): ~0.1% smaller than zlib's default 8
PNG_IDAT_BYTES = 1 << 24  # split IDAT data into 16 MiB chunks (limit is 2^31 - 1)


# Threads for PNG encoding when set: the command line's --threads sets it for its run
# (w2x/cli/machine.py ``threads``), as it sets BLAS's and Numba's.
thread_limit: int | None = None


def png_threads() -> int:
    """Threads for PNG encoding: ``thread_limit``, else ``min(PNG_DEFAULT_THREADS, os.cpu_count())``."""
    if thread_limit is not None:
        return max(1, thread_limit)
    return max(1, min(PNG_DEFAULT_THREADS, os.cpu_count() or 1))


def png_chunks(planes: np.ndarray, threads: int) -> list[tuple[bytes, bytes]]:
    """uint8 or uint16 (C, H, W) -> IHDR, IDAT..., IEND chunks of a PNG (C = 1, 2, 3, 4).

    Rows are filtered by `_filter_rows` (libpng's adaptive choice) and deflated by
    `_deflate_bands` on up to ``threads`` threads.
    """
    c, h, w = planes.shape
    depth = 8 * planes.dtype.itemsize
    filtered = np.empty((h, 1 + w * c * planes.dtype.itemsize), np.uint8)  # type byte + row
    bands = _png_bands(h, filtered.shape[1], threads)
    with ThreadPoolExecutor(min(threads, len(bands))) as pool:
        list(pool.map(lambda band, out=filtered: _filter_rows(planes, *band, out), bands))
        pieces = _deflate_bands(filtered, bands, pool)
    del filtered                                          # before the pieces are joined
    data = memoryview(b"".join(pieces))                   # the IDATs are slices of it
    del pieces
    ihdr = struct.pack(">IIBBBBB", w, h, depth, PNG_COLOUR_TYPE[c], 0, 0, 0)
    idat = [(b"IDAT", data[i:i + PNG_IDAT_BYTES]) for i in range(0, len(data), PNG_IDAT_BYTES)]
    return [(b"IHDR", ihdr), *idat, (b"IEND", b"")]


def _png_bands(h: int, row_bytes: int, threads: int) -> list[tuple[int, int]]:
    """Row ranges [r0, r1) deflated apart: one per thread, each of at least
    ``PNG_BAND_BYTES`` filtered bytes (one band when the image is smaller)."""
    n = max(1, min(threads, h * row_bytes // PNG_BAND_BYTES, h))
    edges = [h * k // n for k in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _filter_rows(planes: np.ndarray, r0: int, r1: int, out: np.ndarray) -> None:
    """Filter rows [r0, r1) of uint8/uint16 (C, H, W) ``planes`` into ``out[r0:r1]``.

    Each row gets the filter (PNG spec 9.2: None, Sub, Up, Average, Paeth) whose filtered
    bytes, read as signed, have the smallest sum of absolute values; the first such filter
    on ties: libpng's ``png_write_find_filter`` (spec 12.8; Pillow's encoder skips Average
    unless ``optimize``).  Rows go in groups of about ``PNG_FILTER_BYTES`` to bound the
    temporary arrays.
    """
    c, _, w = planes.shape
    bpp = c * planes.dtype.itemsize                       # bytes per pixel
    group = max(1, PNG_FILTER_BYTES // (w * bpp))
    for g0 in range(r0, r1, group):
        g1 = min(g0 + group, r1)
        # (C, rows, W) -> (rows, W, C), samples big-endian; one row above for Up/Average/Paeth
        hwc = np.ascontiguousarray(planes[:, max(g0 - 1, 0):g1].transpose(1, 2, 0),
                                   dtype=planes.dtype.newbyteorder(">"))
        raw = hwc.view(np.uint8).reshape(hwc.shape[0], w * bpp)  # (rows (+1), W * bpp)
        padded = np.zeros((g1 - g0 + 1, bpp + w * bpp), np.uint8)  # rows (+1), zero left pixel
        padded[g1 - g0 + 1 - raw.shape[0]:, bpp:] = raw   # image row 0: the row above is zero
        _choose_filters(padded, bpp, out[g0:g1])


def _choose_filters(padded: np.ndarray, bpp: int, out: np.ndarray) -> None:
    """uint8 (n + 1, bpp + L): n rows of L bytes under the row above, after ``bpp`` zero
    bytes -> ``out`` (n, 1 + L): each row's filter type and filtered bytes (PNG spec 9.2)."""
    x, a = padded[1:, bpp:], padded[1:, :-bpp]            # (n, L): byte, left neighbour
    b, c = padded[:-1, bpp:], padded[:-1, :-bpp]          # (n, L): above, above-left
    n = x.shape[0]
    da = a.astype(np.int16) - c                           # p - b, with p = a + b - c
    db = b.astype(np.int16) - c                           # p - a
    pa, pb, pc = np.abs(db), np.abs(da), np.abs(da + db)  # distances of p to a, b, c
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = np.empty((5, n, x.shape[1]), np.uint8)   # (filter type, n, L)
    candidates[0] = x
    np.subtract(x, a, out=candidates[1])                  # Sub, mod 256
    np.subtract(x, b, out=candidates[2])                  # Up
    np.subtract(x, (a & b) + ((a ^ b) >> 1), out=candidates[3])  # Average: floor((a + b) / 2)
    np.subtract(x, paeth, out=candidates[4])              # Paeth
    # |byte as signed| = min(v, 256 - v); summed per row
    cost = np.minimum(candidates, np.negative(candidates)).sum(axis=2, dtype=np.uint32)
    kind = np.argmin(cost, axis=0)                        # (n,): the first smallest wins ties
    out[:, 0] = kind
    out[:, 1:] = candidates[kind, np.arange(n)]


def _deflate_bands(filtered: np.ndarray, bands: list[tuple[int, int]],
                   pool: ThreadPoolExecutor) -> list[bytes]:
    """One zlib stream (RFC 1950) of ``filtered``'s bytes, in pieces to join, its row
    bands deflated in parallel.

    Each band is a raw deflate stream primed with the last 32 KiB before it (the window
    the decoder has then), ending in a sync flush (byte-aligned, not final) except the
    last, which ends the stream.  The joined streams follow a zlib header and end with
    the Adler-32 of all the bytes.  The result depends on the band split only.  zlib is
    fed ``PNG_DEFLATE_FEED_BYTES`` at a time, so that no band's output is copied whole.
    """
    flat = filtered.reshape(-1)                            # (H * (1 + L),)
    rows = filtered.shape[1]
    spans = [(r0 * rows, r1 * rows) for r0, r1 in bands]

    def deflate(k: int) -> list[bytes]:
        start, stop = spans[k]
        primer = {"zdict": flat[max(0, start - PNG_WINDOW):start].tobytes()} if k else {}
        z = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, -PNG_WINDOW_BITS,
                             PNG_ZLIB_MEM_LEVEL, zlib.Z_FILTERED, **primer)
        last = k == len(spans) - 1
        return [*(z.compress(flat[i:min(i + PNG_DEFLATE_FEED_BYTES, stop)])
                  for i in range(start, stop, PNG_DEFLATE_FEED_BYTES)),
                z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)]

    bands_out = list(pool.map(deflate, range(len(spans))))
    adler = 1                                              # Adler-32 of no bytes
    for start, stop in spans:
        adler = zlib.adler32(flat[start:stop], adler)
    return [_zlib_header(PNG_COMPRESS_LEVEL), *(p for out in bands_out for p in out),
            struct.pack(">I", adler)]


def _zlib_header(level: int) -> bytes:
    """RFC 1950 2.2 CMF, FLG: deflate with a 32 KiB window, no preset dictionary, FLEVEL
    as zlib's deflate.c derives its ``level_flags`` from ``level``."""
    cmf = zlib.DEFLATED | (PNG_WINDOW_BITS - 8) << 4       # 0x78
    flevel = 0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3
    flg = flevel << 6
    flg += 31 - (cmf << 8 | flg) % 31                      # FCHECK: CMF * 256 + FLG % 31 == 0
    return bytes([cmf, flg])
