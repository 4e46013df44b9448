"""w2x.web building blocks without a server: limits, fields, names, language, cache."""
from __future__ import annotations

import pytest

pytest.importorskip("starlette")

from w2x.web.cache import ResultCache, content_key
from w2x.web.engine import Result
from w2x.workload import FileTiles
from w2x.web.errors import WebError
from w2x.web.fields import ConvertRequest, parse_fields, sanitise_name
from w2x.web.i18n import pick_language
from w2x.web.limits import Limits

STYLES = {"art": "cunet/art", "photo": "upconv_7/photo"}


def test_limits_are_the_originals():
    lim = Limits()
    assert lim.max_body == 5 * 1024 * 1024
    assert lim.max_pixels(-1, 1) == 3000 * 3000          # noise only
    assert lim.max_pixels(2, 1) == 1500 * 1500           # upscaling
    assert lim.max_pixels(1, 1) == 1500 * 1500
    # floor(sqrt(1500^2 / 2))^2: sqrt(1125000) = 1060.66 -> 1060
    assert lim.max_pixels(2, 2) == 1060 ** 2
    assert lim.max_pixels(-1, 8) == 1060 ** 2             # sqrt(9e6 / 8) = 1060.66
    assert lim.max_pixels(4, 1) == 750 * 750              # scale 4: the side halved


def test_zero_means_no_limit_and_auto_tta():
    assert Limits(0, 0, 0).max_pixels(2, 8) is None
    lim = Limits(max_scale_pixels=100 * 100)
    assert lim.auto_tta_level(35 * 35, 2) == 8           # 100/sqrt(8) = 35.36
    assert lim.auto_tta_level(36 * 36, 2) == 4           # 100/2 = 50
    assert lim.auto_tta_level(60 * 60, 2) == 2           # 100/sqrt(2) = 70.7
    assert lim.auto_tta_level(80 * 80, 2) == 1
    with pytest.raises(ValueError):
        Limits(max_body=-1)


def test_fields_defaults_modes_and_errors():
    req = parse_fields({}, STYLES)
    assert (req.style, req.noise, req.scale, req.tta_level, req.format, req.download) == \
        ("art", -1, -1, 1, "png", False)
    assert req.mode is None
    assert parse_fields({"noise": "2"}, STYLES).mode == "noise"
    assert parse_fields({"scale": "1"}, STYLES).mode == "scale"
    assert parse_fields({"scale": "1"}, STYLES).factor == 1.6
    assert parse_fields({"noise": "0", "scale": "4"}, STYLES).mode == "noise_scale"
    assert parse_fields({"download": "1"}, STYLES).download
    for field, value in [("noise", "4"), ("noise", "x"), ("scale", "3"), ("scale", "0"),
                         ("tta_level", "3"), ("format", "jpeg"), ("style", "cunet")]:
        with pytest.raises(WebError) as e:
            parse_fields({field: value}, STYLES)
        assert e.value.status == 400 and field in e.value.message


def test_output_names_follow_web_lua():
    req = ConvertRequest(style="art", noise=1, scale=2)
    assert req.output_name("cat.jpg") == "cat_waifu2x_art_noise1_scale.png"
    assert ConvertRequest(style="photo", scale=2).output_name("a.b.png") == \
        "a.b_waifu2x_photo_scale.png"
    assert ConvertRequest(noise=3, format="webp").output_name("x.png") == \
        "x_waifu2x_art_noise3.webp"
    assert ConvertRequest().output_name("x.gif") == "x.png"          # no model: re-encoded
    assert ConvertRequest(scale=1).output_name(None) == "image_waifu2x_art_scale1.6x.png"


def test_names_are_sanitised():
    assert sanitise_name("../../etc/passwd") == "passwd"
    assert sanitise_name("C:\\Users\\me\\pic.png") == "pic"
    assert sanitise_name('a"b;c\r\n.png') == "a_b_c"
    assert sanitise_name("猫の絵.png") == "猫の絵"
    assert sanitise_name(".png") == "png"
    assert sanitise_name("") == "image"


