"""Tests for w2x.io: reading and writing image files (stage 1 input, stage 3 output)."""
import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image, ImageCms, ImageOps
from PIL.PngImagePlugin import PngInfo

from w2x import atomic
from w2x.io.icc import convert_profile, icc_transform
from w2x.color import CLIP_EPS8, CLIP_EPS16, quantize
from w2x.io import (
    DEFAULT_MAX_PIXELS,
    ImageMeta,
    ImageReadError,
    ImageWriteError,
    read_frames,
    read_image,
    write_frames,
    write_image,
)

SHARED = Path(os.environ.get("W2X_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
IMAGES = SHARED / "images"

FLOAT_TOL = 1e-6  # same 8-bit samples, different float arithmetic order
GIF_PALETTE_TOL = 40 / 255  # a 256-colour adaptive palette of a photo-like frame
PHYS_DPI_TOL = 0.0254  # PNG pHYs holds whole pixels per metre: 1 px/m = 0.0254 dpi
ICC_16_TOL = 0.75 / 255  # corners rounded to 8 bits (0.5/255) + interpolation in a cell
MONOTONE_SLACK = 1e-6  # float32 rounding between equal neighbours
ROUND_TRIP_ICC_TOL = 2.5 / 255  # sRGB -> profile -> sRGB through two 8-bit LittleCMS passes
HALF_STEP_OFFSET = 0.01  # of a step: above float32 resolution at 65535 (~0.004 of a step)
ICC_BACK_RATIO = 10  # written samples are 10x closer to the source's than to sRGB's
JPEG_Q95_MEAN_TOL = 2 / 255  # mean abs error of a quality-95 4:4:4 JPEG of a photo


def _pil_planes(im: Image.Image) -> np.ndarray:
    """Pillow image -> float32 (C, H, W) in [0, 1]."""
    a = np.asarray(im, dtype=np.float32) / 255
    return a.reshape(a.shape[0], a.shape[1], -1).transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)


def _adobe_rgb_like_profile() -> bytes:
    """A minimal ICC v2 matrix/TRC RGB profile (Adobe RGB 1998 primaries, gamma 2.2).

    Built here so the tests need no profile file; it is far enough from sRGB that a
    conversion visibly changes the pixels.
    """
    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z):
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    curv = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    name = b"w2x test AdobeRGB-like\0"
    desc = (b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name
            + b"\0" * 8 + b"\0\0\0" + b"\0" * 67)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.6097, 0.3111, 0.0195)), (b"gXYZ", xyz(0.2053, 0.6257, 0.0609)),
            (b"bXYZ", xyz(0.1492, 0.0632, 0.7446)),
            (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24
              + struct.pack(">I", 0) + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    assert len(header) == 128
    return header + table + data


@pytest.fixture(scope="module")
def adobe_icc() -> bytes:
    return _adobe_rgb_like_profile()


# --- reading ------------------------------------------------------------------------------

def test_read_rgba_all_opaque_gives_no_alpha():
    pic = read_image(IMAGES / "miku_small.png")
    assert Image.open(IMAGES / "miku_small.png").mode == "RGBA"
    assert pic.alpha is None
    assert pic.rgb.shape == (3, 159, 228) and pic.rgb.dtype == np.float32
    assert pic.meta.depth == 8 and pic.meta.format == "PNG" and not pic.meta.grayscale


def test_read_alpha_kept_and_transparent_rgb_is_half():
    pic = read_image(IMAGES / "neko_alpha.png")
    ref = _pil_planes(Image.open(IMAGES / "neko_alpha.png"))   # (4, H, W)
    transparent = ref[3] == 0
    assert transparent.any() and (~transparent).any()
    np.testing.assert_array_equal(pic.alpha[0], ref[3])
    assert (pic.rgb[:, transparent] == 0.5).all()
    np.testing.assert_array_equal(pic.rgb[:, ~transparent], ref[:3, ~transparent])


def test_read_grayscale_detected_from_pixels():
    assert Image.open(IMAGES / "tone.png").mode == "RGBA"   # grey pixels in an RGBA file
    assert read_image(IMAGES / "tone.png").meta.grayscale
    assert not read_image(IMAGES / "lena.png").meta.grayscale


def test_read_palette_with_trns_keeps_alpha(tmp_path):
    src = Image.open(IMAGES / "neko_alpha.png")
    p = src.convert("RGB").quantize(64)
    idx = np.asarray(p).copy()
    idx[np.asarray(src)[..., 3] == 0] = 63                # palette entry 63 = transparent
    p.paste(Image.fromarray(idx))
    p.save(tmp_path / "p.png", transparency=63)
    assert Image.open(tmp_path / "p.png").mode == "P"
    pic = read_image(tmp_path / "p.png")
    assert pic.alpha is not None
    np.testing.assert_array_equal(pic.alpha[0] == 0, idx == 63)
    assert (pic.rgb[:, idx == 63] == 0.5).all()


def test_read_la_gives_grey_with_alpha(tmp_path):
    la = Image.open(IMAGES / "neko_alpha.png").convert("LA")
    la.save(tmp_path / "la.png")
    pic = read_image(tmp_path / "la.png")
    ref = _pil_planes(la)
    assert pic.meta.grayscale
    np.testing.assert_array_equal(pic.alpha[0], ref[1])
    opaque = ref[1] > 0
    np.testing.assert_array_equal(pic.rgb[:, opaque], np.repeat(ref[:1], 3, 0)[:, opaque])


@pytest.mark.parametrize("ext", [".png", ".tif"])  # pypng / Pillow I;16 decoders
def test_read_i16_keeps_16_bit_precision(tmp_path, ext):
    g = (np.arange(64 * 48).reshape(48, 64) * 21).astype(np.uint16)  # up to 64491
    Image.fromarray(g).save(tmp_path / f"g16{ext}")
    assert Image.open(tmp_path / f"g16{ext}").mode.startswith("I;16")
    pic = read_image(tmp_path / f"g16{ext}")
    assert pic.meta.depth == 16 and pic.meta.grayscale and pic.alpha is None
    np.testing.assert_array_equal(pic.rgb[0], g.astype(np.float32) / 65535)


def test_read_bilevel_with_transparency(tmp_path):
    bits = (np.indices((20, 30)).sum(0) % 2).astype(bool)
    Image.fromarray(bits).save(tmp_path / "bw.png", transparency=0)   # black = transparent
    pic = read_image(tmp_path / "bw.png")
    assert pic.alpha is not None                          # nagadomi/waifu2x#241, #339
    np.testing.assert_array_equal(pic.alpha[0], bits.astype(np.float32))
    assert (pic.rgb[:, bits] == 1).all() and (pic.rgb[:, ~bits] == 0.5).all()


# --- quantize -----------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [8, 16])
def test_quantize_matches_original_formula_at_edges(depth):
    top, eps = (255, CLIP_EPS8) if depth == 8 else (65535, CLIP_EPS16)
    k = np.array([0, 1, 2, 127, 128, top - 1], np.float64)
    off = HALF_STEP_OFFSET / top
    x = np.concatenate([k / top, (k + 0.5) / top - off, (k + 0.5) / top + off,
                        [-0.5, -1e-9, 1.0, 1.0 + 1e-9, 7.0]])
    want = np.concatenate([k, k, k + 1, [0, 0, top, top, top]])
    got = quantize(x.astype(np.float32), depth)
    assert got.dtype == (np.uint8 if depth == 8 else np.uint16)
    np.testing.assert_array_equal(got, want)
    formula = np.floor(np.clip(x.astype(np.float32) + np.float32(eps), 0, 1) * np.float32(top))
    np.testing.assert_array_equal(got, formula)


def test_quantize_rounds_exact_half_down_by_epsilon():
    # image_loader.lua:8: eps is half a step minus 0.5e-7 of a step: x.5 -> x (float64 input
    # still goes through float32, as in the original's FloatTensor)
    assert quantize(np.array([0.5 / 255]), 8)[0] == 0
    assert quantize(np.array([0.5 / 255 + 1e-6]), 8)[0] == 1


# --- writing ------------------------------------------------------------------------------

@pytest.mark.parametrize("planes,with_alpha", [(3, False), (3, True), (1, False), (1, True)])
def test_png16_round_trip_is_exact(tmp_path, planes, with_alpha):
    rng = np.random.default_rng(planes + 2 * with_alpha)
    k = rng.integers(0, 65536, (planes, 23, 37)).astype(np.uint16)
    rgb = np.repeat(k, 3 // planes, 0).astype(np.float32) / 65535
    alpha = (rng.integers(1, 65536, (1, 23, 37)).astype(np.float32) / 65535
             if with_alpha else None)
    meta = ImageMeta(grayscale=planes == 1, depth=16)
    write_image(tmp_path / "x.png", rgb, alpha, meta, depth=16)
    info = png.Reader(filename=str(tmp_path / "x.png")).read()[3]
    assert (info["bitdepth"], info["greyscale"], info["alpha"]) == (16, planes == 1, with_alpha)
    pic = read_image(tmp_path / "x.png")
    assert pic.meta.depth == 16 and pic.meta.grayscale == (planes == 1)
    np.testing.assert_array_equal(pic.rgb, rgb)
    if with_alpha:
        np.testing.assert_array_equal(pic.alpha, alpha)


def test_png8_round_trip_keeps_alpha_exactly(tmp_path):
    pic = read_image(IMAGES / "neko_alpha.png")
    write_image(tmp_path / "n.png", pic.rgb, pic.alpha, pic.meta)
    back = read_image(tmp_path / "n.png")
    np.testing.assert_array_equal(back.rgb, pic.rgb)
    np.testing.assert_array_equal(back.alpha, pic.alpha)


def test_grayscale_meta_writes_luma_as_l(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.random((3, 9, 11), dtype=np.float32)
    write_image(tmp_path / "g.png", rgb, None, ImageMeta(grayscale=True, depth=8))
    im = Image.open(tmp_path / "g.png")
    assert im.mode == "L"
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    np.testing.assert_array_equal(np.asarray(im), quantize(luma, 8))


def test_icc_profile_converted_on_read_and_restored_on_write(tmp_path, adobe_icc):
    src = Image.open(IMAGES / "city.jpg")
    src.save(tmp_path / "adobe.jpg", quality=95, icc_profile=adobe_icc)
    tagged = Image.open(tmp_path / "adobe.jpg")
    pic = read_image(tmp_path / "adobe.jpg")
    assert pic.meta.icc_profile == adobe_icc
    raw = _pil_planes(tagged)
    assert np.abs(pic.rgb - raw).max() > 10 / 255          # the profile was not ignored
    ref = ImageCms.profileToProfile(tagged, ImageCms.ImageCmsProfile(io.BytesIO(adobe_icc)),
                                    ImageCms.createProfile("sRGB"), outputMode="RGB")
    np.testing.assert_array_equal(pic.rgb, _pil_planes(ref))

    for depth in (8, 16):
        out = tmp_path / f"out{depth}.png"
        write_image(out, pic.rgb, None, pic.meta, depth=depth)
        assert Image.open(out).info["icc_profile"] == adobe_icc
        # written pixels are in the source profile again: close to the source samples
        assert np.abs(read_image(out).rgb - pic.rgb).max() <= ROUND_TRIP_ICC_TOL
    back = _pil_planes(Image.open(tmp_path / "out8.png"))   # stored samples, no conversion
    assert np.abs(back - raw).mean() < np.abs(pic.rgb - raw).mean() / ICC_BACK_RATIO


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 transfer function."""
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def test_icc_conversion_of_16_bit_is_smooth_and_accurate(adobe_icc):
    # a 16-bit grey ramp: neutral stays neutral, so the exact answer is known in closed form
    k = np.arange(0, 65536, 7, dtype=np.float64)
    x = np.repeat((k / 65535).astype(np.float32)[None, None], 3, axis=0)   # (3, 1, N)
    y = convert_profile(x, icc_transform(adobe_icc, "RGB", "RGB", True))
    exact = _srgb_encode((k / 65535) ** (round(2.2 * 256) / 256))         # u8Fixed8 gamma
    assert np.abs(y - exact).max() <= ICC_16_TOL
    assert (np.diff(y, axis=-1) >= -MONOTONE_SLACK).all()  # no sawtooth at 8-bit cells
    assert len(np.unique(y[1])) > 4 * 256                   # no 8-bit banding


def test_city_jpg_profile_is_carried_to_png(tmp_path):
    pic = read_image(IMAGES / "city.jpg")
    icc = Image.open(IMAGES / "city.jpg").info["icc_profile"]
    assert pic.meta.icc_profile == icc
    write_image(tmp_path / "c.png", pic.rgb, None, pic.meta)
    assert Image.open(tmp_path / "c.png").info["icc_profile"] == icc


def test_jpeg_write_quality_and_subsampling(tmp_path):
    pic = read_image(IMAGES / "lena.png")
    write_image(tmp_path / "l.jpg", pic.rgb)
    im = Image.open(tmp_path / "l.jpg")
    assert im.format == "JPEG" and im.layer[0][1:3] == (1, 1)   # 4:4:4 at quality 95
    assert np.abs(_pil_planes(im) - pic.rgb).mean() < JPEG_Q95_MEAN_TOL
    write_image(tmp_path / "l50.jpg", pic.rgb, quality=50)
    assert Image.open(tmp_path / "l50.jpg").layer[0][1:3] == (2, 2)
    assert (tmp_path / "l50.jpg").stat().st_size < (tmp_path / "l.jpg").stat().st_size


def test_alpha_to_jpeg_needs_background(tmp_path):
    pic = read_image(IMAGES / "neko_alpha.png")
    with pytest.raises(ImageWriteError, match="--background"):
        write_image(tmp_path / "n.jpg", pic.rgb, pic.alpha)
    assert list(tmp_path.iterdir()) == []
    write_image(tmp_path / "n.jpg", pic.rgb, pic.alpha, background="white")
    flat = _pil_planes(Image.open(tmp_path / "n.jpg"))
    assert flat[:, pic.alpha[0] == 0].mean() > 1 - JPEG_Q95_MEAN_TOL  # transparent -> white


def test_16_bit_into_jpeg_is_refused(tmp_path):
    with pytest.raises(ImageWriteError, match="16 bits"):
        write_image(tmp_path / "x.jpg", np.zeros((3, 4, 4), np.float32), depth=16)


def test_unknown_extension_lists_supported(tmp_path):
    with pytest.raises(ImageWriteError, match=r"\.png"):
        write_image(tmp_path / "x.xyz", np.zeros((3, 4, 4), np.float32))


def test_failed_write_leaves_existing_target_untouched(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"precious bytes")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(ImageWriteError, match="keep.png"):
        write_image(target, np.zeros((3, 4, 4), np.float32))
    assert target.read_bytes() == b"precious bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]   # no temp file left


# --- bad input ----------------------------------------------------------------------------

def _bad_file(kind: str, d: Path) -> Path:
    if kind == "empty":
        (d / "empty.png").write_bytes(b"")
        return d / "empty.png"
    if kind == "truncated":
        data = (IMAGES / "lena.png").read_bytes()
        (d / "trunc.png").write_bytes(data[: len(data) // 2])
        return d / "trunc.png"
    if kind == "text":
        (d / "notes.png").write_text("just some text\n")
        return d / "notes.png"
    return {"missing": d / "missing.png", "directory": d}[kind]


@pytest.mark.parametrize("kind", ["empty", "truncated", "text", "missing", "directory"])
def test_bad_input_gives_one_line_read_error_with_path(tmp_path, kind):
    path = _bad_file(kind, tmp_path)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg


def test_huge_header_refused_before_decoding(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10^10 grey pixels
    with open(tmp_path / "bomb.png", "wb") as f:
        png.write_chunks(f, [(b"IHDR", ihdr), (b"IEND", b"")])
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / "bomb.png")
    msg = str(info.value)
    assert "100000x100000" in msg and str(DEFAULT_MAX_PIXELS) in msg and "--max-pixels" in msg


def test_max_pixels_is_per_call():
    with pytest.raises(ImageReadError, match="262144"):
        read_image(IMAGES / "lena.png", max_pixels=512 * 512 - 1)
    assert read_image(IMAGES / "lena.png", max_pixels=None).rgb.shape == (3, 512, 512)


# --- CMYK, EXIF orientation ---------------------------------------------------------------

def test_cmyk_jpeg_read_as_rgb(tmp_path):
    Image.open(IMAGES / "lena.png").convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    im = Image.open(tmp_path / "c.jpg")
    assert im.mode == "CMYK"
    pic = read_image(tmp_path / "c.jpg")
    assert pic.rgb.shape == (3, 512, 512) and pic.alpha is None
    np.testing.assert_allclose(pic.rgb, _pil_planes(im.convert("RGB")), atol=FLOAT_TOL)


def test_exif_orientation_6_jpeg_is_rotated(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "w2x test camera"
    Image.open(IMAGES / "lena.png").crop((0, 0, 512, 300)).save(
        tmp_path / "r.jpg", quality=95, exif=exif)
    im = Image.open(tmp_path / "r.jpg")
    pic = read_image(tmp_path / "r.jpg")
    assert pic.rgb.shape == (3, 512, 300)                   # H and W swapped
    np.testing.assert_array_equal(pic.rgb, _pil_planes(im.rotate(-90, expand=True)))
    kept = Image.Exif()
    kept.load(pic.meta.exif)
    assert kept[0x0112] == 1 and kept[0x010F] == "w2x test camera"
    write_image(tmp_path / "out.jpg", pic.rgb, None, pic.meta)
    assert Image.open(tmp_path / "out.jpg").getexif()[0x0112] == 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(IMAGES / "neko_alpha.png").save(tmp_path / "o.png", exif=exif)
    pic = read_image(tmp_path / "o.png")
    ref = _pil_planes(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    np.testing.assert_array_equal(pic.alpha[0], ref[3])
    opaque = ref[3] > 0
    np.testing.assert_array_equal(pic.rgb[:, opaque], ref[:3, opaque])


def test_exif_orientation_applied_to_16_bit_png(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8
    rgb = np.random.default_rng(1).integers(0, 65536, (3, 5, 7)).astype(np.float32) / 65535
    meta = ImageMeta(grayscale=False, depth=16, exif=exif.tobytes())
    write_image(tmp_path / "o16.png", rgb, None, meta, depth=16)
    pic = read_image(tmp_path / "o16.png")
    np.testing.assert_array_equal(pic.rgb, np.rot90(rgb, 1, axes=(1, 2)))  # 8 = 90 deg ccw


# --- other formats and metadata -----------------------------------------------------------

@pytest.mark.parametrize("ext", [".webp", ".tif", ".tiff"])
def test_lossless_formats_keep_alpha_exactly(tmp_path, ext):
    pic = read_image(IMAGES / "neko_alpha.png")
    write_image(tmp_path / f"n{ext}", pic.rgb, pic.alpha, pic.meta)
    back = read_image(tmp_path / f"n{ext}")
    np.testing.assert_array_equal(back.alpha, pic.alpha)
    np.testing.assert_array_equal(back.rgb, pic.rgb)


def test_bmp_and_lossy_webp(tmp_path):
    pic = read_image(IMAGES / "miku_small.png")
    write_image(tmp_path / "m.bmp", pic.rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "m.bmp").rgb, pic.rgb)
    write_image(tmp_path / "m.webp", pic.rgb, quality=80)
    lossy = read_image(tmp_path / "m.webp").rgb
    assert 0 < np.abs(lossy - pic.rgb).mean() < JPEG_Q95_MEAN_TOL * 4


@pytest.mark.parametrize("depth", [8, 16])
def test_png_keeps_gamma_dpi_exif(tmp_path, depth):
    exif = Image.Exif()
    exif[0x010F] = "w2x"
    src = Image.open(IMAGES / "lena.png")
    src.save(tmp_path / "s.png", dpi=(300, 150), exif=exif,
             pnginfo=_gama_chunk(0.5))
    pic = read_image(tmp_path / "s.png")
    assert pic.meta.gamma == 0.5 and pic.meta.dpi == pytest.approx((300, 150), abs=PHYS_DPI_TOL)
    write_image(tmp_path / "o.png", pic.rgb, None, pic.meta, depth=depth)
    out = Image.open(tmp_path / "o.png")
    assert out.info["gamma"] == 0.5
    assert out.info["dpi"] == pytest.approx((300, 150), abs=PHYS_DPI_TOL)
    assert out.getexif()[0x010F] == "w2x"


def _gama_chunk(gamma):
    info = PngInfo()
    info.add(b"gAMA", struct.pack(">I", round(gamma * 100000)))
    return info


def test_gif_still_is_refused(tmp_path):
    with pytest.raises(ImageWriteError, match=r"\.gif"):
        write_image(tmp_path / "x.gif", np.zeros((3, 4, 4), np.float32))


# --- animations ---------------------------------------------------------------------------

DURATIONS = [100, 200, 300, 400]


def _animation_source(tmp_path, ext, **opts):
    src = Image.open(IMAGES / "neko_alpha.png")
    frames = [src.rotate(angle) for angle in (0, 30, 60, 90)]  # transparent corners
    path = tmp_path / f"src{ext}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=DURATIONS, **opts)
    return path


@pytest.mark.parametrize("src_ext,opts", [
    (".gif", {"loop": 0, "disposal": 2}),
    (".png", {"loop": 3, "disposal": 1}),
    (".webp", {"loop": 0, "lossless": True}),
], ids=["gif", "apng", "webp"])
@pytest.mark.parametrize("out_ext", [".gif", ".png", ".webp"])
def test_animation_round_trip_keeps_frames_durations_loop(tmp_path, src_ext, opts, out_ext):
    anim = read_frames(_animation_source(tmp_path, src_ext, **opts))
    assert len(anim.frames) == 4 and anim.durations == DURATIONS
    assert anim.loop == opts["loop"]
    write_frames(tmp_path / f"out{out_ext}", anim)
    back = read_frames(tmp_path / f"out{out_ext}")
    assert len(back.frames) == 4 and back.durations == DURATIONS and back.loop == anim.loop
    if src_ext == out_ext == ".gif":
        assert back.disposal == anim.disposal
    tol = GIF_PALETTE_TOL if out_ext == ".gif" else 0
    for a, b in zip(anim.frames, back.frames):
        np.testing.assert_array_equal(b.alpha == 0, a.alpha == 0)  # no frame shows through
        seen = a.alpha[0] > 0
        assert np.abs(b.rgb - a.rgb)[:, seen].max() <= tol


def test_still_image_reads_as_one_frame():
    anim = read_frames(IMAGES / "miku_small.png")
    assert len(anim.frames) == 1 and anim.frames[0].rgb.shape == (3, 159, 228)


def test_one_frame_gif_round_trip(tmp_path):
    anim = read_frames(IMAGES / "miku_small.png")
    write_frames(tmp_path / "one.gif", anim)
    back = read_frames(tmp_path / "one.gif")
    assert len(back.frames) == 1 and back.frames[0].rgb.shape == (3, 159, 228)


def test_importing_and_reading_leave_pillows_guard_alone():
    """w2x checks max_pixels per call; Pillow's process-wide guard is the user's."""
    code = ("from PIL import Image; before = Image.MAX_IMAGE_PIXELS; import w2x, w2x.io, "
            "w2x.cli.main; assert Image.MAX_IMAGE_PIXELS == before, Image.MAX_IMAGE_PIXELS")
    subprocess.run([sys.executable, "-c", code], check=True)
    before = Image.MAX_IMAGE_PIXELS
    read_image(IMAGES / "lena.png")
    assert Image.MAX_IMAGE_PIXELS == before
