"""w2x.psnr (and `w2x benchmark`): metric helpers on hand-made arrays, and the bicubic column on real test sets.

The BSD100 bicubic figure is the published one (appendix/benchmark.md: 29.558); it pins the
whole protocol (16-bit GM Catrom, truncated MATLAB luma, per-image PSNR mean), since the
usual shortcuts each move it in the third decimal (float resize 29.559, 8-bit LR 29.556,
rounded luma 29.557).
"""
import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from w2x.cli.main import main as cli_main
from w2x.psnr import (ImageScore, JpegSettings, crop_mod4, jpeg_degrade, mean_psnr, psnr,
                           read_rgb8, rgb2y_matlab, run, score_image, y_mse)
from w2x.resize import gm_resize

SHARED = Path(os.environ.get("W2X_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DATASETS = SHARED / "datasets"
BSD100_PUBLISHED_BICUBIC = 29.558  # appendix/benchmark.md, 2x PSNR table
BSD100_MEASURED_BICUBIC = 29.557583544724352  # this implementation (regression value)
SET5_MEASURED_BICUBIC = 33.6598913585395  # this implementation (not published by waifu2x)
SCORE_ATOL = 1e-9  # deterministic integer MSEs; only float summation order could move it
MAX_PSNR = 10 * math.log10(255 ** 2)  # MSE floored at 1: 48.13 dB


def y_image(*rgb8):
    """(3, 1, 1) float32 image of one 8-bit RGB pixel, as byte2float makes it."""
    return np.array(rgb8, np.float32).reshape(3, 1, 1) / np.float32(255)


def needs(folder):
    return pytest.mark.skipif(not folder.is_dir(), reason=f"{folder} not available")


def test_crop_mod4_keeps_the_top_left_block():
    x = np.arange(2 * 7 * 10).reshape(2, 7, 10)
    np.testing.assert_array_equal(crop_mod4(x), x[:, :4, :8])
    assert crop_mod4(np.zeros((3, 320, 480))).shape == (3, 320, 480)


@pytest.mark.parametrize("rgb8, expected", [
    ((255, 255, 255), 235),
    ((0, 0, 0), 16),
    ((0, 255, 0), 144),     # 144.553: truncated, rounding would give 145
    ((0, 0, 255), 40),      # 40.966
    ((2, 248, 209), 161),   # float32 sum is just below 162; float64 gives 162
    ((94, 167, 252), 149),  # float32 sum reaches 149; float64 stays at 148.99...
])
def test_rgb2y_matlab_truncates_a_float32_sum(rgb8, expected):
    assert rgb2y_matlab(y_image(*rgb8))[0, 0] == expected


def test_rgb2y_matlab_half_grey_truncates_not_rounds():
    x = np.full((3, 2, 2), 0.5, np.float32)  # 16 + 0.5 * 219 = 125.5
    assert rgb2y_matlab(x).tolist() == [[125, 125], [125, 125]]


def test_y_mse_and_psnr_on_hand_made_images():
    a = np.concatenate([y_image(0, 0, 0), y_image(255, 255, 255)], axis=2)  # Y = 16, 235
    b = np.concatenate([y_image(0, 0, 0), y_image(0, 255, 0)], axis=2)      # Y = 16, 144
    assert y_mse(a, b) == (235 - 144) ** 2 / 2
    assert psnr(255 ** 2) == 0.0
    assert psnr(100.0) == pytest.approx(28.130803608679106)


def test_psnr_floors_the_mse_at_one():
    assert psnr(0.0) == psnr(0.25) == psnr(1.0) == pytest.approx(MAX_PSNR)
    assert psnr(1.5) < MAX_PSNR
    x = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    assert psnr(y_mse(x, x)) == pytest.approx(48.1308036)


def test_read_rgb8_grey_alpha_and_undecodable(tmp_path):
    grey = np.array([[0, 100], [200, 255]], np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_rgb8(tmp_path / "grey.png"), np.stack([grey] * 3))
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)      # fully transparent: painted the loader's grey
    rgba[0, 1] = (10, 20, 30, 1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert read_rgb8(tmp_path / "alpha.png")[:, 0].tolist() == [[127, 10], [127, 20], [127, 30]]
    (tmp_path / "notes.txt").write_text("not an image")
    assert read_rgb8(tmp_path / "notes.txt") is None


def test_run_skips_undecodable_files_and_rejects_empty_folders(tmp_path):
    img = (np.random.default_rng(1).random((18, 21, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "b.png")
    (tmp_path / "a.txt").write_text("skip me")
    scores = run(tmp_path)
    assert [s.name for s in scores] == ["b"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no decodable image"):
        run(empty)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        run(tmp_path / "missing")


def test_score_image_scale_baseline_and_model_plumbing():
    img = (np.random.default_rng(2).random((3, 18, 22)) * 255).astype(np.uint8)  # crops to 16x20
    truth = crop_mod4(img).astype(np.float32) / np.float32(255)
    lr = gm_resize(truth, 8, 10)
    bicubic = gm_resize(lr, 16, 20)
    seen = []

    def model_fn(x):
        seen.append(x)
        return np.clip(bicubic + 0.01, 0, 1)

    s = score_image("r", img, "scale", model_fn)
    np.testing.assert_array_equal(seen[0], lr)  # the model gets the 16-bit LR, not 8-bit
    assert s.baseline_mse == y_mse(truth, bicubic)
    assert s.model_mse == y_mse(truth, np.clip(bicubic + 0.01, 0, 1))
    assert s.model_psnr == psnr(s.model_mse) and s.model_seconds >= 0
    with pytest.raises(ValueError, match="model output has shape"):
        score_image("r", img, "scale", lambda x: x)


def test_noise_method_scores_the_jpeg_input():
    img = (np.random.default_rng(3).random((3, 16, 16)) * 255).astype(np.uint8)
    x = jpeg_degrade(img, JpegSettings(75, 1, 5))
    assert x.dtype == np.float32 and np.array_equal(x * 255, np.round(x * 255))
    assert not np.array_equal(x, jpeg_degrade(img, JpegSettings(75, 2, 5)))
    s = score_image("n", img, "noise")
    assert s.baseline_mse == y_mse(img.astype(np.float32) / np.float32(255), x)


@needs(DATASETS / "Set5")
def test_set5_bicubic_regression():
    scores = run(DATASETS / "Set5")
    assert len(scores) == 5
    assert abs(mean_psnr(scores) - SET5_MEASURED_BICUBIC) < SCORE_ATOL


@needs(DATASETS / "BSD100")
def test_bsd100_bicubic_matches_published_table():
    score = mean_psnr(run(DATASETS / "BSD100"))
    assert round(score, 3) == BSD100_PUBLISHED_BICUBIC
    assert abs(score - BSD100_MEASURED_BICUBIC) < SCORE_ATOL


@needs(DATASETS / "Set5")
def test_main_prints_table_and_writes_csv(tmp_path, capsys):
    out_csv = tmp_path / "set5.csv"
    assert cli_main(["benchmark", str(DATASETS / "Set5"), "--bicubic-only", "--quiet",
                     "--csv", str(out_csv)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| dataset | method | model | TTA | bicubic PSNR |")
    assert lines[2].startswith(f"| Set5 | scale | - | - | {SET5_MEASURED_BICUBIC:.3f} | - | 5 |")
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["image"] for r in rows] == [f"img_00{i}_SRF_2_HR" for i in range(1, 6)]
    assert sum(float(r["baseline_psnr"]) for r in rows) / 5 == pytest.approx(SET5_MEASURED_BICUBIC)


def test_main_needs_a_model_or_bicubic_only(tmp_path, capsys):
    assert cli_main(["benchmark", str(tmp_path)]) == 2          # one line, not SystemExit
    err = capsys.readouterr().err
    assert "--bicubic-only" in err and err.count("\n") == 1
    assert cli_main(["benchmark", str(tmp_path / "missing"), "--bicubic-only", "--quiet"]) == 2


def test_mean_psnr_is_the_mean_of_per_image_psnr():
    scores = [ImageScore("a", 1.0, psnr(1.0)), ImageScore("b", 100.0, psnr(100.0))]
    assert mean_psnr(scores) == (psnr(1.0) + psnr(100.0)) / 2
    assert mean_psnr(scores) != psnr((1.0 + 100.0) / 2)  # not the PSNR of the mean MSE


def test_w2x_benchmark_subcommand_prints_the_table(capsys):
    assert cli_main(["benchmark", str(SHARED / "datasets" / "Set5"), "--bicubic-only", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| Set5 |" in out and "33.660" in out


# appendix/benchmark.md, BSD100 2x, upconv_7/photo without TTA: the published model column.
BSD100_PUBLISHED_UPCONV_7_PHOTO = 31.640


@needs(DATASETS / "BSD100")
def test_bsd100_upconv_7_photo_matches_published_table():
    """The whole chain against the original's published figure: GM Catrom input, the net
    (fastest backend here), float output, truncated MATLAB luma (about 35 s with numba)."""
    from conftest import MODEL_DIR
    from w2x import load_model, reconstruct
    model = load_model(MODEL_DIR / "upconv_7/photo/scale2.0x_model.json.gz")
    scores = run(DATASETS / "BSD100", model_fn=lambda x: reconstruct.upscale2x(model, x, backend="auto"))
    assert round(mean_psnr(scores, "model_psnr"), 3) == BSD100_PUBLISHED_UPCONV_7_PHOTO