def test_language_from_accept_language():
    assert pick_language("ja,en;q=0.8", ("en", "ja")) == "ja"
    assert pick_language("en-US,en;q=0.9,ja;q=0.8", ("en", "ja")) == "en"
    assert pick_language("fr, ja;q=0.5", ("en", "ja")) == "ja"
    assert pick_language("ja-JP;q=0.3, en;q=0.7", ("en", "ja")) == "en"
    assert pick_language(None, ("en", "ja")) == "en"
    assert pick_language("de", ("en", "ja")) == "en"


def _result(n: int) -> Result:
    return Result(bytes(n), "image/png", 1, 1)


def test_cache_evicts_least_recently_used_by_bytes():
    cache = ResultCache(max_bytes=250, ttl=0)
    for k in "abc":
        cache.put(k, _result(100))                  # c pushes out a
    assert cache.get("a") is None and cache.get("b") is not None
    cache.put("d", _result(100))                    # b was used: c goes
    assert cache.get("c") is None and cache.get("b") and cache.get("d")
    cache.put("big", _result(251))                  # larger than the cache: not kept
    assert cache.get("big") is None
    assert cache.stats()["bytes"] == 200


def test_cache_ttl_and_etag():
    now = [0.0]
    cache = ResultCache(max_bytes=1000, ttl=10, clock=lambda: now[0])
    e1 = cache.put("k", _result(5))
    assert e1.etag.startswith('"') and cache.get("k").etag == e1.etag
    now[0] = 10.5
    assert cache.get("k") is None
    assert content_key(b"x", "o") != content_key(b"y", "o") != content_key(b"x", "p")


def test_file_tiles_adds_the_passes_of_an_image():
    """A job's progress (w2x.workload.FileTiles): the passes' tiles added up, over the
    count made before the image started."""
    seen = []
    count = FileTiles(lambda p: seen.append((p.file_done, p.file_total)))
    count.planned(10)
    for total in (4, 4, 2):
        for d in range(1, total + 1):
            count(d, total)
    assert seen[0] == (1, 10) and seen[-1] == (10, 10)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_serve_options():
    import argparse
    from w2x.web.cli import add_arguments, config_from_args, main
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--port", "9000", "--workers", "3", "--max-body", "0",
                         "--style", "art=upconv_7/art", "--cache-mb", "1"])
    cfg = config_from_args(args)
    assert (args.host, args.port) == ("127.0.0.1", 9000)
    assert cfg.workers == 3 and cfg.limits.max_body == 0 and cfg.cache_bytes == 1024 * 1024
    assert cfg.styles == {"art": "upconv_7/art", "photo": "upconv_7/photo"}
    assert main(["--workers", "0"]) == 2                 # refused before anything starts
    assert main(["--style", "nonsense"]) == 2
    assert main(["--max-body", "-1"]) == 2


def test_probe_tells_damaged_from_not_an_image():
    import io
    from PIL import Image
    from w2x.web.probe import probe
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", icc_profile=b"\0" * 2000)
    data = buf.getvalue()
    assert probe(data).pixels == 64
    for cut in (data[:40], data[:len(data) // 2]):
        with pytest.raises(WebError) as e:
            probe(cut)
        assert e.value.status == 400 and "damaged" in e.value.message
    with pytest.raises(WebError) as e:
        probe(b"GIF? no, text")
    assert e.value.status == 415


def test_a_style_whose_default_is_not_installed_runs_its_bundled_stand_in(monkeypatch, tmp_path):
    from w2x import store
    from w2x.web.app import default_styles
    monkeypatch.delenv(store.MODEL_DIR_ENV, raising=False)
    monkeypatch.setenv(store.CACHE_DIR_ENV, str(tmp_path / "cache"))   # only the bundle is left
    assert default_styles() == {"art": store.BUNDLE_FALLBACKS["art"], "photo": store.STYLES["photo"]}
