"""Training stage: the patch pipeline, image folder -> (input, target) patch pairs
(lib/pairwise_transform_scale.lua, _jpeg.lua, _jpeg_scale.lua, _utils.lua; reference §5).

Everything random is drawn from the ``np.random.Generator`` passed in, so one seed gives
the same patches.  Images are float32 (C, H, W) in [0, 1]; patches come out as
(C, N, h, w) batches, the network layout of ``w2x/nn/ops.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from w2x.nn.archs import ARCHS
from w2x.color import rgb2y
from w2x.io.write import jpeg_round_trip
from w2x.resize import FILTERS, gm_resize

DOWNSAMPLING_FILTERS = ("box", "lanczos", "sinc")   # lib/settings.lua -downsampling_filters
# the photo models' release recipe (appendix/train_upconv_7_photo.sh -downsampling_filters)
PHOTO_RELEASE_FILTERS = ("box", "sinc", "catrom")
BLUR_RANGE = (0.95, 1.05)                            # -resize_blur_min / -resize_blur_max
MAX_SIZE = 256                                       # -max_size: the random sub-crop per image
ACTIVE_CROPPING_RATE, ACTIVE_CROPPING_TRIES = 0.5, 10
CHROMA_SUBSAMPLING_RATE = 0.5                        # -jpeg_chroma_subsampling_rate
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
# nr_rate: the fraction of noise patches whose input is the JPEG one (release scripts)
NR_RATE = {"art": (0.65, 0.65, 0.65, 1.0), "photo": (0.3, 0.3, 0.6, 1.0)}


class DataError(ValueError):
    """Unusable training data; the message says what was expected."""


@dataclass(frozen=True)
class Recipe:
    """What pairs to make: the arch's geometry and the degradation."""
    arch: str
    channels: int
    method: str               # scale | noise | noise_scale
    noise_level: int = 1
    style: str = "photo"
    crop_size: int = 48       # the target-side patch before the offset is trimmed
    filters: tuple = DOWNSAMPLING_FILTERS   # GM filters a scale pair's downscale is drawn from

    @property
    def resize(self) -> bool:
        return ARCHS[self.arch].scale_factor == 2

    @property
    def scaled(self) -> bool:
        return self.method in ("scale", "noise_scale")

    @property
    def input_size(self) -> int:
        """Input patch side: crop/2 for the nets that upsample themselves."""
        return self.crop_size // 2 if self.resize and self.scaled else self.crop_size

    @property
    def offset(self) -> int:
        return ARCHS[self.arch].offset

    def check(self) -> None:
        a = ARCHS[self.arch]
        unknown = [f for f in self.filters if f not in FILTERS]
        if unknown or not self.filters:
            raise DataError(f"--filters {','.join(self.filters)}: expected names from {', '.join(sorted(FILTERS))}")
        if self.resize and not self.scaled:
            raise DataError(f"{self.arch} upsamples 2x: use --method scale or noise_scale")
        if self.crop_size % 2 or self.crop_size <= 2 * self.offset:
            raise DataError(f"--crop-size {self.crop_size}: expected an even size above "
                            f"{2 * self.offset} ({self.arch} trims {self.offset} px per side)")
        if a.valid_sizes is not None and self.input_size not in a.valid_sizes:
            raise DataError(f"--crop-size {self.crop_size}: {self.arch} takes input patches of "
                            f"{a.valid_sizes.start}-{a.valid_sizes.stop - 1} px in steps of 4")


def load_images(folder) -> list[tuple[str, np.ndarray]]:
    """Every readable image directly in ``folder`` as float32 RGB (3, H, W), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder}; expected a folder of images")
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            with Image.open(p) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError):
            continue
        out.append((p.name, np.ascontiguousarray(rgb.transpose(2, 0, 1))))   # (3, H, W)
    if not out:
        raise DataError(f"{folder}: no usable image (expected PNG/JPEG/BMP/WebP/TIFF files)")
    return out


def usable(images, recipe: Recipe, folder) -> list:
    """The images large enough for a patch plus the 1-px shift; error if none is."""
    need = recipe.crop_size + 2
    keep = [(n, im) for n, im in images if min(im.shape[1:]) >= need]
    if not keep:
        raise DataError(f"{folder}: every image is smaller than a {need}-px patch "
                        f"(--crop-size {recipe.crop_size}); use larger images or a smaller crop")
    return keep


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """RGB (3, ...) -> itself, or its luma (1, ...) for Y models (iproc.rgb2y)."""
    return x if channels == 3 else rgb2y(x)


def jpeg(x: np.ndarray, quality: int, subsampling: int) -> np.ndarray:
    """float (3, H, W) -> its JPEG round trip (``io.write.jpeg_round_trip``), float (3, H, W)."""
    samples = np.clip(np.rint(x.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)  # (H, W, 3)
    return jpeg_round_trip(samples, quality, subsampling).astype(np.float32).transpose(2, 0, 1) / 255.0


def jpeg_qualities(style: str, level: int, rng) -> list[int]:
    """The passes' qualities (pairwise_transform_jpeg.lua:61-105), inclusive ranges."""
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731 (torch.random(lo, hi))
    if level == 0:
        return [r(85, 95)]
    if style == "photo":
        return [r(37, 70)]
    if level == 1:
        return [r(65, 85)]
    u = rng.random()
    if u < 0.6:
        return [r(27, 70)]
    if u < 0.9:
        q1 = r(37, 70)
        return [q1, q1 - r(5, 10)]
    q1 = r(52, 70)
    return [q1, q1 - r(5, 15), q1 - r(15, 25)]


