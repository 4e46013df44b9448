"""Fetch the original waifu2x JSON models into the cache (stage 0: getting the weights).

Files come from the original repository's raw tree, are checked against the git blob SHA-1s
in ``weights/original_blobs.tsv`` and written atomically under
:func:`w2x.store.cache_root`. The ``w2x models`` command is ``w2x.cli.models``.
"""

import functools
import hashlib
import http.client
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from w2x import atomic
from w2x.store import (
    CACHE_DIR_ENV,
    MODEL_DIR_ENV,
    MODES,
    NOISE_LEVELS,
    STYLES,
    cache_root,
    model_filename,
    model_subdir,
    weights_dir,
)

# The original repository; master is its final commit cc385f9. Files: <base>/models/<rel>.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/nagadomi/waifu2x/master"
_URL_SCHEMES = ("http", "https", "file")
DEFAULT_TIMEOUT_S = 60.0  # per socket operation, as web.lua's -curl_connect_timeout 60
_CHUNK_BYTES = 1 << 16  # read size; also the progress bar's update step
_USER_AGENT = "w2x (model download)"

# Our verification table: repo path, git blob SHA-1, exact size when known, rough size.
_TABLE_PATH = weights_dir() / "original_blobs.tsv"  # weights/, in a checkout or installed
_TABLE_COLUMNS = ["path", "git_blob_sha1", "size_bytes", "approx_mb"]
_REPO_PREFIX = "models/"  # table paths are the original repo's; cache paths drop this
_UNKNOWN = "-"  # table cell for a value that could not be derived


class DownloadError(OSError):
    """A model file could not be fetched, or did not match its git blob SHA-1."""


@dataclass(frozen=True)
class OriginalFile:
    """One row of ``weights/original_blobs.tsv``."""

    rel: str  # "<arch>/<style>/<name>.json", the path under a models root
    blob_sha1: str  # sha1(b"blob <size>\0" + bytes) at the original's commit cc385f9
    size: int | None  # exact byte size, None where it could not be derived
    approx_mb: float | None  # size of our stand-in copy, for the download prompt


@functools.cache
def original_files():
    """The rows of ``weights/original_blobs.tsv`` keyed by path under a models root.

    Raises
    ------
    FileNotFoundError
        If the table is missing (it is read from :func:`w2x.store.weights_dir`).
    """
    if not _TABLE_PATH.is_file():
        raise FileNotFoundError(
            f"{_TABLE_PATH} is missing; it ships with w2x (the weights/ folder), so "
            f"reinstall w2x or run from a checkout"
        )
    lines = _TABLE_PATH.read_text(encoding="utf-8").splitlines()
    if lines[0].split("\t") != _TABLE_COLUMNS:
        raise ValueError(f"{_TABLE_PATH}: header {lines[0]!r}, expected {_TABLE_COLUMNS}")
    table = {}
    for line in lines[1:]:
        path, sha, size, approx = line.split("\t")
        rel = path.removeprefix(_REPO_PREFIX)
        table[rel] = OriginalFile(
            rel,
            sha,
            None if size == _UNKNOWN else int(size),
            None if approx == _UNKNOWN else float(approx),
        )
    return table


