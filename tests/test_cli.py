"""The command line, item by item of issue 3, on crops of ../shared/images.

1 batches, 2 formats, 3 any scale, 4 colour and metadata, 5 animations, 6 progress,
7 models on a fresh machine, 8 bad input. Variants (animated GIF/APNG/WebP, 16-bit,
palette, LA, CMYK, EXIF-rotated, ICC-tagged, gAMA, DPI) are made here from the shared
images. Runs use the cheapest model (vgg_7/art, numpy, one small tile per pass).
"""
from __future__ import annotations

import io
import json
import shutil
import struct

import numpy as np
import png
import pytest
from PIL import Image

from conftest import IMAGES, MODEL_DIR
from w2x import anyscale, pipeline
from w2x.cli.main import main as cli_main
from w2x.io import read_frames
from w2x.pipeline import Options

FAST = ["--style", "vgg_7/art", "--backend", "numpy", "--tile-size", "48", "--progress", "none"]
NOISE = ["-m", "noise", *FAST]
SCALE = ["-m", "scale", *FAST]
# Lossy encoders: JPEG at quality 95 against the lossless result, in levels of 255.
JPEG_MEAN_LEVELS = 3.0
# GIF output is quantised to a 256-colour palette: mean error against the exact frame.
GIF_MEAN_LEVELS = 6.0
# pHYs stores pixels per metre as an integer: 300 dpi reads back as 299.9994.
DPI_TOL = 0.01


def run(capsys, *args) -> tuple[int, str, str]:
    rc = cli_main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def crop(name: str, box, mode: str | None = None) -> Image.Image:
    im = Image.open(IMAGES / name)
    return (im.convert(mode) if mode else im).crop(box)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int16)


def no_stray_files(folder, *expected) -> bool:
    """Only the expected files are left (no temporary or partial ones)."""
    return sorted(p.name for p in folder.iterdir()) == sorted(expected)


@pytest.fixture
def lena(tmp_path):
    path = tmp_path / "lena.png"
    crop("lena.png", (200, 200, 216, 216), "RGB").save(path)
    return path


@pytest.fixture
def neko(tmp_path):
    path = tmp_path / "neko.png"                        # RGBA, transparent around the cat
    crop("neko_alpha.png", (8, 8, 24, 24)).save(path)
    return path


# --- 1. batches --------------------------------------------------------------------------------

def test_several_files_into_a_directory_and_models_load_once(tmp_path, capsys, monkeypatch):
    calls = []
    real = pipeline.resolve_models
    monkeypatch.setattr(pipeline, "resolve_models", lambda opts: calls.append(opts.mode) or real(opts))
    names = []
    for k in range(3):
        names.append(tmp_path / f"f{k}.png")
        crop("miku_small_noisy.png", (60 + 16 * k, 40, 76 + 16 * k, 56)).save(names[-1])
    rc, out, err = run(capsys, "-i", *names, "-o", tmp_path / "out", *NOISE)
    assert rc == 0 and out == ""
    assert no_stray_files(tmp_path / "out", "f0.png", "f1.png", "f2.png")
    assert calls == ["noise"]                                     # once for the run, not per file
    assert "3 written, 0 skipped, 0 failed" in err


def test_list_file_with_templates_and_resume(tmp_path, capsys, lena, neko):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{neko}\n{lena}\n")
    template = tmp_path / "out" / "%03d_%s.png"
    rc, _, _ = run(capsys, "-l", lst, "-o", template, *NOISE)
    assert rc == 0
    assert no_stray_files(tmp_path / "out", "001_neko.png", "002_lena.png")
    stamp = (tmp_path / "out" / "002_lena.png").stat().st_mtime_ns
    (tmp_path / "out" / "001_neko.png").unlink()
    rc, _, err = run(capsys, "-l", lst, "-o", template, "--resume", *NOISE)
    assert rc == 0 and "1 written, 1 skipped" in err
    assert (tmp_path / "out" / "002_lena.png").stat().st_mtime_ns == stamp
    assert (tmp_path / "out" / "001_neko.png").is_file()


