"""Image input: file -> float32 sRGB planes + metadata (stage 1, before preprocessing).

Reproduces what the original does in ``image_loader.load_float`` (nagadomi/waifu2x
``lib/image_loader.lua:70-120``, GraphicsMagick): embedded ICC profiles are converted to
sRGB, CMYK to RGB, 16-bit samples keep their precision, and fully transparent pixels get
the background colour 0.5. Unlike the original, alpha is detected from the pixels of every
mode (palette + tRNS, bilevel, grey + alpha), which fixes nagadomi/waifu2x#241 and #339.

Everything goes through Pillow except 16-bit PNG, which Pillow truncates to 8 bit for the
colour and grey+alpha types; those are decoded with pypng (``png.Reader.asDirect``).
"""
from __future__ import annotations

import contextlib
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import png
from PIL import Image, UnidentifiedImageError

from w2x.alpha import split_alpha
from w2x.io.icc import convert_profile, icc_transform, profile_mode

DEFAULT_MAX_PIXELS = 16384 * 16384
"""Largest input accepted by default: 268M pixels, which take ~3 GiB as float32 RGB (their
2x output ~12 GiB). Files declaring more are refused before decoding; ``--max-pixels``
raises the limit."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_BITDEPTH_OFFSET = 24  # signature (8) + IHDR length (4) + type (4) + width, height (8)
EXIF_ORIENTATION = 0x0112  # EXIF tag 274
EXIF_HEADER = b"Exif\0\0"  # JPEG APP1 prefix; meta.exif always starts with it
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as image.rgb2y in the original

Disposal = Literal["none", "background", "previous"]


class ImageReadError(ValueError):
    """An input file that cannot be decoded into an image (one line: path, what, what to do)."""


@dataclass
class ImageMeta:
    """What the writer needs to give the output the look and tags of the input.

    Attributes
    ----------
    grayscale : every pixel has R == G == B (from the pixels, not the mode).
    depth : 8 or 16, the source sample depth.
    icc_profile : the embedded profile of the source; pixels were converted to sRGB.
    gamma : PNG gAMA of the source, kept as metadata only (pixels are never linearised).
    dpi : resolution in dots per inch, if the file had one.
    exif : EXIF block (``b"Exif\\0\\0"`` + TIFF data) with the orientation tag reset to 1,
        since the orientation has been applied to the pixels.
    format : Pillow format name of the source, e.g. ``"PNG"``.
    """

    grayscale: bool
    depth: int
    icc_profile: bytes | None = field(default=None, repr=False)
    gamma: float | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = field(default=None, repr=False)
    format: str = "PNG"


@dataclass
class Picture:
    """One decoded image: ``rgb`` float32 (3, H, W) sRGB in [0, 1], ``alpha`` float32
    (1, H, W) or None when every pixel is fully opaque, and its ``meta``."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    meta: ImageMeta


@dataclass
class Animation:
    """All frames of an animation, each a full canvas (already composited by Pillow).

    ``durations`` are in milliseconds, ``loop`` is the number of repeats (0 = forever,
    None = no loop information), ``disposal`` says what happens to each frame's area before
    the next one is drawn.
    """

    frames: list[Picture]
    durations: list[int]
    loop: int | None = 0
    disposal: list[Disposal] = field(default_factory=list)


def read_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Picture:
    """Read an image file as float32 sRGB planes (the first frame of an animation).

    Parameters
    ----------
    path : str or os.PathLike
        Any format Pillow reads (PNG 8/16-bit, JPEG, WebP, TIFF, BMP, GIF, ...).
    max_pixels : int or None
        Refuse images with more than this many pixels (decompression-bomb guard);
        None disables the check.

    Returns
    -------
    Picture
        ``rgb`` (3, H, W) with values k/255 (8-bit sources) or k/65535 (16-bit), after ICC
        -> sRGB conversion and EXIF orientation; ``alpha`` (1, H, W) or None.

    Raises
    ------
    ImageReadError
        Missing file, directory, empty, truncated, not an image, unsupported mode, or larger
        than ``max_pixels``.

    Notes
    -----
    Reproduces ``image_loader.load_float`` (lib/image_loader.lua:70-120): ICC -> sRGB
    (:77-83), CMYK -> RGB (:84-86), gAMA kept as metadata (:87-89), alpha split off with
    RGB = 0.5 where A == 0 (:94-108). ICC conversion uses LittleCMS through Pillow, which
    works on 8-bit samples: 8-bit sources get exactly LittleCMS's result, 16-bit sources
    an interpolation between 8-bit lattice points, within 0.75/255 of an exact conversion
    and free of 8-bit banding (see `convert_profile`). The original uses sRGB2014.icc;
    this uses LittleCMS's built-in sRGB.
    """
    path = Path(path)
    with _own_size_check(), _open(path, max_pixels) as im:
        return _decode(im, path)