def git_blob_sha1(data):
    """Git's object id of a file: ``sha1(b"blob <len>\\0" + data)``, hex."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def style_files(style):
    """Paths under a models root of every file a style needs.

    Parameters
    ----------
    style : {"art", "photo", "all"}

    Returns
    -------
    list of str
        art: ``cunet/art/*`` (9 files); photo: ``upconv_7/photo/*`` and
        ``vgg_7/photo/noise*`` (9 files); all: both, in that order.
    """
    if style != "all" and style not in STYLES:
        raise ValueError(f"style must be one of {[*STYLES, 'all']}, got {style!r}")
    styles = list(STYLES) if style == "all" else [style]
    # dict.fromkeys: ordered de-duplication (scale2.0x is the same file for every level)
    rels = dict.fromkeys(
        f"{model_subdir(s, mode)}/{model_filename(mode, n)}.json"
        for s in styles
        for mode in MODES
        for n in NOISE_LEVELS
    )
    return list(rels)


def _fetch(url, *, timeout, progress, desc, dest_root):
    """Body of ``url`` as bytes, with a tqdm bar on stderr when ``progress``."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")  # absent on chunked replies
            chunks = []
            with tqdm(
                total=int(length) if length else None, unit="B", unit_scale=True, desc=desc,
                file=sys.stderr, disable=not progress, leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:  # before URLError: it is a subclass
        failure = f"could not download {url}: HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:  # DNS failure, connection refused, ...
        failure = f"could not reach {url}: {e.reason}"
    except (OSError, http.client.HTTPException) as e:  # timeout or reset mid-transfer
        failure = f"download of {url} failed: {e!r}"
    else:
        return b"".join(chunks)
    raise DownloadError(
        f"{failure}. If this machine is offline, copy the files from a machine that has them "
        f"into {dest_root} (as <arch>/<style>/<name>.json), or set {MODEL_DIR_ENV} to a folder "
        f"laid out that way"
    )


def _is_valid(path, entry):
    return path.is_file() and git_blob_sha1(path.read_bytes()) == entry.blob_sha1


def download(style="art", dest_root=None, base_url=DEFAULT_BASE_URL, progress=True,
             timeout=DEFAULT_TIMEOUT_S, files=None):
    """Fetch, verify and store the original JSON models of a style.

    Parameters
    ----------
    style : {"art", "photo", "all"}
        Which set to fetch (see :func:`style_files`); ignored when ``files`` is given.
    dest_root : str or Path, optional
        Models root to fill, laid out as ``<arch>/<style>/<name>.json``; default
        :func:`w2x.store.cache_root`.
    base_url : str
        Root of a copy of the original repository; file URLs are
        ``<base_url>/models/<arch>/<style>/<name>.json``. http(s):// or file://.
    progress : bool
        Show a tqdm progress bar per file on stderr.
    timeout : float
        Seconds allowed for each socket operation.
    files : list of str, optional
        Paths under the models root (e.g. ``"vgg_7/ukbench/scale2.0x_model.json"``) to fetch
        instead of a style's set; each must be in ``weights/original_blobs.tsv``.

    Returns
    -------
    list of Path
        Files downloaded now. Files already present with the right SHA-1 are skipped.

    Raises
    ------
    DownloadError
        Network, DNS or HTTP failure (with what to do offline), a SHA-1 mismatch (nothing
        is written for that file), or a file that cannot be written.
    ValueError
        On an unknown style, a file not in the table, or a base_url that is not a URL.

    Notes
    -----
    The original ships the models in its repository (reference §1.8); it has no download
    step. The SHA-1s are those of its final commit cc385f9 (weights/original_blobs.tsv).
    """
    scheme = urllib.parse.urlsplit(base_url).scheme
    if scheme not in _URL_SCHEMES:
        raise ValueError(f"base_url must start with one of {_URL_SCHEMES}, got {base_url!r}")
    dest_root = Path(dest_root) if dest_root is not None else cache_root()
    rels = list(files) if files is not None else style_files(style)
    table = original_files()
    unknown = [rel for rel in rels if rel not in table]
    if unknown:
        raise ValueError(f"not original waifu2x model files: {unknown}; see {_TABLE_PATH}")

    fetched = []
    for rel in rels:
        entry, dest = table[rel], dest_root / rel
        if _is_valid(dest, entry):
            continue
        url = f"{base_url.rstrip('/')}/{_REPO_PREFIX}{rel}"
        data = _fetch(url, timeout=timeout, progress=progress, desc=rel, dest_root=dest_root)
        got = git_blob_sha1(data)
        if got != entry.blob_sha1:
            expected_size = f"{entry.size} bytes" if entry.size is not None else "size unknown"
            raise DownloadError(
                f"{url}: got {len(data)} bytes with git blob SHA-1 {got}, expected "
                f"{entry.blob_sha1} ({expected_size}, {_TABLE_PATH.name}); nothing was written "
                f"for it. Retry, or point base_url (--base-url) at an unmodified copy of "
                f"nagadomi/waifu2x"
            )
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(dest, data)
        except OSError as e:
            raise DownloadError(
                f"could not write {dest}: {e.strerror or e}; "
                f"set {CACHE_DIR_ENV} to a writable folder"
            ) from e
        fetched.append(dest)
    return fetched


def offer_download(style, stream_in, stream_out):
    """When no model for a style is found, ask whether to download them.

    Asks ``Download the original waifu2x models for style X (N files, ~M MB) into <cache>?
    [y/N]`` when ``stream_in`` is a TTY and downloads on "y"; on any other answer, or when
    ``stream_in`` is not a TTY, writes one line saying how to get them later and returns.

    Returns
    -------
    bool
        True if the models were downloaded.

    Raises
    ------
    DownloadError
        If the user said yes and the download failed.
    """
    entries = [original_files()[rel] for rel in style_files(style)]
    size_mb = sum(e.approx_mb or 0.0 for e in entries)
    what = f"{len(entries)} files, ~{size_mb:.0f} MB"
    how = (f"run `w2x models download --style {style}` ({what}, into {cache_root()}), or set "
           f"{MODEL_DIR_ENV} / --model-dir to a folder that has them")
    if not stream_in.isatty():
        stream_out.write(f"No waifu2x models found for style {style}. To get them, {how}.\n")
        return False
    stream_out.write(
        f"Download the original waifu2x models for style {style} ({what}) into "
        f"{cache_root()}? [y/N] "
    )
    stream_out.flush()
    if stream_in.readline().strip().lower() not in ("y", "yes"):
        stream_out.write(f"Nothing downloaded. To get the models later, {how}.\n")
        return False
    download(style)
    return True
