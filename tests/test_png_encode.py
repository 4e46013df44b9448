"""Tests for w2x.io.png_encode (stage 3 output): libpng's adaptive row filters in
NumPy and one zlib stream deflated by row bands on several threads.

The references are independent of the encoder: Pillow and pypng decode the files, zlib
checks the stream (and its Adler-32), and the filter choice and unfiltering are redone
here byte by byte in plain Python from the PNG specification (9.2, 12.8).
"""
import io
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import png
import pytest
from PIL import Image

from conftest import IMAGES
from w2x.io import png_encode, write

SIZE_TOL = 0.03  # our file vs Pillow's of the same pixels (measured: 0.9998 on lena 2x)
SMALL_BAND = 500  # bytes: a 37-pixel RGB row is 112, so several bands per test image
SMALL_GROUP = 300  # bytes filtered at a time: several groups per band


def _planes(rng, c, h, w, dtype):
    """(C, H, W) samples mixing noise, smooth gradients and repeated rows, so that every
    filter type wins some rows."""
    top = np.iinfo(dtype).max
    x = rng.integers(0, top + 1, (c, h, w)).astype(np.float64)
    ramp = np.linspace(0, top, w)[None, None, :] * np.linspace(0.2, 1, h)[None, :, None]
    smooth = (np.arange(h) % 4 >= 2)[None, :, None]
    x = np.where(smooth, ramp + rng.integers(0, 3, (c, h, w)), x)
    x[:, 1::7] = x[:, 0::7][:, :x[:, 1::7].shape[1]]  # rows equal to the one above
    return np.clip(x, 0, top).astype(dtype)


def _chunks(data: bytes):
    return list(png.Reader(bytes=data).chunks())


def _idat_bytes(data: bytes) -> bytes:
    """The joined IDAT data, inflated by zlib (which checks the header and Adler-32)."""
    return zlib.decompress(b"".join(v for t, v in _chunks(data) if t == b"IDAT"))


def _unfilter(stream: bytes, h: int, row_bytes: int, bpp: int) -> list[list[int]]:
    """PNG spec 9.2 reconstruction, byte by byte."""
    rows, prev = [], [0] * row_bytes
    for r in range(h):
        line = stream[r * (1 + row_bytes):(r + 1) * (1 + row_bytes)]
        kind, cur = line[0], list(line[1:])
        for i in range(row_bytes):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            cur[i] = (cur[i] + _predict(kind, a, b, c)) % 256
        rows.append(cur)
        prev = cur
    return rows


def _predict(kind: int, a: int, b: int, c: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return a
    if kind == 2:
        return b
    if kind == 3:
        return (a + b) // 2
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _reference_filtered(raw: list[list[int]], bpp: int) -> list[list[int]]:
    """Each row: its filter type, then its bytes under the filter with the least sum of
    |byte as signed|, the first on ties (libpng png_write_find_filter)."""
    out, prev = [], [0] * len(raw[0])
    for cur in raw:
        best = None
        for kind in range(5):
            f = [(cur[i] - _predict(kind, cur[i - bpp] if i >= bpp else 0, prev[i],
                                    prev[i - bpp] if i >= bpp else 0)) % 256
                 for i in range(len(cur))]
            cost = sum(v if v < 128 else 256 - v for v in f)
            if best is None or cost < best[0]:
                best = (cost, [kind, *f])
        out.append(best[1])
        prev = cur
    return out


def _raw_rows(planes: np.ndarray) -> list[list[int]]:
    c, h, w = planes.shape
    hwc = np.ascontiguousarray(planes.transpose(1, 2, 0), planes.dtype.newbyteorder(">"))
    return hwc.view(np.uint8).reshape(h, -1).tolist()         # Python ints


@pytest.fixture
def small_bands(monkeypatch):
    monkeypatch.setattr(png_encode, "PNG_BAND_BYTES", SMALL_BAND)
    monkeypatch.setattr(png_encode, "PNG_FILTER_BYTES", SMALL_GROUP)
    monkeypatch.setattr(png_encode, "PNG_DEFLATE_FEED_BYTES", SMALL_GROUP)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("c", [1, 2, 3, 4])
@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (23, 37)])
@pytest.mark.parametrize("threads", [1, 3])
def test_round_trip_is_exact(small_bands, dtype, c, h, w, threads):
    x = _planes(np.random.default_rng(c * h + w), c, h, w, dtype)
    data = write._encode_png(x, None, None, None, threads=threads)
    width, height, rows, info = png.Reader(bytes=data).read()
    assert (width, height, info["bitdepth"], info["planes"]) == (w, h, 8 * x.itemsize, c)
    back = np.array([list(r) for r in rows], dtype).reshape(h, w, c).transpose(2, 0, 1)
    np.testing.assert_array_equal(back, x)
    bpp = c * x.itemsize
    unfiltered = _unfilter(_idat_bytes(data), h, w * bpp, bpp)
    assert unfiltered == _raw_rows(x)
    if dtype == np.uint8:
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
            pil = np.asarray(im).reshape(h, w, c).transpose(2, 0, 1)
        np.testing.assert_array_equal(pil, x)
    else:
        assert c != 1 or _pil_grey16(data) == x[0].tolist()


