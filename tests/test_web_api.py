"""The web API through Starlette's ASGI test client: every field, every error, the cache.

Outputs are compared pixel for pixel with the command line's (w2x.cli.main) for the same
options: the web server must be the CLI behind HTTP, not a second implementation.
"""
from __future__ import annotations

import io
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytestmark_httpx = pytest.mark.filterwarnings("ignore:.*httpx.*")   # starlette 1.x prefers httpx2

with warnings.catch_warnings():                             # starlette 1.x prefers httpx2
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from conftest import IMAGES  # noqa: E402
from web_helpers import FAST_STYLES, MIKU, cli_convert, crop_png, decode, have_shared, wait_job  # noqa: E402
from w2x.web.app import ServerConfig, create_app  # noqa: E402
from w2x.web.limits import Limits  # noqa: E402

pytestmark = [pytest.mark.skipif(not have_shared(), reason="needs ../shared images and weights"),
              pytestmark_httpx]


def make_client(**kw) -> TestClient:
    return TestClient(create_app(ServerConfig(styles=FAST_STYLES, **kw)))


@pytest.fixture(scope="module")
def client():
    with make_client() as c:
        yield c


def post(client, data: bytes, name="pic.png", path="/api", **fields):
    return client.post(path, files={"file": (name, data, "image/png")},
                       data={k: str(v) for k, v in fields.items()})


