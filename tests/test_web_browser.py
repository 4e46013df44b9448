"""The page in headless Chromium (Playwright with Debian's chromium, no browser download).

Drops miku_small.png on the page, waits for the result, checks its size, moves the
comparison slider, downloads, and takes a screenshot: into the test's folder, or into
docs/web-page.png for the README with ``W2X_UPDATE_SCREENSHOT=1`` (so a run never leaves a
tracked file changed).
Needs: ``apt-get install chromium`` and ``pip install playwright`` (skipped without them).
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from web_helpers import FAST_STYLES, MIKU, decode, have_shared

CHROMIUM = os.environ.get("W2X_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "web-page.png"
RESULT_TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1100, "height": 720}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_shared(), reason="needs ../shared images and weights"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install chromium"),
]

DROP_JS = """([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, {type: "image/png"}));
  const target = document.getElementById("drop");
  for (const type of ["dragenter", "dragover", "drop"])
    target.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
}"""


def save_screenshot(png: bytes, tmp_path: Path) -> None:
    """The page as a PNG reduced to 256 colours to stay small (< 200 KB)."""
    import io
    from PIL import Image
    path = SCREENSHOT if os.environ.get("W2X_UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(path, optimize=True)
    assert path.stat().st_size < 200_000


def test_drop_convert_compare_download(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    pytest.importorskip("uvicorn")
    from web_server import serving
    from w2x.web.app import ServerConfig, create_app

    app = create_app(ServerConfig(styles=FAST_STYLES))
    with serving(app) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT, accept_downloads=True,
                                    extra_http_headers={"Accept-Language": "en"})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/?style=photo&noise=1&scale=2&tta_level=1&format=png")
            assert page.locator("input[name=noise][value='1']").is_checked()   # from the URL
            page.wait_for_function("document.getElementById('limits').textContent.includes('1500')")
            page.evaluate(DROP_JS, [base64.b64encode(MIKU.read_bytes()).decode(), MIKU.name])
            page.wait_for_selector("#queue li[data-state=done]", timeout=RESULT_TIMEOUT_MS)

            size = page.evaluate("[document.getElementById('after').naturalWidth,"
                                 " document.getElementById('after').naturalHeight]")
            assert size == [456, 318]                  # 228x159 doubled

            box = page.locator("#slider").bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
            assert 20 < float(page.locator("#slider").input_value()) < 40
            assert "inset(0px 0px 0px" in page.evaluate(
                "getComputedStyle(document.getElementById('after')).clipPath")
            page.click("#zoom-in")

            with page.expect_download() as dl:
                page.click("#queue li[data-state=done] a.button")
            saved = tmp_path / dl.value.suggested_filename
            dl.value.save_as(saved)
            assert saved.name == "miku_small_waifu2x_photo_noise1_scale.png"
            assert decode(saved.read_bytes()).shape[:2] == (318, 456)

            page.click("#zoom-fit")
            page.evaluate("window.scrollTo(0, 0)")
            save_screenshot(page.screenshot(), tmp_path)

            page.select_option("#lang", "ja")
            assert "言語" in page.text_content("header") and "lang=ja" in page.url
            assert not errors, errors
        finally:
            browser.close()