def test_recursive_directory_is_mirrored(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "a" / "b").mkdir(parents=True)
    crop("lena.png", (0, 0, 16, 16)).save(src / "top.jpg")
    crop("tone.png", (0, 0, 16, 16)).save(src / "a" / "b" / "deep.png")
    rc, _, _ = run(capsys, "-i", src, "-r", "-o", tmp_path / "out", "-f", "webp", *NOISE)
    assert rc == 0
    got = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*"))
    assert got == ["a/b/deep.webp", "top.webp"]


def test_default_output_is_beside_the_input(capsys, lena):
    rc, _, _ = run(capsys, "-i", lena, *NOISE)
    assert rc == 0 and (lena.parent / "lena_noise.png").is_file()    # waifu2x.lua:19-20


# --- 2. formats --------------------------------------------------------------------------------

def test_output_format_follows_the_extension(tmp_path, capsys, lena):
    ref = tmp_path / "ref.png"
    assert run(capsys, "-i", lena, "-o", ref, *NOISE)[0] == 0
    for ext, fmt in [(".webp", "WEBP"), (".tif", "TIFF"), (".bmp", "BMP")]:
        assert run(capsys, "-i", lena, "-o", tmp_path / f"x{ext}", *NOISE)[0] == 0
        assert Image.open(tmp_path / f"x{ext}").format == fmt
        np.testing.assert_array_equal(pixels(tmp_path / f"x{ext}"), pixels(ref))   # lossless
    assert run(capsys, "-i", lena, "-o", tmp_path / "q95.jpg", *NOISE)[0] == 0
    assert run(capsys, "-i", lena, "-o", tmp_path / "q30.jpg", "--quality", "30", *NOISE)[0] == 0
    assert Image.open(tmp_path / "q95.jpg").format == "JPEG"
    assert np.abs(pixels(tmp_path / "q95.jpg") - pixels(ref)).mean() <= JPEG_MEAN_LEVELS
    assert (tmp_path / "q30.jpg").stat().st_size < (tmp_path / "q95.jpg").stat().st_size
    assert run(capsys, "-i", lena, "-o", tmp_path / "lossy.webp", "--quality", "50", *NOISE)[0] == 0
    assert not np.array_equal(pixels(tmp_path / "lossy.webp"), pixels(ref))


def test_alpha_into_jpeg_needs_background(tmp_path, capsys, neko):
    rc, _, err = run(capsys, "-i", neko, "-o", tmp_path / "x.jpg", *NOISE)
    assert rc == 2 and "--background" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.jpg").exists()
    ref = tmp_path / "ref.png"
    assert run(capsys, "-i", neko, "-o", ref, *NOISE)[0] == 0
    assert run(capsys, "-i", neko, "-o", tmp_path / "x.bmp", "--background", "#00ff00", *NOISE)[0] == 0
    rgba, flat = pixels(ref), pixels(tmp_path / "x.bmp")
    assert flat.shape[2] == 3
    np.testing.assert_array_equal(flat[rgba[:, :, 3] == 0], [[0, 255, 0]] * int((rgba[:, :, 3] == 0).sum()))
    np.testing.assert_array_equal(flat[rgba[:, :, 3] == 255], rgba[rgba[:, :, 3] == 255][:, :3])


# --- 3. any scale ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, size", [
    (["--scale", "1.6"], (26, 26)),
    (["--scale", "3"], (48, 48)),
    (["--width", "40"], (40, 40)),
    (["--height", "20"], (20, 20)),
    (["--width", "40", "--height", "24"], (24, 24)),
])
def test_any_scale_and_target_sizes(tmp_path, capsys, lena, args, size):
    out = tmp_path / "x.png"
    assert run(capsys, "-i", lena, "-o", out, *SCALE, *args)[0] == 0
    assert Image.open(out).size == size