def error_of(resp, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["status"] == status
    msg = body["error"]["message"]
    assert "Traceback" not in msg and msg.endswith((".", ")"))
    return msg


# -- info, health, page -------------------------------------------------------------------
def test_health_info_and_page(client, caplog):
    with caplog.at_level("INFO", logger="w2x.web.access"):
        assert client.get("/healthz").json() == {"status": "ok"}
    assert any('"GET /healthz" 200' in r.getMessage() for r in caplog.records)
    info = client.get("/api/info").json()
    assert info["limits"]["max_body_bytes"] == 5 * 1024 * 1024
    assert info["limits"]["max_scale_pixels"] == 1500 ** 2
    assert set(info["styles"]) == {"art", "photo"}
    assert info["styles"]["photo"]["modes"] == {"noise": True, "scale": True, "noise_scale": True}
    assert info["options"]["scale"] == [-1, 1, 2, 4] and info["url_fetch"] is False
    page = client.get("/", headers={"Accept-Language": "ja,en;q=0.5"})
    assert page.status_code == 200 and '<html lang="ja"' in page.text
    assert '<html lang="en"' in client.get("/").text


# -- every field, against the CLI ------------------------------------------------------------
CASES = [  # style, noise, scale, tta
    ("art", 1, 2, 1), ("photo", -1, 2, 1), ("art", 3, -1, 1), ("photo", 0, 1, 1),
    ("art", -1, 1, 2), ("art", 2, 4, 1),
    pytest.param("photo", 1, 2, 4, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("style,noise,scale,tta", CASES)
def test_api_equals_cli(client, tmp_path, style, noise, scale, tta):
    data = crop_png()
    r = post(client, data, style=style, noise=noise, scale=scale, tta_level=tta)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    got = decode(r.content)
    want = cli_convert(tmp_path, data, FAST_STYLES[style], noise, scale, tta)
    np.testing.assert_array_equal(got, want)
    h, w = decode(data).shape[:2]
    factor = {-1: 1, 1: 1.6, 2: 2, 4: 4}[scale]
    assert got.shape[:2] == (int(h * factor + 0.5), int(w * factor + 0.5))


def test_alpha_and_grey_keep_their_channels(client, tmp_path):
    rgba = (IMAGES / "neko_alpha.png").read_bytes()     # 100x87, 46 % transparent
    r = post(client, rgba, style="photo", noise=1, scale=2)
    np.testing.assert_array_equal(decode(r.content),
                                  cli_convert(tmp_path, rgba, "upconv_7/photo", 1, 2, 1))
    assert decode(r.content).shape == (174, 200, 4)
    grey = crop_png(mode="L")
    assert decode(post(client, grey, style="photo", scale=2).content).ndim == 2


def test_sixteen_bit_input_as_the_cli(client, tmp_path):
    from PIL import Image
    arr = (np.asarray(Image.open(MIKU).convert("RGB").crop((90, 50, 122, 74)), np.uint16) * 257)
    buf = io.BytesIO()
    import png
    png.Writer(arr.shape[1], arr.shape[0], greyscale=False, bitdepth=16).write(
        buf, arr.reshape(arr.shape[0], -1).tolist())
    data = buf.getvalue()
    r = post(client, data, style="photo", noise=0, scale=2)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(decode(r.content),
                                  cli_convert(tmp_path, data, "upconv_7/photo", 0, 2, 1))


def test_no_option_reencodes_and_webp_is_lossless(client):
    data = crop_png()
    plain = post(client, data)
    assert plain.status_code == 200
    np.testing.assert_array_equal(decode(plain.content), decode(data)[:, :, :3])  # opaque: RGB
    assert 'filename="pic.png"' in plain.headers["content-disposition"]
    png_out = post(client, data, style="photo", noise=1, scale=2)
    webp = post(client, data, style="photo", noise=1, scale=2, format="webp")
    assert webp.headers["content-type"] == "image/webp" and webp.content[8:12] == b"WEBP"
    np.testing.assert_array_equal(decode(webp.content), decode(png_out.content))


def test_names_download_and_auto_tta(client):
    data = crop_png()
    r = post(client, data, name="../dir/My Cat.jpeg", style="art", noise=1, scale=2)
    assert r.headers["content-disposition"] == \
        "inline; filename=\"My Cat_waifu2x_art_noise1_scale.png\"; " \
        "filename*=UTF-8''My%20Cat_waifu2x_art_noise1_scale.png"
    d = post(client, data, name="猫.png", noise=2, download=1)
    assert d.headers["content-type"] == "application/octet-stream"
    assert d.headers["content-disposition"].startswith('attachment; filename="_')
    assert "UTF-8''%E7%8C%AB_waifu2x_art_noise2.png" in d.headers["content-disposition"]
    # tta_level 0 picks 8 for a small image: the same bytes as asking for 8
    tiny = crop_png(box=(90, 50, 106, 62))
    auto = post(client, tiny, style="photo", scale=2, tta_level=0)
    eight = post(client, tiny, style="photo", scale=2, tta_level=8)
    assert auto.content == eight.content and auto.headers["etag"] == eight.headers["etag"]


# -- errors ---------------------------------------------------------------------------------
def test_bad_fields_are_400(client):
    data = crop_png()
    for field, value in [("noise", 5), ("scale", 3), ("tta_level", 3), ("style", "cunet"),
                         ("format", "jpeg")]:
        assert field in error_of(post(client, data, **{field: value}), 400)
    assert "'file'" in error_of(client.post("/api", data={"noise": "1"}), 400)
    assert "empty" in error_of(post(client, b""), 400)
    assert "URL" in error_of(client.post("/api", data={"url": "https://example.com/a.png"}), 400)


def test_undecodable_image_is_400_and_not_an_image_is_415(client):
    data = crop_png()
    assert "decoded" in error_of(post(client, data[: len(data) // 2], scale=2), 400)
    assert "not an image" in error_of(post(client, b"hello, world\n" * 10, name="a.txt"), 415)
    r = client.post("/api", json={"file": "x"})
    assert "multipart" in error_of(r, 415)


def test_body_and_pixel_limits_are_413():
    big = crop_png(box=(0, 0, 200, 150))
    assert len(big) > 10_000
    with make_client(limits=Limits(max_body=10_000, max_noise_pixels=40 * 40,
                                   max_scale_pixels=20 * 20)) as c:
        assert "larger than the 10000 bytes" in error_of(post(c, big), 413)
        small = crop_png(box=(90, 50, 120, 80))        # 900 px, under 10 kB
        assert "at most 400 pixels" in error_of(post(c, small, scale=2), 413)
        assert post(c, small, noise=1).status_code == 200          # 900 <= 1600
        assert "TTA level 2" in error_of(post(c, small, noise=1, tta_level=2), 413)
        assert post(c, crop_png(box=(90, 50, 110, 60)), scale=2, tta_level=0).status_code == 200


def test_unknown_routes_and_methods_are_json(client):
    assert "nothing" in error_of(client.get("/nope"), 404)
    assert error_of(client.get("/api"), 405)
    assert "no such job" in error_of(client.get("/api/jobs/xyz"), 404)
    assert "no such job" in error_of(client.delete("/api/jobs/xyz"), 404)


class Gate:
    """Replaces Engine.convert: reports tiles until released or cancelled."""

    def __init__(self, queue):
        self.release, self.started = threading.Event(), threading.Event()
        self.real = queue.engine.convert
        queue.engine.convert = self

    def __call__(self, data, req, limits, progress=None):
        self.started.set()
        for i in range(1, 10_000):
            progress(min(i, 99), 100)
            if self.release.wait(0.01):
                return self.real(data, req, limits, progress)
        raise AssertionError("the gate was never released")


def test_queue_full_is_503_with_retry_after():
    with make_client(workers=1, max_queued=1) as c:
        gate = Gate(c.app.state.queue)
        first = post(c, crop_png(), path="/api/jobs", noise=1).json()
        assert gate.started.wait(10)
        second = post(c, crop_png(box=(0, 0, 30, 30)), path="/api/jobs", noise=1)
        assert second.status_code == 202
        third = post(c, crop_png(box=(10, 0, 30, 30)), path="/api/jobs", noise=1)
        assert "busy" in error_of(third, 503) and int(third.headers["retry-after"]) > 0
        gate.release.set()
        assert wait_job(c, first["id"])["state"] == "done"
        assert wait_job(c, second.json()["id"])["state"] == "done"


# -- jobs: progress, cancel, result, cache ----------------------------------------------------
def test_job_progress_result_and_etag(client):
    data = crop_png(box=(60, 40, 140, 110))
    sub = post(client, data, path="/api/jobs", style="photo", noise=2, scale=2, tta_level=2)
    assert sub.status_code == 202 and sub.headers["location"] == f"/api/jobs/{sub.json()['id']}"
    status = wait_job(client, sub.json()["id"])
    assert status["state"] == "done", status
    done, total = status["progress"]["done"], status["progress"]["total"]
    assert done == total >= 2                           # TTA 2: at least one tile per pattern
    res = client.get(status["result"]["url"])
    assert res.status_code == 200 and decode(res.content).shape[:2] == (140, 160)
    assert res.headers["etag"] == status["result"]["etag"]
    again = client.get(status["result"]["url"], headers={"If-None-Match": res.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_cancel_running_and_queued_jobs():
    with make_client(workers=1, max_queued=2) as c:
        gate = Gate(c.app.state.queue)
        running = post(c, crop_png(), path="/api/jobs", noise=1).json()
        assert gate.started.wait(10)
        queued = post(c, crop_png(box=(0, 0, 30, 30)), path="/api/jobs", noise=1).json()
        assert c.get(f"/api/jobs/{running['id']}/result").status_code == 409
        assert c.delete(f"/api/jobs/{queued['id']}").json()["state"] == "cancelled"
        c.delete(f"/api/jobs/{running['id']}")
        status = wait_job(c, running["id"])
        assert status["state"] == "cancelled" and status["progress"]["done"] > 0
        assert "cancelled" in error_of(c.get(f"/api/jobs/{running['id']}/result"), 410)
        # the pool is free again: a new job runs to the end
        gate.release.set()
        again = post(c, crop_png(), path="/api/jobs", noise=1).json()
        assert wait_job(c, again["id"])["state"] == "done"


def test_cache_hits_by_content_and_options():
    with make_client() as c:
        data = crop_png(box=(70, 40, 110, 70))
        first = post(c, data, style="photo", scale=2)
        stats = c.get("/api/info").json()["cache"]
        t = time.perf_counter()
        second = post(c, data, name="other.png", style="photo", scale=2, download=1)
        assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
        after = c.get("/api/info").json()["cache"]
        assert after["hits"] == stats["hits"] + 1 and after["entries"] == stats["entries"]
        assert "other_waifu2x" in second.headers["content-disposition"]
        job = post(c, data, path="/api/jobs", style="photo", scale=2)
        assert job.status_code == 200 and job.json()["state"] == "done"   # cached: done at once
        post(c, data, style="photo", scale=2, format="webp")               # other options: a miss
        assert c.get("/api/info").json()["cache"]["entries"] == stats["entries"] + 1
        assert time.perf_counter() - t >= 0
