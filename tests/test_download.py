"""Model download: served from a loopback HTTP server, verified by git blob SHA-1."""

import functools
import http.server
import io
import os
import re
import shutil
import socket
import threading
from pathlib import Path

import pytest

from w2x import download as dl
from w2x import store as model_store
from w2x.cli.main import main as cli_main
from w2x.download import DownloadError, download, git_blob_sha1, offer_download

SHARED = Path(os.environ.get("W2X_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
WEIGHTS = Path(os.environ.get("W2X_MODEL_DIR") or SHARED / "weights")
# The one shared file that is byte-identical to the original (weights/README.md).
UKBENCH = "vgg_7/ukbench/scale2.0x_model.json"
UKBENCH_BLOB = "52cf16cf57fb96d2cd746b18aaa93e8c884926bc"
needs_ukbench = pytest.mark.skipif(
    not (WEIGHTS / UKBENCH).is_file(), reason=f"no {UKBENCH} under {WEIGHTS}"
)


def models_main(argv):
    """``w2x models ...``"""
    return cli_main(["models", *argv])


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path):
    """A cache under tmp_path (never the real user cache), no W2X_MODEL_DIR, no bundle."""
    monkeypatch.delenv(model_store.MODEL_DIR_ENV, raising=False)
    monkeypatch.setenv(model_store.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(model_store, "weights_dir", lambda: tmp_path / "no-bundle")
    return tmp_path / "cache" / "models"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest output clean
        pass


@pytest.fixture
def served(tmp_path):
    """(folder, base_url): a loopback server for a folder laid out like the raw URL tree."""
    root = tmp_path / "raw"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # poll_interval: how often shutdown() is noticed; the 0.5 s default slows teardown
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _serve_ukbench(root):
    """Copy the byte-identical original into the served tree, return the served copy."""
    target = root / "models" / UKBENCH
    target.parent.mkdir(parents=True)
    shutil.copyfile(WEIGHTS / UKBENCH, target)
    return target


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_git_blob_sha1_matches_git():
    # `git hash-object` of an empty file and of "hello\n"
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.skipif(not (WEIGHTS / "original-blobs.txt").is_file(), reason="no blob list")
def test_table_matches_shared_blob_list():
    listed = dict(
        line.split()[::-1] for line in (WEIGHTS / "original-blobs.txt").read_text().splitlines()
    )
    table = dl.original_files()
    assert {"models/" + rel: e.blob_sha1 for rel, e in table.items()} == listed
    assert table[UKBENCH].size == 5553441


def test_style_files_cover_the_web_server_models():
    art, photo, both = dl.style_files("art"), dl.style_files("photo"), dl.style_files("all")
    assert len(art) == 9 and all(rel.startswith("cunet/art/") for rel in art)
    assert sorted(rel for rel in photo if rel.startswith("vgg_7/photo/")) == [
        f"vgg_7/photo/noise{n}_model.json" for n in range(4)
    ]
    assert len(photo) == 9 and "vgg_7/photo/scale2.0x_model.json" not in photo
    assert both == art + photo
    assert set(both) <= set(dl.original_files())
    with pytest.raises(ValueError, match="style must be one of"):
        dl.style_files("anime")


@needs_ukbench
def test_download_fetches_verifies_and_skips(served, cache):
    root, base_url = served
    _serve_ukbench(root)
    dest = cache / UKBENCH

    assert download(files=[UKBENCH], base_url=base_url, progress=False) == [dest]
    assert git_blob_sha1(dest.read_bytes()) == UKBENCH_BLOB
    assert model_store.find_model("scale2.0x_model", style="vgg_7/ukbench") == dest
    assert download(files=[UKBENCH], base_url=base_url, progress=False) == []  # valid: skipped

    dest.write_bytes(b"[]")  # a damaged cached copy is fetched again
    assert download(files=[UKBENCH], base_url=base_url, progress=False) == [dest]
    assert git_blob_sha1(dest.read_bytes()) == UKBENCH_BLOB
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no temp files


@needs_ukbench
def test_download_corrupted_file_leaves_nothing(served, cache):
    root, base_url = served
    served_copy = _serve_ukbench(root)
    data = bytearray(served_copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte changed, same length
    served_copy.write_bytes(bytes(data))

    with pytest.raises(DownloadError, match="SHA-1") as info:
        download(files=[UKBENCH], dest_root=cache, base_url=base_url, progress=False)
    assert UKBENCH_BLOB in str(info.value)
    assert not cache.exists() or list(cache.rglob("*")) == []


def test_download_unreachable_server_gives_offline_advice(cache):
    with pytest.raises(DownloadError, match="could not reach") as info:
        download(files=[UKBENCH], base_url=f"http://127.0.0.1:{_closed_port()}", progress=False)
    message = str(info.value)
    assert "offline" in message and str(cache) in message and "W2X_MODEL_DIR" in message
    assert not cache.exists()


def test_download_http_error_names_status(served, cache):
    _, base_url = served  # serves an empty tree
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(files=[UKBENCH], base_url=base_url, progress=False)
    assert not cache.exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"files": ["cunet/art/noise9_model.json"]}, "not original waifu2x model files"),
        ({"base_url": "raw.githubusercontent.com/nagadomi"}, "base_url must start with"),
        ({"style": "anime"}, "style must be one of"),
    ],
)
def test_download_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        download(progress=False, **kwargs)