def test_downscale_filters_differ_and_alpha_follows(tmp_path, capsys, lena, neko):
    outs = {}
    for f in anyscale.FILTERS:
        outs[f] = tmp_path / f"{f}.png"
        assert run(capsys, "-i", lena, "-o", outs[f], *SCALE, "--scale", "1.5",
                   "--downscale-filter", f)[0] == 0
        assert Image.open(outs[f]).size == (24, 24)
    for f in anyscale.FILTERS[1:]:
        assert not np.array_equal(pixels(outs["lanczos"]), pixels(outs[f])), f
    out = tmp_path / "neko_1.5x.png"
    assert run(capsys, "-i", neko, "-o", out, *SCALE, "--scale", "1.5")[0] == 0
    assert Image.open(out).mode == "RGBA" and Image.open(out).size == (24, 24)


@pytest.mark.parametrize("args, message", [
    (["-m", "noise", "--scale", "2"], "does not scale"),
    (["-m", "scale", "--scale", "2", "--width", "10"], "either --scale"),
    (["-m", "scale", "--scale", "0"], "positive"),
])
def test_scale_usage_errors(tmp_path, capsys, lena, args, message):
    rc, _, err = run(capsys, "-i", lena, "-o", tmp_path / "x.png", *FAST, *args)
    assert rc == 2 and message in err and err.startswith("w2x: error:")
    assert not (tmp_path / "x.png").exists()


# --- 4. colour and metadata ----------------------------------------------------------------------

def _png_with_chunk(im: Image.Image, path, ctype: bytes, data: bytes):
    buf = io.BytesIO()
    im.save(buf, "PNG")
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    with open(path, "wb") as f:
        png.write_chunks(f, [chunks[0], (ctype, data), *chunks[1:]])


def test_icc_profile_is_converted_and_carried(tmp_path, capsys):
    city = Image.open(IMAGES / "city.jpg")
    icc = city.info["icc_profile"]
    src = tmp_path / "icc.png"
    city.crop((100, 100, 116, 116)).save(src, icc_profile=icc)
    out = tmp_path / "out.png"
    assert run(capsys, "-i", src, "-o", out, *NOISE)[0] == 0
    assert Image.open(out).info["icc_profile"] == icc


def test_gamma_and_dpi_are_kept(tmp_path, capsys):
    src, out = tmp_path / "g.png", tmp_path / "out.png"
    _png_with_chunk(crop("lena.png", (0, 0, 16, 16), "RGB"), src, b"gAMA", struct.pack(">I", 45455))
    assert run(capsys, "-i", src, "-o", out, *NOISE)[0] == 0
    assert Image.open(out).info["gamma"] == pytest.approx(0.45455)
    crop("lena.png", (0, 0, 16, 16), "RGB").save(src, dpi=(300, 300))
    assert run(capsys, "-i", src, "-o", out, *SCALE)[0] == 0
    assert Image.open(out).info["dpi"] == pytest.approx((300, 300), abs=DPI_TOL)


def test_cmyk_jpeg_becomes_rgb(tmp_path, capsys):
    src, out = tmp_path / "c.jpg", tmp_path / "out.png"
    crop("lena.png", (0, 0, 16, 16), "CMYK").save(src, quality=95)
    assert Image.open(src).mode == "CMYK"
    assert run(capsys, "-i", src, "-o", out, *NOISE)[0] == 0
    rgb = pixels(out)
    ref = np.asarray(crop("lena.png", (0, 0, 16, 16), "RGB")).astype(np.int16)
    assert Image.open(out).mode == "RGB" and np.abs(rgb - ref).mean() < 10   # not inverted


def test_exif_orientation_is_applied(tmp_path, capsys):
    exif = Image.Exif()
    exif[0x0112] = 6                                              # rotate 90 cw on display
    src, out = tmp_path / "r.jpg", tmp_path / "out.png"
    crop("lena.png", (0, 0, 24, 16), "RGB").save(src, quality=95, exif=exif)
    assert run(capsys, "-i", src, "-o", out, *NOISE)[0] == 0
    res = Image.open(out)
    assert res.size == (16, 24) and res.getexif().get(0x0112, 1) == 1


