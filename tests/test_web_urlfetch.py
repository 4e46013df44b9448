"""The URL guard of ``w2x serve --allow-url`` against a local test server.

The guard refuses loopback, private and link-local addresses, so the "good" fetches here
use ``UrlFetcher(allowed={"127.0.0.1"})``: only that one address is let through, and every
other internal address (127.0.0.2, 10.x, 169.254.x, ::1) must still be refused, directly,
through DNS and after a redirect.
"""
from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
import time

import pytest

pytest.importorskip("starlette")
pytestmark = pytest.mark.filterwarnings("ignore:.*httpx.*")   # starlette 1.x prefers httpx2

from w2x.web.errors import WebError  # noqa: E402
from w2x.web.urlfetch import UrlFetcher, is_public  # noqa: E402

PNG = None
SLOW_S = 2.0


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        routes = {
            "/img.png": (200, {"Content-Type": "image/png"}, PNG),
            "/redir-ok": (302, {"Location": "/img.png"}, b""),
            "/redir-private": (302, {"Location": "http://10.1.2.3/img.png"}, b""),
            "/redir-loopback": (302, {"Location": f"http://127.0.0.2:{port}/img.png"}, b""),
            "/redir-v6": (301, {"Location": f"http://[::1]:{port}/img.png"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/missing": (404, {}, b"no"),
            "/big": (200, {"Content-Type": "image/png"}, b"x" * 5000),
        }
        if self.path == "/slow":
            time.sleep(SLOW_S)
        status, headers, body = routes.get(self.path, (200, {}, b"slow"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass                      # the fetcher stopped reading at its size or time cap


@pytest.fixture(scope="module")
def server():
    global PNG
    from web_helpers import crop_png, have_shared
    if not have_shared():
        pytest.skip("needs ../shared images")
    PNG = crop_png()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def local() -> UrlFetcher:
    return UrlFetcher(max_bytes=4000, timeout=1.0, allowed=frozenset({"127.0.0.1"}))


def refused(fetcher: UrlFetcher, url: str, status: int = 400) -> str:
    with pytest.raises(WebError) as e:
        fetcher.fetch(url)
    assert e.value.status == status
    return e.value.message


def test_address_classes():
    for a in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "0.0.0.0",
              "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "224.0.0.1",
              "100.64.0.1", "255.255.255.255"):
        assert not is_public(a), a
    for a in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert is_public(a), a


def test_loopback_is_refused_by_default(server):
    guard = UrlFetcher(timeout=1.0)
    assert "internal address" in refused(guard, f"{server}/img.png")
    assert "internal address" in refused(guard, server.replace("127.0.0.1", "localhost") + "/img.png")


def test_private_names_are_refused_before_connecting():
    calls = []

    def resolver(host, port):
        calls.append(host)
        return {"intranet.example": ["10.0.0.7"], "mixed.example": ["93.184.216.34", "192.168.0.2"],
                "meta.example": ["169.254.169.254"]}[host]

    guard = UrlFetcher(timeout=1.0, resolver=resolver)
    for host in ("intranet.example", "mixed.example", "meta.example"):
        assert "internal address" in refused(guard, f"http://{host}/a.png")
    assert calls == ["intranet.example", "mixed.example", "meta.example"]


def test_only_http_and_https():
    for url in ("ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/", "javascript:1", "/a"):
        assert "http" in refused(UrlFetcher(), url)


def test_allowed_address_fetches_and_follows_a_redirect(server):
    assert local().fetch(f"{server}/img.png").data == PNG
    got = local().fetch(f"{server}/redir-ok")
    assert got.data == PNG and got.name == "img.png"


def test_redirects_are_rechecked(server):
    for path in ("/redir-private", "/redir-loopback", "/redir-v6"):
        assert "internal address" in refused(local(), server + path)
    assert "more than 2" in refused(local(), f"{server}/loop")


def test_size_time_and_status_caps(server):
    assert "larger than 4000" in refused(local(), f"{server}/big", 413)
    assert "longer than" in refused(local(), f"{server}/slow")
    assert "HTTP 404" in refused(local(), f"{server}/missing")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_tls_certificates_are_verified(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{httpd.server_address[1]}/img.png"
        assert "certificate" in refused(local(), url)           # self-signed: not trusted
    finally:
        httpd.shutdown()


def test_api_url_field(server):
    from starlette.testclient import TestClient
    from web_helpers import FAST_STYLES, decode
    from w2x.web.app import ServerConfig, create_app
    app = create_app(ServerConfig(styles=FAST_STYLES, allow_url=True, fetcher=local()))
    with TestClient(app) as c:
        r = c.post("/api", data={"url": f"{server}/img.png", "noise": "1"})
        assert r.status_code == 200, r.text
        assert decode(r.content).shape[:2] == decode(PNG).shape[:2]
        assert 'filename="img_waifu2x_art_noise1.png"' in r.headers["content-disposition"]
        bad = c.post("/api", data={"url": f"{server}/redir-private"})
        assert bad.status_code == 400 and "internal" in bad.json()["error"]["message"]