def jpeg_noise(x: np.ndarray, style: str, level: int, rng) -> np.ndarray:
    sub = 2 if rng.random() < CHROMA_SUBSAMPLING_RATE else 0
    for q in jpeg_qualities(style, level, rng):
        x = jpeg(x, q, sub)
    return x


def _flip8(a: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 flip/transpose variants (utils.lua:163-234) of (C, H, W)."""
    if k & 4:
        a = a.transpose(0, 2, 1)
    if k & 2:
        a = a[:, ::-1]
    if k & 1:
        a = a[:, :, ::-1]
    return a


def image_pair(img: np.ndarray, recipe: Recipe, rng) -> tuple[np.ndarray, np.ndarray]:
    """A random sub-crop of one image and its degraded twin: (x, y), both RGB (3, h, w), x
    on the input grid (half size for the resize nets, else the target's grid)."""
    c, h, w = img.shape
    size = max(2 * recipe.crop_size, MAX_SIZE)
    sh, sw = min(h, size), min(w, size)
    top, left = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    # random 1-px shift (pairwise_transform_utils.lua preprocess), even size for the 2x pair
    dy, dx = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    y = img[:, top + dy:top + sh - 1, left + dx:left + sw - 1]
    y = np.ascontiguousarray(y[:, :y.shape[1] // 2 * 2, :y.shape[2] // 2 * 2])
    x = y
    if recipe.scaled:
        f = recipe.filters[int(rng.integers(0, len(recipe.filters)))]
        blur = float(rng.uniform(*BLUR_RANGE))
        x = gm_resize(y, y.shape[1] // 2, y.shape[2] // 2, filter=f, blur=blur)
    if recipe.method != "scale" and rng.random() < NR_RATE[recipe.style][recipe.noise_level]:
        x = jpeg_noise(x, recipe.style, recipe.noise_level, rng)
    if recipe.scaled and not recipe.resize:
        x = x.repeat(2, axis=1).repeat(2, axis=2)        # Box (pixel replication) back to y's size
    return x, y


def _detail(y: np.ndarray) -> float:
    """‖y - box_down_up(y)‖²: the high-frequency content active cropping maximises."""
    h, w = y.shape[1] // 2 * 2, y.shape[2] // 2 * 2
    y = y[:, :h, :w]
    down = y.reshape(y.shape[0], h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return float(((y - down.repeat(2, 1).repeat(2, 2)) ** 2).sum())


def patches(img: np.ndarray, recipe: Recipe, n: int, rng, augment: bool = True):
    """``n`` patch pairs from one image: x (C, n, s, s), target (C, n, t, t), t = the net's
    output size (crop minus the offset on each side)."""
    x_img, y_img = image_pair(img, recipe, rng)
    f = 2 if recipe.resize and recipe.scaled else 1
    s, crop, off = recipe.input_size, recipe.crop_size, recipe.offset
    xs, ys = [], []
    for _ in range(n):
        tries = ACTIVE_CROPPING_TRIES if augment and rng.random() < ACTIVE_CROPPING_RATE else 1
        best = None
        for _ in range(tries):
            i = int(rng.integers(0, x_img.shape[1] - s + 1))
            j = int(rng.integers(0, x_img.shape[2] - s + 1))
            yc = y_img[:, i * f:i * f + crop, j * f:j * f + crop]
            score = _detail(yc) if tries > 1 else 0.0
            if best is None or score > best[0]:
                best = (score, x_img[:, i:i + s, j:j + s], yc)
        _, xc, yc = best
        k = int(rng.integers(0, 8)) if augment else 0
        xs.append(to_channels(_flip8(xc, k), recipe.channels))
        ys.append(to_channels(_flip8(yc, k)[:, off:crop - off, off:crop - off], recipe.channels))
    # n x (C, s, s) -> (C, n, s, s)
    return (np.ascontiguousarray(np.stack(xs, axis=1), dtype=np.float32),
            np.ascontiguousarray(np.stack(ys, axis=1), dtype=np.float32))


def patch_set(images, recipe: Recipe, per_image: int, rng, augment: bool = True):
    """Patches of every image, concatenated along N."""
    pairs = [patches(im, recipe, per_image, rng, augment) for _, im in images]
    return (np.concatenate([p[0] for p in pairs], axis=1), np.concatenate([p[1] for p in pairs], axis=1))
