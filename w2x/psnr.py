"""PSNR benchmark of the original's published table (evaluation stage, not inference).

Reproduces nagadomi/waifu2x ``tools/benchmark.lua -method scale|noise -filter Catrom -color y
-range_bug 1`` as described in ../shared/docs/benchmark-protocol.md:

1. ground truth: every decodable file of a folder (sorted), cropped to its top-left
   multiple-of-4 block, as uint8 / 255 in float32;
2. input: ``scale`` -- a GraphicsMagick Catrom 0.5x at 16 bits (`w2x.resize.gm_resize`);
   ``noise`` -- the ground truth JPEG-compressed ``jpeg_times`` times;
3. outputs: the model's float output clamped to [0, 1] (not rounded to 8 bits), and the
   baseline (``scale``: GM Catrom 2x of the input = "bicubic"; ``noise``: the JPEG input);
4. metric: MATLAB-range luma truncated to integers, MSE floored at 1, PSNR per image,
   dataset score = mean of the per-image PSNRs.

The ``noise`` input is encoded with Pillow's libjpeg at 4:4:4; the original used
GraphicsMagick's JPEG writer with the libjpeg of its day, so noise figures are not
guaranteed to be bit-comparable with the original's (the ``scale`` figures are). On Debian 12
the decoded JPEGs matched ``gm convert -quality Q -sampling-factor 1x1`` (GM 1.3.40,
libjpeg-turbo) sample for sample on the images tried.

Line numbers below are nagadomi/waifu2x HEAD cc385f9.
"""
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from w2x import atomic, reconstruct
from w2x.anyscale import PASS_FACTOR
from w2x.io.write import jpeg_round_trip
from w2x.resize import gm_resize
from w2x.store import find_model, model_filename
from w2x.weight_cache import load_model

# benchmark.lua:91-99 rgb2y_matlab: MATLAB rgb2ycbcr luma, video range 16-235 (`-range_bug 1`).
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0
PEAK = 255.0      # benchmark.lua:135-141: PSNR = 10 log10(255^2 / max(MSE, 1))
MSE_FLOOR = 1.0   # caps a per-image PSNR at 48.13 dB
CROP_MULTIPLE = 4  # lib/iproc.lua:8-12 crop_mod4
DOWNSCALE_FILTER = "catrom"  # benchmark.lua:22 `-filter Catrom` (the published photo table)
BASELINE_FILTER = "catrom"   # benchmark.lua:34 `-baseline_filter Catrom`: the "bicubic" column
TTA_LEVELS = (1, 2, 4, 8)   # 1 = no TTA (benchmark.lua `-tta 0`)
METHODS = {"scale": "bicubic", "noise": "JPEG"}  # method -> what its baseline column is
# lib/image_loader.lua:10,99-102 paints fully transparent pixels 0.5, and iproc.float2byte
# (iproc.lua:41-50) turns that into trunc((0.5 + clip_eps8) * 255) in float32 = 127.
TRANSPARENT_GREY = 127


@dataclass(frozen=True)
class JpegSettings:
    """benchmark.lua:26-28 `-jpeg_quality 75 -jpeg_times 1 -jpeg_quality_down 5`."""
    quality: int = 75
    times: int = 1
    quality_down: int = 5

    def __post_init__(self):
        last = self.quality - (self.times - 1) * self.quality_down
        if self.times < 1 or not (0 < last <= 100 and 0 < self.quality <= 100):
            raise ValueError(f"JPEG qualities must stay in 1..100 over {self.times} pass(es) "
                             f"(quality {self.quality}, down {self.quality_down} a pass)")


@dataclass(frozen=True)
class ImageScore:
    """One image's figures; ``model_*`` are None when no model ran."""
    name: str
    baseline_mse: float
    baseline_psnr: float
    model_mse: float | None = None
    model_psnr: float | None = None
    model_seconds: float = 0.0


def crop_mod4(x):
    """Top-left block of (..., H, W) whose sides are multiples of 4 (lib/iproc.lua:8-12)."""
    h, w = x.shape[-2:]
    return x[..., :h - h % CROP_MULTIPLE, :w - w % CROP_MULTIPLE]