def read_frames(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Animation:
    """Read every frame of an animated GIF, APNG or WebP; a still image gives one frame.

    Frames come back as full canvases (Pillow composites them), so every frame has the
    size of the first. Parameters and errors as in `read_image`. The original processes
    only the first frame (nagadomi/waifu2x#96); this reads them all. 16-bit APNG frames
    are read at 8 bits (pypng does not decode APNG).
    """
    path = Path(path)
    with _own_size_check(), _open(path, max_pixels) as im:
        n_frames = getattr(im, "n_frames", 1)
        loop = im.info.get("loop")  # read before seeking: later frames may lack it
        frames, durations, disposal = [], [], []
        for i in range(n_frames):
            _seek(im, i, path, max_pixels)
            frames.append(_decode(im, path, allow_pypng=n_frames == 1))
            durations.append(int(im.info.get("duration", 0) or 0))
            disposal.append(_disposal_of(im))
        return Animation(frames, durations, loop, disposal)


# Pillow's decompression-bomb guard (Image.MAX_IMAGE_PIXELS) is process-wide and warns or
# fails at fixed sizes (~89M / 179M pixels), below w2x's default. While w2x decodes, the
# per-call ``max_pixels`` (``_check_size``) stands in for it: Pillow's is lifted for the
# call and put back when the last concurrent read ends. Importing w2x changes nothing.
_guard_lock = threading.Lock()
_guard_users = 0
_guard_saved: int | None = None


@contextlib.contextmanager
def _own_size_check():
    global _guard_users, _guard_saved
    with _guard_lock:
        if _guard_users == 0:
            _guard_saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _guard_users += 1
    try:
        yield
    finally:
        with _guard_lock:
            _guard_users -= 1
            if _guard_users == 0:
                Image.MAX_IMAGE_PIXELS = _guard_saved


def _open(path: Path, max_pixels: int | None) -> Image.Image:
    if not path.exists():
        raise ImageReadError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty (0 bytes), expected an image")
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image format Pillow can read; "
                             "convert it to PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot open image ({e})") from None
    try:
        _check_size(im, path, max_pixels)
    except ImageReadError:
        im.close()
        raise
    return im


def _check_size(im: Image.Image, path: Path, max_pixels: int | None) -> None:
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageReadError(
            f"{path}: image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels} "
            f"(decompression-bomb guard); raise it with --max-pixels {w * h} if you trust "
            "the file")


def _seek(im: Image.Image, i: int, path: Path, max_pixels: int | None) -> None:
    try:
        im.seek(i)
    except (OSError, EOFError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot read frame {i} ({e}); "
                             "the file may be truncated or damaged") from None
    _check_size(im, path, max_pixels)


def _disposal_of(im: Image.Image) -> Disposal:
    if im.format == "GIF":  # GIF codes: 0 unspecified, 1 keep, 2 background, 3 previous
        return {2: "background", 3: "previous"}.get(getattr(im, "disposal_method", 0), "none")
    if im.format == "PNG":  # APNG codes: 0 none, 1 background, 2 previous
        return {1: "background", 2: "previous"}.get(im.info.get("disposal", 0), "none")
    return "none"


def _decode(im: Image.Image, path: Path, allow_pypng: bool = True) -> Picture:
    """Pillow image -> Picture: samples, ICC -> sRGB, alpha, orientation, metadata."""
    try:
        if allow_pypng and _is_png16(im, path):
            colour, alpha, mode = _read_png16(path)
            depth = 16
        else:
            im.load()
            colour, alpha, mode, depth = _samples(im, path)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, png.Error) as e:
        raise ImageReadError(f"{path}: cannot decode image ({e}); the file may be "
                             "truncated or damaged") from None
    icc = im.info.get("icc_profile") or None
    icc_mode = None if icc is None else profile_mode(icc)
    if icc_mode == "RGB" and mode == "L":  # grey pixels tagged with an RGB profile
        colour, mode = np.repeat(colour, 3, axis=0), "RGB"  # (1, H, W) -> (3, H, W)
    if icc is not None and icc_mode == mode:
        rgb = convert_profile(colour, icc_transform(icc, mode, "RGB", True))
    else:
        icc = None  # unusable or mismatched profile: pixels are taken as sRGB
        rgb = _to_rgb(colour, mode)
    rgb, alpha = split_alpha(rgb, alpha)
    exif, orientation = _exif(im)
    rgb = _orient(rgb, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)
    grayscale = bool(np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[1], rgb[2]))
    dpi = im.info.get("dpi")
    meta = ImageMeta(grayscale=grayscale, depth=depth, icc_profile=icc,
                     gamma=im.info.get("gamma"),
                     dpi=None if dpi is None else (float(dpi[0]), float(dpi[1])),
                     exif=exif, format=im.format or "PNG")
    return Picture(np.ascontiguousarray(rgb), alpha, meta)


