"""Batch planning, any-scale sizes and resizers, progress events, and the 30-file must-show run.

Inputs are crops of ../shared/images written into tmp_path; the models are the cheapest ones
(vgg_7/art on the numpy backend, tiles just larger than the crops) so that the whole file
runs in seconds.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from batch_inputs import CROP, make_thirty_inputs
from conftest import IMAGES, model_path
from w2x import anyscale, load_model, pipeline, reconstruct
from w2x.cli import batch
from w2x.cli import files
from w2x.anyscale import Target
from w2x.cli.batch import Conversion
from w2x.cli.files import Job, Source, UsageError
from w2x.cli.main import main as cli_main
from w2x.pipeline import Options
from w2x.cli.progress import JsonReporter, TextReporter

# vgg_7 needs 7 px of context each side: a 48 px tile holds a whole 24 px crop (noise, 1x)
# or a whole 16 px crop (scale: 32 + 14 = 46), so each pass is one cheap tile.
FAST = ["--style", "vgg_7/art", "--backend", "numpy", "--tile-size", "48"]
FAST_OPTS = Options(mode="noise", style="vgg_7/art", backend="numpy", tile_size=48)
# float32 sums in a different order (Pillow's resampler vs ours, BLAS tiling).
FLOAT_ATOL = 1e-5
# Pillow's 8-bit resampler rounds each pass to 8 bit with fixed-point weights: measured
# max 1.003 levels of 255 against its float ("F") path.
PILLOW_8BIT_ATOL = 1.5 / 255


def _crop(name: str, box, mode: str = "RGB") -> Image.Image:
    return Image.open(IMAGES / name).convert(mode).crop(box)


def _planes(im: Image.Image) -> np.ndarray:
    a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    return np.ascontiguousarray(a.transpose(2, 0, 1))          # (H, W, 3) -> (3, H, W)


# --- output names ------------------------------------------------------------------------------

@pytest.mark.parametrize("template, want", [
    ("out/%s_x2.png", "out/miku_x2.png"),
    ("out/%d.png", "out/7.png"),
    ("out/%04d.png", "out/0007.png"),
    ("out/%s-%03d.webp", "out/miku-007.webp"),
    ("out/%03d-%s.webp", "out/007-miku.webp"),              # %d before %s: the original swaps args
    ("out/fixed.png", "out/fixed.png"),
])
def test_format_output_follows_the_original_templates(template, want):
    assert files.format_output(template, batch.Path("in/miku.jpg"), 7) == want


def _tree(tmp_path):
    """in/a.png, in/b.jpg, in/sub/c.png, in/sub/deeper/d.webp, in/.hidden.png, in/notes.txt"""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    crop = _crop("miku_small.png", (0, 0, 16, 16))
    for rel in ("a.png", "b.jpg", "sub/c.png", "sub/deeper/d.webp", ".hidden.png"):
        crop.save(root / rel)
    (root / "notes.txt").write_text("not an image")
    return root


def test_directory_scan_flat_and_recursive(tmp_path):
    root = _tree(tmp_path)
    flat = files.expand_inputs([str(root)])
    assert [s.rel.as_posix() for s in flat] == ["a.png", "b.jpg"]
    deep = files.expand_inputs([str(root)], recursive=True)
    assert [s.rel.as_posix() for s in deep] == ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.webp"]
    # an output folder inside the input tree is never scanned (no x_2x_2x on the next run)
    skipped = files.expand_inputs([str(root)], recursive=True, exclude=root / "sub")
    assert [s.rel.as_posix() for s in skipped] == ["a.png", "b.jpg"]


def test_glob_keeps_the_tree_below_its_fixed_part(tmp_path):
    root = _tree(tmp_path)
    got = files.expand_inputs([str(root / "**" / "*.png")], recursive=True)
    assert [s.rel.as_posix() for s in got] == ["a.png", "sub/c.png"]


def test_list_file_keeps_order_skips_blank_lines_and_keeps_missing_entries(tmp_path):
    root = _tree(tmp_path)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{root / 'sub' / 'c.png'}\n\n{root / 'a.png'}\n{root / 'gone.png'}\n")
    got = files.expand_inputs([], list_file=str(lst))
    assert [s.path.name for s in got] == ["c.png", "a.png", "gone.png"]   # gone: fails at run


@pytest.mark.parametrize("args, message", [
    (["nowhere.png"], "no such file"),
    (["*.nothing"], "no files match"),
    ([], "no input"),
])
def test_bad_input_arguments_are_usage_errors(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message):
        files.expand_inputs(args)


def test_empty_directory_is_a_usage_error_with_a_hint(tmp_path):
    (tmp_path / "sub").mkdir()
    _crop("lena.png", (0, 0, 8, 8)).save(tmp_path / "sub" / "x.png")
    with pytest.raises(UsageError, match="--recursive"):
        files.expand_inputs([str(tmp_path)])


def test_outputs_default_beside_input_mirror_into_directory_and_fill_templates(tmp_path):
    root = _tree(tmp_path)
    sources = files.expand_inputs([str(root)], recursive=True)
    beside = files.plan_jobs(sources, None, mode="noise_scale")
    assert beside[2].dst == root / "sub" / "c_noise_scale.png"               # waifu2x.lua:19-20
    out = tmp_path / "out"
    mirrored = files.plan_jobs(sources, str(out), mode="scale", fmt="webp")
    assert [j.dst.relative_to(out).as_posix() for j in mirrored] == [
        "a.webp", "b.webp", "sub/c.webp", "sub/deeper/d.webp"]
    templated = files.plan_jobs(sources, str(out / "%s_%02d.png"), mode="scale")
    assert [j.dst.relative_to(out).as_posix() for j in templated] == [
        "a_01.png", "b_02.png", "sub/c_03.png", "sub/deeper/d_04.png"]


def test_one_file_goes_to_the_named_file_or_into_an_existing_directory(tmp_path):
    src = [Source(tmp_path / "a.png", batch.Path("a.png"), named=True)]
    assert files.plan_jobs(src, str(tmp_path / "b.jpg"), mode="scale")[0].dst == tmp_path / "b.jpg"
    (tmp_path / "d").mkdir()
    assert files.plan_jobs(src, str(tmp_path / "d"), mode="scale")[0].dst == tmp_path / "d" / "a.png"


def test_clashing_outputs_are_refused_before_anything_runs(tmp_path):
    root = _tree(tmp_path)
    a, b = root / "a.png", root / "b.jpg"
    two = [Source(a, batch.Path("a.png"), True), Source(b, batch.Path("b.jpg"), True)]
    with pytest.raises(UsageError, match="cannot all be written"):
        files.plan_jobs(two, str(tmp_path / "one.png"), mode="scale")
    with pytest.raises(UsageError, match="would both be written"):      # x.png, x.jpg -> x.png
        files.plan_jobs([Source(a, batch.Path("x.png")), Source(b, batch.Path("x.jpg"))],
                        str(tmp_path / "o"), mode="scale")
    with pytest.raises(UsageError, match="is the input itself"):
        files.plan_jobs([Source(a, batch.Path("a.png"), True)], str(a), mode="scale")
    with pytest.raises(UsageError, match="is the input .*a.png"):       # b.jpg -> a.png
        files.plan_jobs([Source(b, batch.Path("a.jpg"), True), Source(a, batch.Path("z.png"), True)],
                        str(root), mode="scale")
    with pytest.raises(UsageError, match="unknown output extension"):
        files.plan_jobs([Source(a, batch.Path("a.png"), True)], str(tmp_path / "x.xyz"), mode="scale")


def test_unwritable_output_directory_is_one_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(UsageError, match="cannot write to output directory"):
        files.prepare_output_dirs([Job(tmp_path / "a.png", blocker / "sub" / "a.png", 1)])
    ok = tmp_path / "new" / "deep"
    files.prepare_output_dirs([Job(tmp_path / "a.png", ok / "a.png", 1)])
    assert ok.is_dir() and not any(ok.iterdir())                         # probe removed


# --- any scale --------------------------------------------------------------------------------

@pytest.mark.parametrize("target, hw, want", [
    (Target(1.6), (159, 228), (254, 365)),
    (Target(3.0), (10, 7), (30, 21)),
    (Target(width=500), (159, 228), (349, 500)),
    (Target(height=318), (159, 228), (318, 456)),
    (Target(width=500, height=300), (159, 228), (300, 430)),            # height binds
    (Target(width=300, height=500), (159, 228), (209, 300)),            # width binds
    (Target(0.01), (10, 10), (1, 1)),                                   # never 0 px
])
def test_target_sizes_keep_the_aspect_ratio(target, hw, want):
    assert target.size(*hw) == want


@pytest.mark.parametrize("scale, passes", [(1.0, 0), (0.5, 0), (1.6, 1), (2.0, 1), (3.0, 2),
                                           (4.0, 2), (5.0, 3), (8.0, 3), (16.0, 4)])
def test_pass_count_is_ceil_log2(scale, passes):
    h, w = 159, 228
    out_h, out_w = Target(scale).size(h, w)
    assert anyscale.count_passes(h, w, out_h, out_w) == passes
    assert passes == max(0, math.ceil(math.log2(scale)))


def test_pass_count_uses_the_rounded_target():
    # 10 px at 2.01x rounds to 20 px: one pass reaches it, where ceil(log2 2.01) would run two
    assert anyscale.count_passes(10, 10, *Target(2.01).size(10, 10)) == 1


def test_noise_runs_in_the_first_pass_only():
    assert anyscale.pass_modes("noise_scale", 3) == ["noise_scale", "scale", "scale"]
    assert anyscale.pass_modes("scale", 2) == ["scale", "scale"]
    assert anyscale.pass_modes("noise_scale", 0) == ["noise"]
    assert anyscale.pass_modes("scale", 0) == []
    with pytest.raises(ValueError, match="does not scale"):
        anyscale.pass_modes("noise", 1)


def _area_loop(x, n_out, axis):
    """Area average by explicit overlap lengths, float64."""
    x = np.moveaxis(x, axis, -1).astype(np.float64)
    n_in = x.shape[-1]
    r = n_in / n_out
    out = np.zeros(x.shape[:-1] + (n_out,))
    for i in range(n_out):
        lo, hi = i * r, (i + 1) * r
        for j in range(int(lo), min(n_in, math.ceil(hi))):
            out[..., i] += x[..., j] * (min(hi, j + 1) - max(lo, j))
        out[..., i] /= r
    return np.moveaxis(out, -1, axis)


def test_area_resize_is_the_exact_overlap_mean():
    x = _planes(_crop("lena.png", (100, 100, 137, 123)))          # 23 x 37, awkward ratios
    got = anyscale.resize(x, 10, 16, "area")
    want = _area_loop(_area_loop(x, 10, axis=1), 16, axis=2)
    assert np.abs(got - want).max() <= FLOAT_ATOL
    # an integer factor is the plain block mean
    blocks = x[:, :22, :36].reshape(3, 11, 2, 12, 3).mean(axis=(2, 4))   # (3, 11, 2, 12, 3) blocks
    assert np.abs(anyscale.resize(x[:, :22, :36], 11, 12, "area") - blocks).max() <= FLOAT_ATOL


@pytest.mark.parametrize("name, pil", [("lanczos", Image.Resampling.LANCZOS),
                                       ("bicubic", Image.Resampling.BICUBIC),
                                       ("box", Image.Resampling.BOX)])
def test_pillow_filters_match_pillow_on_8_bit_images(name, pil):
    im = _crop("lena.png", (0, 0, 64, 48))
    got = anyscale.resize(_planes(im), 30, 40, name)
    ref = np.asarray(im.resize((40, 30), pil), dtype=np.float32).transpose(2, 0, 1) / 255
    assert np.abs(got - ref).max() <= PILLOW_8BIT_ATOL


def test_sinc_filter_is_graphicsmagick_sinc():
    from w2x.resize import gm_resize
    x = _planes(_crop("lena.png", (0, 0, 40, 30)))
    np.testing.assert_array_equal(anyscale.resize(x, 24, 32, "sinc"),
                                  np.clip(gm_resize(x, 24, 32, "sinc"), 0, 1))


def test_any_scale_denoises_once_then_doubles_then_downscales():
    x = _planes(_crop("miku_small_noisy.png", (60, 40, 70, 50)))   # 10 x 10: 4x = 40 in one tile
    noise = load_model(model_path("vgg_7/art/noise1_model.json.gz"))
    up = load_model(model_path("vgg_7/art/scale2.0x_model.json.gz"))
    kw = dict(tile_size=56, backend="numpy")
    four = reconstruct.upscale2x(up, reconstruct.upscale2x(up, reconstruct.denoise(noise, x, **kw), **kw), **kw)
    opts = Options(mode="noise_scale", style="vgg_7/art", backend="numpy", tile_size=56)
    got4, _ = pipeline.convert_planes(x, None, opts, Target(4.0))
    assert got4.shape == (3, 40, 40)
    assert np.abs(got4 - four).max() <= FLOAT_ATOL
    got3, _ = pipeline.convert_planes(x, None, opts, Target(3.0))
    assert got3.shape == (3, 30, 30)
    assert np.abs(got3 - anyscale.resize(four, 30, 30, "lanczos")).max() <= FLOAT_ATOL
    # denoising again in the second pass would change the result
    twice = reconstruct.upscale2x(up, reconstruct.denoise(noise, reconstruct.upscale2x(
        up, reconstruct.denoise(noise, x, **kw), **kw), **kw), **kw)
    assert np.abs(twice - four).max() > 0.01


def test_alpha_takes_the_same_passes_and_resize():
    im = Image.open(IMAGES / "neko_alpha.png").crop((8, 8, 24, 24))     # 16 x 16, edge of the cat
    a = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255       # (4, H, W)
    assert a[3].min() == 0 and a[3].max() == 1
    opts = Options(mode="scale", style="vgg_7/art", backend="numpy", tile_size=48)
    rgb, alpha = pipeline.convert_planes(np.ascontiguousarray(a[:3]), a[3:], opts, Target(1.5))
    assert rgb.shape == (3, 24, 24) and alpha.shape == (1, 24, 24)
    assert alpha.min() == 0 and alpha.max() == 1                        # clipped after Lanczos
    # the alpha went through the same 2x pass (the scale model) and the same resize
    up = load_model(model_path("vgg_7/art/scale2.0x_model.json.gz"))
    a2 = reconstruct.upscale2x(up, a[3:], tile_size=128, backend="numpy")  # alpha's own tile size
    assert np.abs(alpha - anyscale.resize(a2, 24, 24, "lanczos")).max() <= FLOAT_ATOL


# --- the loop, resume and overwrite, progress ----------------------------------------------------

def _two_jobs(tmp_path):
    for k, name in enumerate(("a.png", "b.png")):
        _crop("miku_small.png", (k * 20, 0, k * 20 + 16, 16)).save(tmp_path / name)
    return [Job(tmp_path / n, tmp_path / "out" / n, k + 1) for k, n in enumerate(("a.png", "b.png"))]


def test_resume_skips_and_no_overwrite_refuses_existing_outputs(tmp_path):
    jobs = _two_jobs(tmp_path)
    files.prepare_output_dirs(jobs)
    jobs[0].dst.write_bytes(b"sentinel")
    conv = Conversion(FAST_OPTS, Target(1.0))
    s = batch.run_jobs(jobs, conv, existing="skip")
    assert s.skipped == [jobs[0]] and s.written == [jobs[1]] and not s.failed
    assert jobs[0].dst.read_bytes() == b"sentinel"
    s = batch.run_jobs(jobs, conv, existing="refuse")
    assert len(s.failed) == 2 and "--no-overwrite" in s.failed[0][1]
    assert jobs[0].dst.read_bytes() == b"sentinel"
    s = batch.run_jobs(jobs, conv, existing="replace")             # the original's behaviour
    assert len(s.written) == 2 and Image.open(jobs[0].dst).size == (16, 16)
    assert sorted(p.name for p in jobs[0].dst.parent.iterdir()) == ["a.png", "b.png"]


def test_json_progress_events(tmp_path):
    import io
    jobs = _two_jobs(tmp_path)
    jobs.append(Job(tmp_path / "missing.png", tmp_path / "out" / "missing.png", 3))
    files.prepare_output_dirs(jobs)
    stream = io.StringIO()
    batch.run_jobs(jobs, Conversion(FAST_OPTS, Target(1.0)), JsonReporter(stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and events[0]["files"] == 3 and kinds[-1] == "summary"
    assert kinds.count("file") == 3 and kinds.count("done") == 3
    tiles = [e for e in events if e["event"] == "tiles"]
    assert tiles and all(e["pass"] == 1 and e["done"] <= e["total"] for e in tiles)
    done = [e for e in events if e["event"] == "done"]
    assert [d["status"] for d in done] == ["written", "written", "failed"]
    assert "no such file" in done[2]["error"]
    assert events[-1]["failed"] == 1 and events[-1]["failures"][0]["input"].endswith("missing.png")


def test_text_progress_shows_file_and_tile_bars_and_a_summary(tmp_path, monkeypatch):
    import io

    from w2x.cli import progress
    monkeypatch.setattr(progress, "LONG_WORK_S", 0)                # show tile bars at once
    jobs = _two_jobs(tmp_path)
    files.prepare_output_dirs(jobs)
    stream = io.StringIO()
    batch.run_jobs(jobs, Conversion(FAST_OPTS, Target(1.0)), TextReporter(stream=stream))
    text = stream.getvalue()
    assert "2/2" in text and "file" in text and "tile" in text
    assert "2 written, 0 skipped, 0 failed" in text
    quiet = io.StringIO()
    batch.run_jobs(jobs, Conversion(FAST_OPTS, Target(1.0)),
                   TextReporter(bars=False, quiet=True, stream=quiet))
    assert quiet.getvalue() == ""


# --- must show: a 30-file directory with two broken files ----------------------------------------

def test_thirty_file_batch_with_two_broken_files(tmp_path, capsys):
    src = tmp_path / "photos"
    make_thirty_inputs(src)
    assert sum(1 for p in src.rglob("*") if p.is_file()) == 30

    out = tmp_path / "out"
    rc = cli_main(["-i", str(src), "-r", "-o", str(out), "-m", "noise", *FAST, "--progress", "none"])
    err = capsys.readouterr().err

    assert rc == 1
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(written) == 28 and "more/img03.png" in written and "img01.png" in written
    assert not any("broken" in w or w.startswith(".") or "/." in w for w in written)
    assert "28 written, 0 skipped, 2 failed" in err
    summary = err[err.index("28 written"):]
    assert "broken_empty.png" in summary and "broken_truncated.png" in summary
    assert "empty" in summary and ("truncated" in summary or "damaged" in summary)
    for p in out.rglob("*.png"):
        assert Image.open(p).size == (CROP, CROP)
