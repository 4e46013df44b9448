"""One image in chunks (w2x.distributed.chunks, lazyio, cli.run_chunked) against the whole image.

The reference is ``w2x.convert`` on the whole array in this process (no Dask). The chunked
graphs run on Dask's synchronous scheduler, except the end-to-end runs, which use an
in-process cluster (fast tests) or two worker processes (slow ones).
"""
from __future__ import annotations

import argparse
import resource

import numpy as np
import pytest
from PIL import Image

from conftest import IMAGES, MODEL_DIR

da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
tifffile = pytest.importorskip("tifffile", reason="the dask extra is not installed")
pytestmark = pytest.mark.skipif(not (MODEL_DIR / "cunet" / "art").is_dir() or not IMAGES.is_dir(),
                                reason="../shared (weights, images) is absent")

import w2x  # noqa: E402
from w2x.anyscale import Target  # noqa: E402
from w2x.cli import files  # noqa: E402
from w2x.cli.batch import Conversion  # noqa: E402
from w2x.distributed import cli as dcli  # noqa: E402
from w2x.distributed import lazyio  # noqa: E402
from w2x.distributed.chunks import grid_chunks, upscale  # noqa: E402
from w2x.pipeline import Options  # noqa: E402

# Chunked and whole runs feed the same pixels to the same weights; only the number of
# columns per GEMM differs (tile sizes, chunk edges), which changes how BLAS/Winograd
# blocks its sums and where Winograd's tiles lie: measured at most 1.0e-6 (vgg_7 noise +
# scale, two passes) and 3.6e-7 for one pass with F(4x4) everywhere; 3.0-3.3e-6 and 2.5e-6
# since the 128-channel layers run F(6x6) (3-5x F(4x4)'s rounding; the figure moves with the
# machine's BLAS), and 0 for upcunet (same tiles, same GEMMs). 3x the largest seen:
LOCAL_ATOL = 1e-5
# float32 chunks against the float64 whole-image reference (tests/reference_net.py)
REFERENCE_ATOL = 1e-4
# upcunet chunks run the very tiles of the whole image: equal to the last bit.
GRID_ATOL = 0.0

ARCHS = {  # style folder, mode, tile size whose step (tile - 2*input_offset) ...
    "vgg_7": ("vgg_7/art", "noise_scale"),      # denoise 1x, then scale: two passes
    "upconv_7": ("upconv_7/art", "scale"),
    "upcunet": ("cunet/art", "scale"),
}


def _image(h: int, w: int, name: str = "lena.png") -> np.ndarray:
    """A float (h, w, 3) crop of a shared image."""
    a = np.asarray(Image.open(IMAGES / name).convert("RGB"), dtype=np.float32) / 255
    return np.ascontiguousarray(a[40:40 + h, 60:60 + w])


def _chunked(img, chunk, **kw):
    x = da.from_array(img, chunks=(chunk, chunk, 3))
    return upscale(x, **kw).compute(scheduler="sync")


# --- geometry ------------------------------------------------------------------------------

def test_grid_chunks_follow_the_tile_grid_and_merge_a_thin_last_chunk():
    assert grid_chunks(300, 128, 7) == (128, 128, 44)
    assert grid_chunks(260, 128, 7) == (128, 132)                 # 4 px < halo: merged
    assert grid_chunks(500, 128, 18, step=220) == (220, 220, 60)  # to the grid
    assert grid_chunks(450, 128, 18, step=220) == (220, 230)      # to the grid, 10 merged
    assert grid_chunks(700, 400, 18, step=220) == (440, 260)      # the nearest multiple
    assert grid_chunks(100, 128, 18, step=220) == (100,)


def test_refuses_what_it_cannot_chunk():
    x = da.zeros((40, 40, 4), chunks=20)
    with pytest.raises(ValueError, match=r"RGB image array \(H, W, 3\)"):
        upscale(x, style="upconv_7/art", mode="scale")
    with pytest.raises(ValueError, match="TTA"):
        upscale(da.zeros((40, 40, 3), chunks=20), mode="scale", tta_level=2)
    with pytest.raises(ValueError, match="Y"):
        upscale(da.zeros((40, 40, 3), chunks=20), mode="scale", style="vgg_7/art_y_chainer")