def _is_png16(im: Image.Image, path: Path) -> bool:
    if im.format != "PNG":
        return False
    with open(path, "rb") as f:
        head = f.read(PNG_BITDEPTH_OFFSET + 1)
    return head.startswith(PNG_SIGNATURE) and head[PNG_BITDEPTH_OFFSET:][:1] == b"\x10"


def _read_png16(path: Path):
    """16-bit PNG via pypng: (colour (C, H, W), alpha (1, H, W) | None, mode)."""
    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    a = np.array([np.asarray(r, dtype=np.uint16) for r in rows])   # (H, W * planes)
    # asDirect expands tRNS to alpha and may rescale to the sBIT depth
    x = a.reshape(h, w, planes).transpose(2, 0, 1).astype(np.float32)  # (planes, H, W)
    x /= 2 ** info["bitdepth"] - 1
    n_colour = 1 if info["greyscale"] else 3
    alpha = x[n_colour:] if info["alpha"] else None
    return x[:n_colour], alpha, ("L" if n_colour == 1 else "RGB")


def _samples(im: Image.Image, path: Path):
    """Loaded Pillow image -> (colour (C, H, W), alpha | None, mode, depth)."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        g = np.asarray(im).astype(np.float32)            # (H, W)
        alpha = None
        trns = im.info.get("transparency")
        if isinstance(trns, int):
            alpha = (g != trns).astype(np.float32)[None]
        return np.clip(g / 65535, 0, 1)[None], alpha, "L", 16
    has_alpha = "A" in mode or "a" in mode or "transparency" in im.info
    if mode == "CMYK":
        target = "CMYK"
    elif mode in ("1", "L", "LA", "La"):
        target = "LA" if has_alpha else "L"
    elif mode in ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "YCbCr"):
        target = "RGBA" if has_alpha else "RGB"
    else:
        raise ImageReadError(f"{path}: unsupported pixel mode {mode!r} (expected 8/16-bit "
                             "grey, RGB, RGBA, palette or CMYK); convert it to an 8- or "
                             "16-bit PNG")
    if mode != target:
        im = im.convert(target)
    x = np.asarray(im, dtype=np.float32) / 255
    x = x.reshape(x.shape[0], x.shape[1], -1).transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    n_colour = {"L": 1, "LA": 1, "RGB": 3, "RGBA": 3, "CMYK": 4}[target]
    alpha = x[n_colour:].copy() if target in ("LA", "RGBA") else None
    return x[:n_colour].copy(), alpha, target.removesuffix("A"), 8


def _to_rgb(colour: np.ndarray, mode: str) -> np.ndarray:
    """(C, H, W) samples without a profile -> (3, H, W) RGB."""
    if mode == "L":
        return np.repeat(colour, 3, axis=0)               # (1, H, W) -> (3, H, W)
    if mode == "CMYK":  # naive conversion, as Pillow's convert("RGB")
        return (1 - colour[:3]) * (1 - colour[3:])
    return colour


def _exif(im: Image.Image) -> tuple[bytes | None, int]:
    """(EXIF bytes with the orientation reset to 1, orientation to apply)."""
    try:
        exif = im.getexif()
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        return None, 1  # damaged EXIF: drop it rather than refuse the image
    if not exif:
        return None, 1
    orientation = exif.get(EXIF_ORIENTATION, 1)
    if orientation not in range(1, 9):
        orientation = 1
    raw = im.info.get("exif")
    if not isinstance(raw, bytes):
        return None, orientation  # TIFF: getexif() holds the file's own tags, not EXIF
    if orientation == 1:
        # unchanged: keep the bytes as they are (rewriting can break MakerNote offsets)
        return (raw if raw.startswith(EXIF_HEADER) else EXIF_HEADER + raw), 1
    exif[EXIF_ORIENTATION] = 1
    try:
        return exif.tobytes(), orientation
    except (OSError, ValueError, TypeError, struct.error):
        return None, orientation


def _orient(x: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to (C, H, W) planes, as ``ImageOps.exif_transpose``."""
    if orientation in (5, 6, 7, 8):
        x = x.swapaxes(1, 2)                              # (C, H, W) -> (C, W, H)
    flip_h, flip_v = {1: (0, 0), 2: (1, 0), 3: (1, 1), 4: (0, 1),
                      5: (0, 0), 6: (1, 0), 7: (1, 1), 8: (0, 1)}[orientation]
    if flip_h:
        x = x[:, :, ::-1]
    if flip_v:
        x = x[:, ::-1, :]
    return np.ascontiguousarray(x)