def rgb2y_matlab(x):
    """Integer MATLAB-range luma of a float RGB image, as benchmark.lua computes it.

    Parameters
    ----------
    x : ndarray, shape (3, H, W)
        RGB in [0, 1].

    Returns
    -------
    ndarray of uint8, shape (H, W)
        ``(uint8)(16 + 65.481 R + 128.553 G + 24.966 B)`` in float32 arithmetic, summed in
        this order and **truncated** (a C cast), not rounded.

    Notes
    -----
    tools/benchmark.lua:91-99 (``rgb2y_matlab``, ``y:byte()``), used for ``-range_bug 1``.
    """
    r, g, b = np.asarray(x, np.float32)
    y = r * np.float32(Y_WEIGHTS[0])
    y = y + g * np.float32(Y_WEIGHTS[1])
    y = y + b * np.float32(Y_WEIGHTS[2])
    y = y + np.float32(Y_OFFSET)
    return y.astype(np.uint8)  # float -> uint8 cast truncates toward zero; y >= 16 here


def y_mse(x1, x2):
    """Mean squared difference of the integer lumas of two (3, H, W) images (benchmark.lua:111-115)."""
    d = rgb2y_matlab(x1).astype(np.int64) - rgb2y_matlab(x2).astype(np.int64)
    return float(np.mean(d * d))  # integer sum, exact


def psnr(mse):
    """``10 log10(255^2 / max(mse, 1))`` (benchmark.lua:135-141)."""
    return 10 * math.log10(PEAK * PEAK / max(mse, MSE_FLOOR))


def read_rgb8(path):
    """Decode an image as uint8 (3, H, W) RGB the way the original's loader does.

    Grey becomes R=G=B; alpha is dropped after painting fully transparent pixels
    `TRANSPARENT_GREY` (lib/image_loader.lua:94-108). No ICC conversion and no EXIF
    rotation, as in the 2016 GraphicsMagick loader (so not `w2x.io.read_image`, which does
    both). Returns None when Pillow cannot decode the file (benchmark.lua:616-631 skips
    those). Raises ValueError for 16-bit or float images, which this does not convert.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I") or im.mode == "F":
                raise ValueError(f"{path}: {im.mode} (16-bit or float) images are not supported; "
                                 f"the benchmark expects 8-bit RGB or grey files")
            rgba = np.asarray(im.convert("RGBA"))                    # (H, W, 4)
    except (UnidentifiedImageError, OSError):
        return None
    rgb = rgba[..., :3].copy()                                       # (H, W, 3)
    rgb[rgba[..., 3] == 0] = TRANSPARENT_GREY
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))             # (3, H, W)


def jpeg_degrade(img, jpeg=JpegSettings()):
    """Ground truth JPEG-compressed ``times`` times at 4:4:4 (benchmark.lua:142-156 transform_jpeg).

    Parameters
    ----------
    img : ndarray of uint8, shape (3, H, W)
    jpeg : JpegSettings
        Pass i (from 0) uses quality ``quality - i * quality_down``.

    Returns
    -------
    ndarray of float32, shape (3, H, W)
        The decoded result / 255.
    """
    samples = img.transpose(1, 2, 0)                                  # (3, H, W) -> (H, W, 3)
    for i in range(jpeg.times):
        # subsampling 0 is 4:4:4, GM's samplingFactors({1.0, 1.0, 1.0}) (no -yuv420)
        samples = jpeg_round_trip(samples, jpeg.quality - i * jpeg.quality_down, subsampling=0)
    return samples.transpose(2, 0, 1).astype(np.float32) / np.float32(PEAK)   # (3, H, W)


def score_image(name, img, method="scale", model_fn=None, jpeg=JpegSettings(),
                downscale_filter=DOWNSCALE_FILTER):
    """Benchmark one ground-truth image.

    Parameters
    ----------
    name : str
    img : ndarray of uint8, shape (3, H, W)
        The decoded file; `crop_mod4` is applied here.
    method : {"scale", "noise"}
    model_fn : callable or None
        float32 (3, h, w) input -> float32 output of the ground truth's size, clamped to
        [0, 1]; None scores the baseline only.
    jpeg : JpegSettings
        Used by ``"noise"`` only.
    downscale_filter : str
        GM filter making the ``"scale"`` input (`w2x.resize.FILTERS`; benchmark.lua ``-filter``).

    Returns
    -------
    ImageScore

    Notes
    -----
    tools/benchmark.lua:280-300 (scale) and :319-337 (noise), then :452-454 and :501-506
    for the metric. The model time is wall time around ``model_fn`` (the original's
    ``sys.clock()`` pair, :290-292).
    """
    img = crop_mod4(img)
    truth = img.astype(np.float32) / np.float32(PEAK)               # iproc.byte2float
    _, h, w = truth.shape
    if method == "scale":
        x = gm_resize(truth, h // PASS_FACTOR, w // PASS_FACTOR, downscale_filter)  # benchmark.lua:169-174
        baseline = gm_resize(x, h, w, BASELINE_FILTER)
    elif method == "noise":
        x = jpeg_degrade(img, jpeg)
        baseline = x
    else:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    mse = y_mse(truth, baseline)
    if model_fn is None:
        return ImageScore(name, mse, psnr(mse))
    t0 = time.perf_counter()
    y = model_fn(x)
    seconds = time.perf_counter() - t0
    if y.shape != truth.shape:
        raise ValueError(f"{name}: model output has shape {y.shape}, expected {truth.shape}")
    model_mse = y_mse(truth, y)
    return ImageScore(name, mse, psnr(mse), model_mse, psnr(model_mse), seconds)


def image_files(folder):
    """Files directly in ``folder``, sorted by name (benchmark.lua:618 ``dir.getfiles``;
    the order does not change the mean beyond float rounding)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}; expected a folder of images")
    return sorted(p for p in folder.iterdir() if p.is_file())