# --- equality with the whole image, small and fast -------------------------------------------

@pytest.mark.parametrize("arch", ["vgg_7", "upconv_7"])
@pytest.mark.parametrize("chunk", [24, 40])
def test_local_models_in_small_chunks_equal_the_whole_image(arch, chunk):
    style, mode = ARCHS[arch]
    img = _image(70, 61)
    ref = w2x.convert(img, mode=mode, style=style)
    got = _chunked(img, chunk, mode=mode, style=style)
    assert got.shape == ref.shape == (140, 122, 3) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= LOCAL_ATOL


def test_chunks_match_the_independent_whole_image_reference():
    """Chunks of upconv_7 against tests/reference_net.py (no w2x code), not only against
    w2x.convert: the halo must be the real neighbours, and the border replicated."""
    from reference_net import sequential_net
    img = _image(45, 38)
    got = _chunked(img, 16, mode="scale", style="upconv_7/art")
    ref = sequential_net(MODEL_DIR / "upconv_7/art/scale2.0x_model.json.gz", img.transpose(2, 0, 1), 1)
    assert np.abs(got - ref.transpose(1, 2, 0)).max() <= REFERENCE_ATOL


def test_an_image_smaller_than_the_context_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"smaller than the \d+ px of context .* without chunks"):
        _chunked(_image(5, 6), 4, mode="scale", style="upconv_7/art")


def test_upcunet_chunks_on_the_tile_grid_equal_the_whole_image():
    img = _image(92, 85)
    ref = w2x.convert(img, mode="scale", style="cunet/art", tile_size=76)   # step 40
    got = _chunked(img, 30, mode="scale", style="cunet/art", tile_size=76)  # 30 -> 40
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= GRID_ATOL


def test_integer_samples_come_back_rounded_as_the_original():
    img8 = (_image(50, 44) * 255).round().astype(np.uint8)
    ref = w2x.convert(img8, mode="scale", style="upconv_7/art")
    got = _chunked(img8, 24, mode="scale", style="upconv_7/art")
    assert got.dtype == np.uint8 and got.shape == ref.shape
    diff = np.abs(got.astype(int) - ref)
    # a sum 1e-7 away from a rounding edge may land on the other side: one level, rarely
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


# --- must show: chunks of 128 and 200 px, three architectures ---------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("chunk", [128, 200])
def test_chunks_of_128_and_200_equal_the_single_machine_output(arch, chunk):
    style, mode = ARCHS[arch]
    img = _image(240, 230)
    # upcunet: the tile whose step is the chunk (164 -> 128, 236 -> 200), so the chunks are
    # not moved; vgg_7/upconv_7: the default tile
    tile = chunk + 36 if arch == "upcunet" else 256
    ref = w2x.convert(img, mode=mode, style=style, tile_size=tile)
    got = _chunked(img, chunk, mode=mode, style=style, tile_size=tile)
    err = float(np.abs(got - ref).max())
    print(f"\n{arch} chunk {chunk}: max |chunked - whole| = {err:.3g}")
    assert err <= (GRID_ATOL if arch == "upcunet" else LOCAL_ATOL)


# --- lazy I/O -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", [dict(tile=(32, 48)), dict(rowsperstrip=7, compression="zlib")])
def test_read_region_reads_what_tifffile_reads_whole(tmp_path, layout):
    a = (np.random.default_rng(0).random((101, 130, 3)) * 65535).astype(np.uint16)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, a, photometric="rgb", **layout)
    whole = tifffile.imread(path)
    assert np.array_equal(lazyio.read_region(str(path), 30, 77, 45, 129, 3), whole[30:77, 45:129])
    lazy = lazyio.read_lazy(path, 40)
    assert lazy.chunks[:2] == ((40, 40, 21), (40, 40, 40, 10))
    assert np.array_equal(lazy.compute(scheduler="sync"), whole)