def test_palette_with_transparency_keeps_alpha(tmp_path, capsys):
    p = crop("lena.png", (0, 0, 16, 16), "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    a = np.asarray(p).copy()
    a[:4, :4] = 15                                                # one index, made transparent
    src, out = tmp_path / "p.png", tmp_path / "out.png"
    q = Image.fromarray(a.astype(np.uint8), "P")
    q.putpalette(p.getpalette())
    q.save(src, transparency=15)
    assert run(capsys, "-i", src, "-o", out, *NOISE)[0] == 0
    res = pixels(out)
    assert Image.open(out).mode == "RGBA"
    np.testing.assert_array_equal(res[:, :, 3], np.where(a == 15, 0, 255))


@pytest.mark.parametrize("kind", ["LA", "I;16", "RGB16", "RGBA16"])
def test_grey_alpha_and_16_bit_inputs(tmp_path, capsys, kind):
    base = np.asarray(crop("lena.png", (100, 100, 116, 116), "RGB")).astype(np.uint16) * 257
    alpha = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))   # left transparent
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    if kind == "LA":
        Image.fromarray(np.dstack([base[:, :, 0] // 257, alpha // 257]).astype(np.uint8), "LA").save(src)
    elif kind == "I;16":
        Image.fromarray(base[:, :, 0]).save(src)                  # 16-bit grey
    else:
        planes = np.dstack([base, alpha]) if kind == "RGBA16" else base
        png.from_array(planes.reshape(16, -1), "RGBA;16" if kind == "RGBA16" else "RGB;16").save(str(src))
    assert run(capsys, "-i", src, "-o", out, *NOISE, "--depth", "16")[0] == 0
    w, h, rows, info = png.Reader(filename=str(out)).asDirect()
    assert info["bitdepth"] == 16
    assert info["greyscale"] == (kind in ("LA", "I;16"))
    assert info["alpha"] == (kind in ("LA", "RGBA16"))
    if info["alpha"]:
        got = np.array(list(rows), dtype=np.int64).reshape(h, w, -1)[:, :, -1]
        want = alpha if kind == "RGBA16" else (alpha // 257) * 257
        np.testing.assert_array_equal(got, want)                  # noise mode keeps alpha


# --- 5. animations -----------------------------------------------------------------------------

DURATIONS = [80, 120, 160]


def _frames():
    src = Image.open(IMAGES / "miku_small.png").convert("RGB")
    return [src.crop((90 + 12 * k, 60, 106 + 12 * k, 76)) for k in range(3)]   # 16 x 16 each


@pytest.mark.parametrize("ext, save_opts", [(".gif", {"disposal": 2}),
                                            (".png", {"disposal": [0, 1, 2]}),
                                            (".webp", {"lossless": True})], ids=["gif", "apng", "webp"])
def test_every_frame_is_converted_with_timing_kept(tmp_path, capsys, ext, save_opts):
    frames = _frames()
    src, out = tmp_path / f"in{ext}", tmp_path / f"out{ext}"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0,
                   **save_opts)
    assert run(capsys, "-i", src, "-o", out, *SCALE)[0] == 0
    before, after = read_frames(src), read_frames(out)
    assert len(after.frames) == 3 and after.durations == DURATIONS and after.loop == 0
    if ext == ".png":
        assert after.disposal == before.disposal == ["none", "background", "previous"]
    opts = Options(mode="scale", style="vgg_7/art", backend="numpy", tile_size=48)
    for pic_in, pic_out in zip(before.frames, after.frames, strict=True):
        want, _ = pipeline.convert_planes(pic_in.rgb, pic_in.alpha, opts)    # the still path, per frame
        diff = np.abs(pic_out.rgb - want) * 255
        assert pic_out.rgb.shape == (3, 32, 32)
        assert (diff.mean() <= GIF_MEAN_LEVELS) if ext == ".gif" else (diff.max() <= 1)


def test_animation_into_a_still_format_fails_clearly(tmp_path, capsys):
    frames = _frames()
    src = tmp_path / "in.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0)
    rc, _, err = run(capsys, "-i", src, "-o", tmp_path / "x.jpg", *NOISE)
    assert rc == 2 and "3 frames" in err and not (tmp_path / "x.jpg").exists()


# --- 6. progress -------------------------------------------------------------------------------

def test_json_progress_on_stdout(tmp_path, capsys, lena, neko):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    rc, out, err = run(capsys, "-i", lena, neko, tmp_path / "bad.png", "-o", tmp_path / "o",
                       *NOISE, "--progress", "json")
    assert rc == 1 and err == ""
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events if e["event"] != "tiles"] == [
        "start", "file", "done", "file", "done", "file", "done", "summary"]
    assert events[-1]["written"] == 2 and events[-1]["failed"] == 1
    assert any(e["event"] == "tiles" for e in events)


def test_quiet_and_bar(tmp_path, capsys, lena, neko):
    (tmp_path / "bad.png").write_bytes(b"")
    rc, out, err = run(capsys, "-i", lena, neko, tmp_path / "bad.png", "-o", tmp_path / "o",
                       *NOISE, "--quiet")
    assert rc == 1 and out == "" and len(err.splitlines()) == 1 and "bad.png" in err
    rc, out, err = run(capsys, "-i", lena, neko, "-o", tmp_path / "o2", *NOISE, "--progress", "bar")
    assert rc == 0 and "2/2" in err and "file" in err


# --- 7. models on a fresh machine ----------------------------------------------------------------

@pytest.fixture
def no_models(tmp_path, monkeypatch):
    """No model anywhere: an empty $W2X_MODEL_DIR, an empty cache and no bundle (but the
    download table, read from the real weights/ when w2x.download is first imported)."""
    from w2x import download, store  # noqa: F401  (download: imported before the patch)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("W2X_MODEL_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("W2X_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "weights_dir", lambda: tmp_path / "no-bundle")
    return tmp_path / "cache" / "models"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_first_run_without_models_prints_the_download_hint(tmp_path, capsys, no_models, lena):
    rc, _, err = run(capsys, "-i", lena, "-o", tmp_path / "x.png")
    assert rc == 2 and "w2x models download --style art" in err
    assert not (tmp_path / "x.png").exists()


def test_first_run_offers_the_download_on_a_terminal(tmp_path, capsys, monkeypatch, no_models, lena):
    from w2x import download
    fetched = []

    def fake_download(style, *a, **k):                    # the loopback test is test_download's
        fetched.append(style)
        shutil.copytree(MODEL_DIR / "vgg_7" / "photo", no_models / "vgg_7" / "photo")
        return []
    monkeypatch.setattr(download, "download", fake_download)
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    args = ["-i", lena, "-o", tmp_path / "x.png", "-m", "noise", "--style", "photo",
            "--backend", "numpy", "--tile-size", "48", "--progress", "none"]
    rc, _, err = run(capsys, *args)
    assert rc == 2 and "[y/N]" in err and fetched == []
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    rc, _, err = run(capsys, *args)
    assert rc == 0 and fetched == ["photo"] and (tmp_path / "x.png").is_file()


def test_models_list_is_dispatched(capsys):
    rc, out, _ = run(capsys, "models", "list")
    assert rc == 0 and "vgg_7/art/noise1_model\t" in out


# --- 8. bad input ------------------------------------------------------------------------------

def _bad(kind: str, folder) -> tuple:
    path = folder / f"{kind}.png"
    good = io.BytesIO()
    crop("lena.png", (0, 0, 16, 16), "RGB").save(good, "PNG")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.getvalue()[:len(good.getvalue()) // 2])
    elif kind == "text":
        path.write_text("hello, I am not an image\n")
    elif kind == "float_tiff":                          # Pillow reads it; w2x has no float path
        path = folder / "float.tif"
        Image.fromarray(np.zeros((8, 8), np.float32)).save(path)
    elif kind == "too_big":
        path.write_bytes(good.getvalue())
        return path, ["--max-pixels", "100"]
    return path, []


@pytest.mark.parametrize("kind, words", [
    ("empty", "empty"), ("truncated", "truncated"), ("text", "not an image"),
    ("float_tiff", "unsupported"), ("too_big", "--max-pixels")])
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, capsys, kind, words):
    src, extra = _bad(kind, tmp_path)
    (tmp_path / "out").mkdir()
    rc, out, err = run(capsys, "-i", src, "-o", tmp_path / "out" / "x.png", *NOISE, *extra)
    assert rc == 2 and out == ""  # a single input that fails is an error of the run
    assert len(err.splitlines()) == 1 and err.startswith("w2x: error:") and src.name in err
    assert words in err
    assert no_stray_files(tmp_path / "out")


def test_unwritable_output_directory_is_one_line_exit_2(tmp_path, capsys, lena):
    (tmp_path / "blocker").write_text("a file, not a directory")
    rc, _, err = run(capsys, "-i", lena, "-o", tmp_path / "blocker" / "x.png", *NOISE)
    assert rc == 2 and len(err.splitlines()) == 1 and "cannot write to output directory" in err


def test_output_that_is_the_input_is_refused(capsys, lena):
    before = lena.read_bytes()
    rc, _, err = run(capsys, "-i", lena, "-o", lena, *NOISE)
    assert rc == 2 and "input itself" in err and len(err.splitlines()) == 1
    assert lena.read_bytes() == before


def test_existing_output_replaced_atomically_or_refused(tmp_path, capsys, lena):
    out = tmp_path / "out" / "x.png"
    out.parent.mkdir()
    out.write_bytes(b"old")
    rc, _, err = run(capsys, "-i", lena, "-o", out, *NOISE, "--no-overwrite")
    assert rc == 2 and "--no-overwrite" in err and out.read_bytes() == b"old"
    assert run(capsys, "-i", lena, "-o", out, *NOISE, "--resume")[0] == 0
    assert out.read_bytes() == b"old"
    assert run(capsys, "-i", lena, "-o", out, *NOISE)[0] == 0        # the original: replace
    assert Image.open(out).size == (16, 16) and no_stray_files(out.parent, "x.png")


def test_bad_options_exit_2(capsys, lena):
    assert run(capsys, "-i", lena, "--tta-level", "3")[0] == 2
    assert run(capsys, "-i", lena, "--resume", "--no-overwrite")[0] == 2
    rc, _, err = run(capsys, "-i", lena.parent / "missing.png")
    assert rc == 2 and "no such file" in err


# --- 9. waifu2x users' language (issue 16) ---------------------------------------------------------

@pytest.fixture
def parsed(monkeypatch, capsys, lena, tmp_path):
    """Run the command line up to the batch loop; return what it would run with."""
    from w2x.cli import batch

    def fake_run_jobs(jobs, conv, reporter, *, existing, plans):
        import threadpoolctl
        seen.update(jobs=jobs, conv=conv, reporter=reporter, existing=existing,
                    blas_threads={lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                                  if lib["user_api"] == "blas"})
        return batch.Summary(written=list(jobs))

    monkeypatch.setattr(batch, "run_jobs", fake_run_jobs)
    seen = {}

    def parse(*args):
        seen.clear()
        style = [] if "-model_dir" in args else ["--style", "vgg_7/art"]
        rc, out, err = run(capsys, "-i", lena, "-o", tmp_path / "x.png", *style, *args)
        seen.update(rc=rc, err=err)
        return seen
    return parse


@pytest.mark.parametrize("args, field, want", [
    (["-noise_level", "3"], "noise_level", 3),
    (["-noise_level=0"], "noise_level", 0),
    (["-crop_size", "128"], "tile_size", 128),
    (["-batch_size", "4"], "batch_size", 4),
    (["-tta", "1"], "tta_level", 8),                       # waifu2x.lua:266-267: -tta_level 8
    (["-tta", "1", "-tta_level", "2"], "tta_level", 2),
    (["-tta", "0", "-tta_level", "4"], "tta_level", 1),    # the level counts only with -tta 1
    (["-tta_level", "4"], "tta_level", 4),
    (["-m", "noise"], "mode", "noise"),
    (["-method", "scale"], "mode", "scale"),
])
def test_original_spellings_set_the_options(parsed, args, field, want):
    seen = parsed(*args)
    assert seen["rc"] == 0, seen["err"]
    assert getattr(seen["conv"].opts, field) == want


def test_original_model_dir_depth_and_scale(parsed):
    seen = parsed("-model_dir", MODEL_DIR / "vgg_7" / "art", "-depth", "16", "-scale", "1.5",
                  "-m", "scale")
    conv = seen["conv"]
    assert seen["rc"] == 0 and conv.opts.model_dir == str(MODEL_DIR / "vgg_7" / "art")
    assert conv.depth == 16 and conv.target.scale == 1.5


@pytest.mark.parametrize("args, existing", [(["-resume", "1"], "skip"), (["-resume", "0"], "replace")])
def test_original_resume(parsed, args, existing):
    assert parsed(*args)["existing"] == existing


@pytest.mark.parametrize("args, quiet", [(["-q", "1"], True), (["-q", "0"], False), (["-q"], True)])
def test_original_quiet(parsed, args, quiet):
    assert parsed(*args)["reporter"].quiet is quiet


def test_original_thread_and_ncnn_j_limit_blas(parsed):
    assert parsed("-thread", "1")["blas_threads"] == {1}
    assert parsed("-j", "1:1:2")["blas_threads"] == {1}     # load:proc:save -> proc
    assert parsed("--threads", "1")["blas_threads"] == {1}
    assert parsed("-thread", "-1")["rc"] == 0                 # the original's default: all


def test_threads_limit_numba_too_and_are_restored(parsed):
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    seen = {}
    from w2x.cli import batch
    real = batch.run_jobs

    def spy(*a, **k):
        seen["numba"] = numba.get_num_threads()
        return real(*a, **k)
    import unittest.mock
    with unittest.mock.patch.object(batch, "run_jobs", spy):
        assert parsed("--threads", "1")["rc"] == 0
    assert seen["numba"] == 1 and numba.get_num_threads() == before


@pytest.mark.parametrize("args, field, want", [
    (["-t", "64"], "tile_size", 64),
    (["-t", "0"], "tile_size", 256),                         # ncnn's 0 = automatic
    (["-x"], "tta_level", 8),
    (["-n", "-1"], "mode", "scale"),                         # ncnn: no denoising
    (["-n", "2"], "noise_level", 2),
])
def test_ncnn_spellings_set_the_options(parsed, args, field, want):
    seen = parsed(*args)
    assert seen["rc"] == 0, seen["err"]
    assert getattr(seen["conv"].opts, field) == want


def test_ncnn_format(capsys, lena, tmp_path):
    rc, _, err = run(capsys, "-i", lena, "-o", f"{tmp_path / 'out'}/", "-f", "webp", *NOISE)
    assert rc == 0 and Image.open(tmp_path / "out" / "lena.webp").format == "WEBP"


def test_ncnn_gpu_and_verbose(parsed):
    seen = parsed("-g", "-1", "-v")
    assert seen["rc"] == 0 and seen["conv"].opts.backend in ("numba", "numpy")   # the CPU
    assert "vgg_7/art/noise1_model.json" in seen["err"] and "backend" in seen["err"]
    seen = parsed("-g", "-1", "--backend", "cupy")
    assert seen["rc"] == 2 and seen["err"].count("\n") == 1 and "-g -1" in seen["err"]


def test_ncnn_gpu_without_cuda_is_one_line(parsed):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    seen = parsed("-g", "0")
    assert seen["rc"] == 2 and seen["err"].count("\n") == 1 and "-g -1" in seen["err"]


def test_ncnn_model_folder_gets_a_one_line_hint(capsys, lena):
    rc, _, err = run(capsys, "-i", lena, "-m", "models-cunet")
    assert rc == 2 and err.count("\n") == 1 and "--style art" in err and "--model-dir" in err


def test_original_noise_level_was_parsed_as_n():
    """The bug of issue 16: argparse read -noise_level as -n oise_level."""
    from w2x.cli.spellings import translate
    assert translate(["-noise_level", "1", "-i", "a.png"]) == ["--noise-level", "1", "-i", "a.png"]


def test_unknown_option_is_one_line_with_a_suggestion(capsys, lena):
    rc, _, err = run(capsys, "-i", lena, "--tile-sise", "48")
    assert rc == 2 and err == "w2x: error: unknown option --tile-sise; did you mean --tile-size?\n"
    rc, _, err = run(capsys, "-i", lena, "--tta-level", "3")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("w2x: error:")


def test_version(capsys):
    import w2x
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"w2x {w2x.__version__}" and w2x.__version__[0].isdigit()


def test_one_line_per_converted_file_without_a_terminal(tmp_path, capsys, lena):
    rc, out, err = run(capsys, "-i", lena, "-o", tmp_path / "x.png", *SCALE)
    assert rc == 0 and out == ""
    line = err.strip()
    assert line.count("\n") == 0 and str(tmp_path / "x.png") in line and "32x32" in line
    assert " s (vgg_7/art, numpy)" in line


def test_one_bar_over_all_passes_never_goes_back(tmp_path, capsys, neko):
    """-s 4 on an image with alpha: two 2x passes, each with its alpha; the file's tiles
    are counted up front, so the JSON file_done/file_total never fall back."""
    rc, out, _ = run(capsys, "-i", neko, "-o", tmp_path / "x.png", *NOISE[2:], "-m", "noise_scale",
                     "-s", "4", "--progress", "json")
    tiles = [json.loads(line) for line in out.splitlines() if '"tiles"' in line]
    assert rc == 0 and max(t["pass"] for t in tiles) >= 4       # denoise, 2x, alpha, 2x, alpha
    fractions = [t["file_done"] / t["file_total"] for t in tiles]
    assert fractions == sorted(fractions) and fractions[-1] == 1
    assert len({t["file_total"] for t in tiles}) == 1              # counted right up front


def test_text_bar_never_goes_back(tmp_path, capsys, neko, monkeypatch):
    import tqdm                     # w2x.cli.progress imports tqdm.tqdm only to draw bars
    positions = []

    class FakeBar:
        def __init__(self, total=0, **kw):
            self.total, self.n = total, 0

        def update(self, k):
            self.n += k
            positions.append(self.n / self.total)

        def close(self):
            pass
    monkeypatch.setattr(tqdm, "tqdm", FakeBar)
    monkeypatch.setattr(FakeBar, "write", staticmethod(lambda line, file: file.write(line + "\n")),
                        raising=False)
    rc, _, _ = run(capsys, "-i", neko, "-o", tmp_path / "x.png", *FAST[:-2], "-s", "4",
                   "--progress", "bar")
    assert rc == 0 and positions == sorted(positions) and positions[-1] == 1


@pytest.fixture
def no_numba(monkeypatch):
    """The numba backend fails to load, as where Numba is missing."""
    import sys
    from w2x.nn import backend
    backend.get_backend.cache_clear()
    monkeypatch.setitem(sys.modules, "w2x.kernels.cpu_numba", None)   # its import fails
    yield
    backend.get_backend.cache_clear()


def test_auto_backend_fallback_to_numpy_is_noted(tmp_path, capsys, lena, no_numba):
    try:
        import cupy  # noqa: F401
        pytest.skip("auto picks cupy here")
    except ImportError:
        pass
    args = ["-i", lena, "-o", tmp_path / "x.png", "--style", "vgg_7/art", "-m", "noise",
            "--tile-size", "48", "--progress", "none"]
    rc, _, err = run(capsys, *args)
    assert rc == 0 and "note: --backend auto runs on numpy" in err and "w2x[cpu]" in err
    assert "(vgg_7/art, numpy)" in err
    rc, _, err = run(capsys, *args, "-q")
    assert rc == 0 and err == ""


def test_a_bare_file_name_says_to_use_dash_i_and_names_every_command(capsys):
    rc, _, err = run(capsys, "foo.png")
    assert rc == 2 and err.count("\n") == 1
    assert "give inputs with -i (w2x -i foo.png) or a command: models, benchmark, serve" in err


def test_options_before_a_subcommand_leave_its_own_options_alone(capsys):
    rc, out, err = run(capsys, "-q", "serve", "--port", "8001", "--help")
    assert rc == 0 and "usage: w2x serve" in out and err == ""
    rc, out, _ = run(capsys, "-q", "models", "list")
    assert rc == 0