def _pil_grey16(data: bytes) -> list[list[int]]:
    """Pillow reads 16-bit grey PNGs at full depth (its 16-bit RGB it cuts to 8 bits)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im).astype(np.int64).tolist()


def test_chosen_filters_match_the_byte_by_byte_heuristic(small_bands):
    rng = np.random.default_rng(7)
    for dtype, c in [(np.uint8, 3), (np.uint8, 2), (np.uint16, 1)]:
        x = _planes(rng, c, 29, 17, dtype)
        bpp = c * x.itemsize
        got = np.frombuffer(_idat_bytes(write._encode_png(x, None, None, None, threads=2)),
                            np.uint8).reshape(29, -1)
        want = _reference_filtered(_raw_rows(x), bpp)
        assert got.tolist() == want
    kinds = {row[0] for row in want}
    assert len(kinds) >= 4, f"the image exercises too few filter types: {sorted(kinds)}"


def test_every_filter_type_is_chosen_somewhere(small_bands):
    x = _planes(np.random.default_rng(1), 3, 64, 40, np.uint8)
    kinds = np.frombuffer(_idat_bytes(write._encode_png(x, None, None, None, threads=1)),
                          np.uint8).reshape(64, -1)[:, 0]
    assert set(kinds.tolist()) == {0, 1, 2, 3, 4}


def test_several_bands_form_one_stream(small_bands):
    x = _planes(np.random.default_rng(3), 3, 23, 37, np.uint8)
    bands = png_encode._png_bands(23, 1 + 37 * 3, 3)
    assert len(bands) == 3 and bands[0][0] == 0 and bands[-1][1] == 23
    idat = b"".join(v for t, v in _chunks(write._encode_png(x, None, None, None, threads=3))
                    if t == b"IDAT")
    d = zlib.decompressobj()
    d.decompress(idat)
    assert d.eof and d.unused_data == b""


def test_bytes_depend_on_the_band_split_only(small_bands):
    x = _planes(np.random.default_rng(4), 4, 41, 29, np.uint8)
    filtered = np.empty((41, 1 + 29 * 4), np.uint8)
    bands = png_encode._png_bands(41, filtered.shape[1], 4)
    assert len(bands) == 4
    for r0, r1 in bands:
        png_encode._filter_rows(x, r0, r1, filtered)
    runs = []
    for workers in (1, 2, 4, 4):
        with ThreadPoolExecutor(workers) as pool:
            runs.append(b"".join(png_encode._deflate_bands(filtered, bands, pool)))
    assert all(r == runs[0] for r in runs)
    assert zlib.decompress(runs[0]) == filtered.tobytes()


def test_one_band_when_the_image_is_small():
    assert png_encode._png_bands(10, 100, 8) == [(0, 10)]
    assert png_encode._png_bands(1, 10 ** 8, 8) == [(0, 1)]  # never more bands than rows


@pytest.mark.parametrize("level", range(10))
def test_zlib_header_as_zlib_writes_it(level):
    assert png_encode._zlib_header(level) == zlib.compress(b"w2x", level)[:2]


def test_threads_follow_the_limit_else_the_cores(monkeypatch):
    monkeypatch.setattr(png_encode, "thread_limit", 3)
    assert png_encode.png_threads() == 3
    monkeypatch.setattr(png_encode, "thread_limit", None)
    monkeypatch.setattr(png_encode.os, "cpu_count", lambda: 64)
    assert png_encode.png_threads() == png_encode.PNG_DEFAULT_THREADS
    monkeypatch.setattr(png_encode.os, "cpu_count", lambda: 1)
    assert png_encode.png_threads() == 1


def test_the_command_lines_threads_option_limits_png_encoding():
    from w2x.cli import machine
    before = png_encode.thread_limit
    with machine.threads(1):
        assert png_encode.png_threads() == 1
    assert png_encode.thread_limit == before


def test_size_close_to_pillows_on_a_photo():
    path = IMAGES / "lena.png"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    with Image.open(path) as im:
        big = im.convert("RGB").resize((im.width * 2, im.height * 2), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=png_encode.PNG_COMPRESS_LEVEL)
    x = np.asarray(big).transpose(2, 0, 1)                # (H, W, 3) -> (3, H, W)
    ours = write._encode_png(x, None, None, None, threads=2)
    assert abs(len(ours) / len(buf.getvalue()) - 1) < SIZE_TOL
    with Image.open(io.BytesIO(ours)) as back:        # bands primed with a whole 32 KiB window
        np.testing.assert_array_equal(np.asarray(back), np.asarray(big))


def test_idat_split_into_several_chunks(monkeypatch):
    monkeypatch.setattr(png_encode, "PNG_IDAT_BYTES", 100)
    x = _planes(np.random.default_rng(5), 3, 23, 37, np.uint8)
    data = write._encode_png(x, None, None, None, threads=2)
    assert sum(t == b"IDAT" for t, _ in _chunks(data)) > 1
    with Image.open(io.BytesIO(data)) as back:
        np.testing.assert_array_equal(np.asarray(back), x.transpose(1, 2, 0))