@pytest.mark.parametrize("suffix, dtype", [(".tif", np.uint8), (".png", np.uint16)])
def test_write_bands_writes_the_image_band_by_band(tmp_path, suffix, dtype):
    a = (np.random.default_rng(1).random((1100, 530, 3)) * np.iinfo(dtype).max).astype(dtype)
    rows = []
    path = tmp_path / f"out{suffix}"
    lazyio.write_bands(path, iter([a[:300], a[300:700], a[700:]]), a.shape, a.dtype, rows.append)
    back = tifffile.imread(path) if suffix == ".tif" else _png16(path)
    assert np.array_equal(back, a) and rows == [300, 700, 1100]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]          # no temporary left


def _png16(path):
    import png
    w, h, rows, info = png.Reader(filename=str(path)).read()
    return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, 3)


# --- end to end: the CLI hook -------------------------------------------------------------------

def _job(tmp_path, img8, out="big_x2.tif"):
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, img8, photometric="rgb", tile=(64, 64))
    return files.Job(src, tmp_path / out, 1)


def test_run_chunked_tiff_in_tiff_out_equals_the_whole_image(tmp_path):
    img8 = (_image(150, 133) * 255).round().astype(np.uint8)
    job = _job(tmp_path, img8)
    conv = Conversion(Options(mode="scale", style="upconv_7/art"), Target(2.0))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        args = argparse.Namespace(cluster=client, files_per_task=1, chunk=48)
        s = dcli.run_batch([job], conv, None, "replace", args)
    assert len(s.written) == 1, s.failed
    got = tifffile.imread(job.dst)
    ref = w2x.convert(img8, mode="scale", style="upconv_7/art")
    diff = np.abs(got.astype(int) - ref)
    assert got.shape == (300, 266, 3) and diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_chunk_option_refuses_other_sizes_and_formats(tmp_path):
    job = files.Job(tmp_path / "a.tif", tmp_path / "a.jpg", 1)
    args = argparse.Namespace(cluster=None, files_per_task=1, chunk=512)
    with pytest.raises(files.UsageError, match="writes .tif"):
        dcli.check_jobs([job], Conversion(), args)
    with pytest.raises(files.UsageError, match="2x only"):
        dcli.check_jobs([job], Conversion(target=Target(4.0)), args)


@pytest.mark.slow
def test_2000_px_image_upscaled_chunk_by_chunk_on_two_workers(tmp_path):
    """2000 x 2000 -> 4000 x 4000 by upconv_7 on 2 worker processes, read and written lazily;
    three 64 px windows checked against ``w2x.convert`` of the input around them."""
    rng = np.random.default_rng(2)
    base = np.asarray(Image.open(IMAGES / "lena.png").convert("RGB"))
    img8 = np.tile(base, (4, 4, 1))[:2000, :2000]
    img8 = np.clip(img8.astype(int) + rng.integers(-8, 9, img8.shape), 0, 255).astype(np.uint8)
    job = _job(tmp_path, img8)
    conv = Conversion(Options(mode="scale", style="upconv_7/art"), Target(2.0))
    from w2x.distributed import cluster
    with cluster.connect("local:2") as client:
        before = client.run(_peak_rss)
        args = argparse.Namespace(cluster=client, files_per_task=1, chunk=512)
        s = dcli.run_batch([job], conv, None, "replace", args)
        peak = client.run(_peak_rss)
    assert len(s.written) == 1, s.failed
    print(f"\nworker peak RSS MiB before {sorted(before.values())} after {sorted(peak.values())}; "
          f"client {_peak_rss() // 2**20} MiB; {s.seconds:.0f} s")
    out = tifffile.TiffFile(job.dst)
    assert out.pages[0].shape == (4000, 4000, 3) and out.pages[0].is_tiled
    for r, c in [(0, 0), (1000, 980), (1990, 1968)]:         # a corner, a chunk edge, the end
        window = img8[max(r - 8, 0):r + 40, max(c - 8, 0):c + 40]
        ref = w2x.convert(window, mode="scale", style="upconv_7/art")
        dr, dc = 2 * (r - max(r - 8, 0)), 2 * (c - max(c - 8, 0))
        h, w = min(64, 2 * (2000 - r)), min(64, 2 * (2000 - c))
        got = lazyio.read_region(str(job.dst), 2 * r, 2 * r + h, 2 * c, 2 * c + w, 3)
        assert np.abs(got.astype(int) - ref[dr:dr + h, dc:dc + w]).max() <= 1


def _peak_rss() -> int:
    """Peak resident memory of this process, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