def run(folder, method="scale", model_fn=None, jpeg=JpegSettings(),
        downscale_filter=DOWNSCALE_FILTER, progress: Callable[[int, int], None] | None = None):
    """Score every decodable image of a folder; returns a list of `ImageScore`.

    ``progress`` is called with (files done, files total) after each file. Raises
    FileNotFoundError for a missing folder and ValueError when it holds no decodable image.
    """
    files = image_files(folder)
    scores = []
    for done, path in enumerate(files, start=1):
        img = read_rgb8(path)
        if img is not None:
            scores.append(score_image(path.stem, img, method, model_fn, jpeg, downscale_filter))
        if progress is not None:
            progress(done, len(files))
    if not scores:
        raise ValueError(f"{folder}: no decodable image among {len(files)} files")
    return scores


def mean_psnr(scores, field="baseline_psnr"):
    """Dataset score: mean of the per-image PSNRs, summed in order (benchmark.lua:505, :591)."""
    return sum(getattr(s, field) for s in scores) / len(scores)


def write_csv(path, scores):
    """Per-image figures as CSV, written atomically (``w2x.atomic``)."""
    with atomic.replacing(path, text=True, newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "baseline_mse", "baseline_psnr", "model_mse", "model_psnr",
                      "model_seconds"])
        for s in scores:
            out.writerow([s.name, s.baseline_mse, f"{s.baseline_psnr:.6f}",
                          "" if s.model_mse is None else s.model_mse,
                          "" if s.model_psnr is None else f"{s.model_psnr:.6f}",
                          f"{s.model_seconds:.4f}"])


def markdown_table(dataset, method, model_name, tta_level, scores, total_seconds):
    """The summary row, with its header, as a markdown table (three decimals)."""
    has_model = scores[0].model_psnr is not None
    model_psnr = f"{mean_psnr(scores, 'model_psnr'):.3f}" if has_model else "-"
    model_seconds = f"{sum(s.model_seconds for s in scores):.1f}" if has_model else "-"
    header = ["dataset", "method", "model", "TTA", f"{METHODS[method]} PSNR", "model PSNR",
              "images", "model seconds", "total seconds"]
    row = [dataset, method, model_name, str(tta_level), f"{mean_psnr(scores):.3f}", model_psnr,
           str(len(scores)), model_seconds, f"{total_seconds:.1f}"]
    return "\n".join(["| " + " | ".join(header) + " |",
                      "|" + "|".join("---" for _ in header) + "|",
                      "| " + " | ".join(row) + " |"])


def model_step(method="scale", noise_level=1, *, style=None, model_dir=None, tile_size=256,
               tta_level=1, backend="auto"):
    """The model a benchmark runs, as ``model_fn`` for `run`, and its display name.

    The model is ``scale2.0x`` (``method`` scale) or ``noise{noise_level}`` found in
    ``model_dir``, else in the search path under ``style`` (``w2x.store.find_model``, which
    raises ModelNotFoundError saying where it looked). Returns (callable, "<arch>/<style>").
    """
    name = model_filename(method, noise_level)
    path = (find_model(name, model_dir=model_dir) if model_dir else find_model(name, style=style))
    model = load_model(path)
    step = reconstruct.upscale2x if method == "scale" else reconstruct.denoise

    def fn(x):
        return step(model, x, tile_size=tile_size, tta_level=tta_level, backend=backend)

    return fn, f"{path.parent.parent.name}/{path.parent.name}"
