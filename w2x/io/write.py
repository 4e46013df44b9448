"""Image output: float32 sRGB planes + metadata -> file (stage 3, after postprocessing).

Reproduces the original ``image_loader.encode_png`` / ``save_png`` (nagadomi/waifu2x
``lib/image_loader.lua:12-59``): the float -> integer rounding, 8/16-bit output, RGBA when
alpha is present, grey output for grey input, gAMA written back and the sRGB result
converted back to the source ICC profile, which is embedded again. Unlike the original
(always PNG, whatever ``-o`` says), the format follows the file extension.  PNG's
image data is encoded by ``w2x/io/png_encode.py`` (libpng's adaptive row filters, deflated
by row bands on several threads); the other formats by Pillow.

Every file is written to a temporary file in the target directory and renamed over the
target, so a failed write leaves an existing file untouched.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import png
from PIL import Image, ImageColor

from w2x import atomic
from w2x.color import quantize
from w2x.io.icc import convert_profile, icc_transform, profile_mode
from w2x.io.png_encode import png_chunks, png_threads
from w2x.io.read import EXIF_HEADER, LUMA_WEIGHTS

if TYPE_CHECKING:
    from w2x.io.read import Animation, ImageMeta

STILL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                 ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
ANIMATION_FORMATS = {".gif": "GIF", ".png": "PNG", ".apng": "PNG", ".webp": "WEBP"}
NO_ALPHA_FORMATS = ("JPEG", "BMP")
DEFAULT_JPEG_QUALITY = 95
FULL_CHROMA_QUALITY = 90  # from this JPEG quality up, keep 4:4:4 chroma (no subsampling)
METERS_PER_INCH = 0.0254
GIF_DISPOSAL = {"none": 1, "background": 2, "previous": 3}
APNG_DISPOSAL = {"none": 0, "background": 1, "previous": 2}
APNG_BLEND_SOURCE = 0  # frames are full canvases: replace, do not composite again


class ImageWriteError(OSError):
    """An output that cannot be written (one line: path, what, what to do)."""


def write_image(path, rgb: np.ndarray, alpha: np.ndarray | None = None,
                meta: ImageMeta | None = None, *, depth: int = 8, quality: int | None = None,
                background=None, lossless: bool | None = None) -> None:
    """Write float32 sRGB planes to an image file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The extension picks the format: .png, .jpg/.jpeg, .webp, .tif/.tiff, .bmp.
    rgb : np.ndarray
        float (3, H, W) sRGB in [0, 1].
    alpha : np.ndarray or None
        float (1, H, W) in [0, 1].
    meta : ImageMeta or None
        From the input: grayscale, ICC profile, gamma, dpi and EXIF are carried over.
    depth : int
        8 or 16 bits per sample; 16 only for PNG (written with pypng).
    quality : int or None
        JPEG quality (default 95; 4:4:4 chroma from 90 up) or lossy WebP quality.
    background : str or tuple of 3 floats or None
        Colour to flatten alpha onto for formats without alpha (JPEG, BMP): a Pillow
        colour string ("white", "#808080") or RGB floats in [0, 1].
    lossless : bool or None
        WebP only: lossless unless ``quality`` is given.

    Raises
    ------
    ImageWriteError
        Unknown extension, 16 bit for a format other than PNG, alpha for JPEG/BMP without
        ``background``, bad background colour, or an OS error while writing. The target
        is untouched and no temporary file is left behind.
    ValueError
        ``rgb``/``alpha`` of the wrong shape.

    Notes
    -----
    As ``image_loader.encode_png`` (lib/image_loader.lua:12-59): samples are rounded by
    `quantize`; with ``meta.grayscale`` the original sets the GraphicsMagick type to
    Grayscale/GrayscaleMatte, here the output is L/LA holding the luma
    0.299 R + 0.587 G + 0.114 B of the result; with an embedded profile the sRGB result
    is converted back to it and the profile is embedded (:51-57; a grey profile gives
    L/LA output, an RGB profile RGB output even for grey pictures; a CMYK profile is not
    converted back and not embedded); gAMA is written back for PNG only.
    """
    ready = quantize_image(path, rgb, alpha, meta, depth=depth, background=background)
    write_samples(path, ready, meta, quality=quality, lossless=lossless)


@dataclass(frozen=True)
class Samples:
    """An image rounded for its file (``quantize_image``), ready to encode (``write_samples``)."""
    fmt: str                     # the Pillow format of the path's extension
    planes: np.ndarray           # uint8 or uint16 (C, H, W) in the output's colour space
    alpha: np.ndarray | None     # the same type (1, H, W)
    icc: bytes | None            # the profile to embed


def quantize_image(path, rgb: np.ndarray, alpha: np.ndarray | None = None,
                   meta: ImageMeta | None = None, *, depth: int = 8, background=None) -> Samples:
    """``write_image``'s first half: the checks, the flattening onto ``background``, the
    output colour and the rounding.  A caller that drops ``rgb`` before ``write_samples``
    keeps only the integer samples while the file is encoded (a quarter of the float
    planes' memory at 8 bits).  Raises as ``write_image``."""
    path = Path(path)
    fmt = _format_of(path, STILL_FORMATS, "still image")
    _check_planes(rgb, alpha)
    if depth not in (8, 16):
        raise ImageWriteError(f"{path}: depth must be 8 or 16, got {depth!r}")
    if depth == 16 and fmt != "PNG":
        raise ImageWriteError(f"{path}: {fmt} cannot hold 16 bits per sample; "
                              "write a .png or use depth 8")
    rgb = np.asarray(rgb, dtype=np.float32)
    alpha = None if alpha is None else np.asarray(alpha, dtype=np.float32)
    if alpha is not None and fmt in NO_ALPHA_FORMATS:
        if background is None:
            raise ImageWriteError(f"{path}: the image has transparency, which {fmt} cannot "
                                  "store; write .png, .webp or .tiff, or pass "
                                  "--background COLOR to flatten it")
        rgb = rgb * alpha + _background(background, path) * (1 - alpha)
        alpha = None
    x, icc = _output_colour(rgb, meta)
    return Samples(fmt, quantize(x, depth), None if alpha is None else quantize(alpha, depth), icc)


def write_samples(path, ready: Samples, meta: ImageMeta | None = None, *, quality: int | None = None,
                  lossless: bool | None = None) -> None:
    """``write_image``'s second half: encode ``ready`` in its format, write it atomically."""
    path = Path(path)
    if ready.fmt == "PNG":
        data = _encode_png(ready.planes, ready.alpha, meta, ready.icc)
    else:
        data = _encode_pillow(_to_pil(ready.planes, ready.alpha), ready.fmt, path, meta, ready.icc,
                              quality=quality, lossless=lossless)
    _write_atomic(path, data)


def write_frames(path, animation: Animation, *, quality: int | None = None,
                 lossless: bool | None = None) -> None:
    """Write an animation as GIF, APNG (.png/.apng) or animated WebP, atomically.

    Frame durations (ms), loop count and disposal are kept; frames are full canvases, so
    APNG frames replace the canvas area (blend "source") instead of compositing again.
    Output is 8 bits per sample. A loop of None (play once) is written without a loop
    extension in GIF and as one play in APNG/WebP. ``quality``/``lossless`` as in
    `write_image` for WebP. Raises ImageWriteError as `write_image`.
    """
    path = Path(path)
    fmt = _format_of(path, ANIMATION_FORMATS, "animation")
    if not animation.frames:
        raise ImageWriteError(f"{path}: the animation has no frames")
    any_alpha = any(f.alpha is not None for f in animation.frames)
    images, icc = [], None
    size = np.shape(animation.frames[0].rgb)
    for frame in animation.frames:
        _check_planes(frame.rgb, frame.alpha)
        if np.shape(frame.rgb) != size:
            raise ValueError(f"all frames must have the shape of the first, {size}; "
                             f"got {np.shape(frame.rgb)}")
        colour_meta = None if frame.meta is None else _colour_only(frame.meta)
        x, icc = _output_colour(np.asarray(frame.rgb, np.float32), colour_meta)
        alpha = frame.alpha
        if alpha is None and any_alpha:
            alpha = np.ones((1,) + x.shape[1:], np.float32)  # all frames share one mode
        images.append(_to_pil(quantize(x, 8), None if alpha is None else quantize(alpha, 8)))
    n = len(images)
    durations = list(animation.durations) or [0] * n
    disposal = list(animation.disposal) or ["none"] * n
    opts = {"save_all": True, "append_images": images[1:], "duration": durations}
    if fmt == "GIF":
        disposal = _gif_safe_disposal(animation.frames, disposal)
        opts["disposal"] = [GIF_DISPOSAL[d] for d in disposal]
        if n == 1:  # Pillow's single-frame GIF writer takes plain values, not per-frame lists
            opts.update(duration=durations[0], disposal=opts["disposal"][0])
        if animation.loop is not None:
            opts["loop"] = animation.loop
    else:
        opts["loop"] = 1 if animation.loop is None else animation.loop
    if fmt == "PNG":
        opts.update(disposal=[APNG_DISPOSAL[d] for d in disposal],
                    blend=[APNG_BLEND_SOURCE] * n, default_image=False)
    meta = animation.frames[0].meta
    data = _encode_pillow(images[0], fmt, path, meta, icc, quality=quality,
                          lossless=lossless, **opts)
    _write_atomic(path, data)


def _gif_safe_disposal(frames, disposal: list[str]) -> list[str]:
    """Disposal that keeps full-canvas frames right in GIF (all-or-nothing transparency).

    A frame drawn over the kept previous frame shows it through its transparent pixels;
    where that would show opaque pixels the next frame does not have, the previous frame
    is cleared instead ("background"). APNG needs no such care: its frames are written
    with blend "source", which replaces alpha too.
    """
    safe = list(disposal)
    for k in range(len(frames) - 1):
        nxt, cur = frames[k + 1].alpha, frames[k].alpha
        if safe[k] == "background" or nxt is None or nxt.min() >= 1:
            continue
        if safe[k] == "previous" or cur is None or ((nxt < 1) & (cur > 0)).any():
            safe[k] = "background"
    return safe


def _format_of(path: Path, table: dict[str, str], what: str) -> str:
    fmt = table.get(path.suffix.lower())
    if fmt is None:
        hint = " (GIF is written for animations only)" if path.suffix.lower() == ".gif" else ""
        raise ImageWriteError(f"{path}: unsupported extension {path.suffix!r} for a "
                              f"{what}{hint}; use one of {', '.join(sorted(table))}")
    return fmt


def _check_planes(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[int, int]:
    if np.ndim(rgb) != 3 or np.shape(rgb)[0] != 3:
        raise ValueError(f"rgb must be (3, H, W) float planes, got shape {np.shape(rgb)}")
    h, w = np.shape(rgb)[1:]
    if alpha is not None and np.shape(alpha) != (1, h, w):
        raise ValueError(f"alpha must be (1, {h}, {w}) to match rgb, "
                         f"got shape {np.shape(alpha)}")
    return h, w


def _background(background, path: Path) -> np.ndarray:
    """Colour string or RGB floats -> float32 (3, 1, 1)."""
    try:
        if isinstance(background, str):
            c = np.array(ImageColor.getrgb(background)[:3], np.float32) / 255
        else:
            c = np.array(background, np.float32).reshape(3)
    except ValueError as e:
        raise ImageWriteError(f"{path}: bad background colour {background!r} ({e}); give "
                              "a colour name, #rrggbb, or three floats in [0, 1]") from None
    return np.clip(c, 0, 1).reshape(3, 1, 1)


def _colour_only(meta: ImageMeta) -> ImageMeta:
    """Animations stay RGB(A): every frame must share one mode, whatever its pixels."""
    return replace(meta, grayscale=False)


def _output_colour(rgb: np.ndarray, meta: ImageMeta | None):
    """sRGB (3, H, W) -> ((C, H, W) in the output colour space, profile to embed)."""
    icc = None if meta is None else meta.icc_profile
    mode = None if icc is None else profile_mode(icc)
    if mode in ("RGB", "L"):  # image_loader.lua:51-57: back to the source profile
        return convert_profile(rgb, icc_transform(icc, "RGB", mode, False)), icc
    if meta is not None and meta.grayscale:
        return np.tensordot(LUMA_WEIGHTS, rgb, axes=1)[None].astype(np.float32), None
    return rgb, None


def _to_pil(samples: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """uint8 (C, H, W) (+ (1, H, W) alpha) -> Pillow L, LA, RGB or RGBA image."""
    planes = samples if alpha is None else np.concatenate([samples, alpha])
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[planes.shape[0]]
    hwc = np.ascontiguousarray(planes.transpose(1, 2, 0))  # (C, H, W) -> (H, W, C)
    # from the array's memory, not from a bytes copy of it (192 MB more at 8000x8000 RGB)
    return Image.frombuffer(mode, (hwc.shape[1], hwc.shape[0]), hwc, "raw", mode, 0, 1)


def _encode_pillow(im: Image.Image, fmt: str, path: Path, meta: ImageMeta | None,
                   icc: bytes | None, *, quality, lossless, **opts) -> bytes:
    if icc is not None and fmt in ("JPEG", "WEBP", "TIFF", "PNG"):
        opts["icc_profile"] = icc
    if meta is not None and meta.exif and fmt in ("JPEG", "WEBP", "TIFF", "PNG"):
        opts["exif"] = meta.exif
    if meta is not None and meta.dpi and fmt in ("JPEG", "TIFF", "BMP", "PNG"):
        opts["dpi"] = meta.dpi
    if fmt == "JPEG":
        q = DEFAULT_JPEG_QUALITY if quality is None else quality
        opts.update(quality=q, subsampling=0 if q >= FULL_CHROMA_QUALITY else 2)
    elif fmt == "WEBP":
        opts["lossless"] = quality is None if lossless is None else lossless
        if quality is not None:
            opts["quality"] = quality
    elif fmt == "TIFF":
        opts["compression"] = "tiff_lzw"
    buf = io.BytesIO()
    try:
        im.save(buf, fmt, **opts)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ImageWriteError(f"{path}: cannot encode {fmt} ({e})") from None
    return buf.getvalue()


def _encode_png(samples: np.ndarray, alpha: np.ndarray | None, meta: ImageMeta | None,
                icc: bytes | None, threads: int | None = None) -> bytes:
    """PNG bytes: the image chunks of ``png_encode.png_chunks`` plus the metadata chunks."""
    chunks = png_chunks(samples if alpha is None else np.concatenate([samples, alpha]),
                        png_threads() if threads is None else threads)
    out = io.BytesIO()
    png.write_chunks(out, [chunks[0], *_png_metadata(meta, icc), *chunks[1:]])  # IHDR first
    return out.getvalue()


def _png_metadata(meta: ImageMeta | None, icc: bytes | None) -> list[tuple[bytes, bytes]]:
    """Ancillary chunks for the metadata, all valid right after IHDR (PNG spec 5.6)."""
    chunks = []
    if icc is not None:  # profile name, NUL, compression method 0 (zlib)
        chunks.append((b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)))
    if meta is None:
        return chunks
    if meta.gamma:  # gAMA stores gamma * 100000
        chunks.append((b"gAMA", struct.pack(">I", round(meta.gamma * 100000))))
    if meta.dpi:  # pHYs: pixels per metre x, y, unit 1 = metre
        ppm = [round(d / METERS_PER_INCH) for d in meta.dpi]
        chunks.append((b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if meta.exif:
        chunks.append((b"eXIf", meta.exif.removeprefix(EXIF_HEADER)))
    return chunks


def _write_atomic(path: Path, data: bytes) -> None:
    """``atomic.write_bytes`` with io's checks and one-line errors."""
    if not path.parent.is_dir():
        raise ImageWriteError(f"{path}: directory {path.parent} does not exist; create it")
    if path.is_dir():
        raise ImageWriteError(f"{path}: is a directory; give a file name")
    try:
        atomic.write_bytes(path, data)
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot write ({e.strerror or e})") from None


def jpeg_round_trip(samples: np.ndarray, quality: int, subsampling: int = 0) -> np.ndarray:
    """Encode uint8 RGB samples (H, W, 3) as a JPEG with Pillow's libjpeg and decode them
    again: the noise that the original's benchmark and training add (GraphicsMagick's
    encoder there).  ``subsampling`` 0 = 4:4:4, 2 = 4:2:0.  Returns uint8 (H, W, 3)."""
    buf = io.BytesIO()
    Image.fromarray(samples).save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))