def test_models_list_prints_installed(cache, capsys):
    model = cache / "cunet" / "art" / "noise1_model.json"
    model.parent.mkdir(parents=True)
    model.write_text("[]")
    assert models_main(["list"]) == 0
    assert capsys.readouterr().out == f"cunet/art/noise1_model\t{model}\n"


@pytest.mark.parametrize(
    "argv, match",
    [
        (["download", "--style", "anime"], "invalid choice"),
        (["fetch"], "invalid choice"),
        (["download", "--quiet", "--base-url", "http://127.0.0.1:{port}"], "could not reach"),
    ],
)
def test_models_main_errors_are_one_line(argv, match, capsys):
    argv = [arg.format(port=_closed_port()) for arg in argv]
    assert models_main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("w2x models: error:")
    assert match in captured.err


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_offer_download_without_tty_only_prints_hint(monkeypatch):
    monkeypatch.setattr(dl, "download", pytest.fail)  # must not be called
    out = io.StringIO()
    assert offer_download("photo", io.StringIO("y\n"), out) is False
    assert out.getvalue().count("\n") == 1
    assert "w2x models download --style photo" in out.getvalue()
    assert re.search(r"\(9 files, ~\d+ MB", out.getvalue())


_PROMPT = r"Download the original waifu2x models for style art \(9 files, ~\d+ MB\) into {}\? \[y/N\] "


@pytest.mark.parametrize("answer", ["y\n", "yes\n"])
def test_offer_download_asks_on_tty_and_downloads_on_yes(monkeypatch, cache, answer):
    calls = []
    monkeypatch.setattr(dl, "download", calls.append)
    out = io.StringIO()
    assert offer_download("art", _Tty(answer), out) is True
    assert calls == ["art"]
    assert re.fullmatch(_PROMPT.format(re.escape(str(cache))), out.getvalue())


@pytest.mark.parametrize("answer", ["\n", "n\n", ""])
def test_offer_download_declined_says_how_to_get_the_models_later(monkeypatch, cache, answer):
    monkeypatch.setattr(dl, "download", pytest.fail)  # must not be called
    out = io.StringIO()
    assert offer_download("art", _Tty(answer), out) is False
    prompt = re.match(_PROMPT.format(re.escape(str(cache))), out.getvalue())
    assert prompt is not None
    after = out.getvalue()[prompt.end():]
    assert after.count("\n") == 1 and after.endswith("\n")  # one line
    assert after.startswith("Nothing downloaded. To get the models later, run "
                            "`w2x models download --style art`")
