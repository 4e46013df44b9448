"""The parsed-weights cache (stage 0: loading the models): a JSON model is parsed once, and
later loads read its float32 numbers back from a binary file, 10-50x faster.

Parsing the original's JSON (``w2x.nn.models.parse_model_json``: text numbers -> float64 ->
float32) takes 0.3 s (vgg_7) to 1.5 s (cunet), most of a one-picture run's start-up.  The
cache keeps, per JSON file content, the numbers the parse gave:

    <cache_base>/weights/<sha256 of the JSON file's bytes>.w2xw

so a changed JSON is a new key and never meets the old numbers.  The JSON stays the one
format users hand w2x; this file is only ever written by w2x, and read back only when:

* it starts with :data:`MAGIC`, its header is :data:`FORMAT` with the same source hash,
* its payload has the length the header's shapes need and the SHA-256 the header names,
* the arrays fit the architecture's layer spec (``w2x.nn.models.model_from_weights``).

Anything else (truncated, corrupted, stale, unreadable) is treated as absent: the JSON is
parsed and the file rewritten (atomically, ``w2x.atomic``).  An unwritable cache folder
just means no cache.  ``$W2X_WEIGHT_CACHE=0`` turns the cache off; ``$W2X_CACHE_DIR`` moves
it (``w2x.store.cache_base``).  No pickle: a small JSON header and raw little-endian float32.

File layout::

    MAGIC (12 bytes) | header length (uint32 LE) | header (UTF-8 JSON) | payload
    header = {"format": FORMAT, "source_sha256": hex, "arch": name, "channels": 1|3,
              "shapes": [[weight shape], [bias shape], ...], "payload_sha256": hex}
    payload = weight_0, bias_0, weight_1, ... as float32 LE, C order, torch layout
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path

import numpy as np

from w2x import atomic
from w2x.nn import models
from w2x.nn.models import Model, ModelFormatError, ModelWeights
from w2x.store import cache_base

MAGIC = b"w2x-weights\n"
FORMAT = 1                       # bump when the layout or the meaning of the numbers changes
SUFFIX = ".w2xw"
DISABLE_ENV = "W2X_WEIGHT_CACHE"  # "0", "off", "no" or "false": parse the JSON every time
_OFF = {"0", "off", "no", "false"}
_LENGTH = struct.Struct("<I")
_FLOAT = np.dtype("<f4")


def cache_dir() -> Path | None:
    """The cache's folder, or None when ``$W2X_WEIGHT_CACHE`` turns it off."""
    if os.environ.get(DISABLE_ENV, "").strip().lower() in _OFF:
        return None
    return cache_base() / "weights"


def load_model(path: str | Path) -> Model:
    """``w2x.nn.models.load_model(path)`` through the cache in :func:`cache_dir`: the same
    model bit for bit, the same errors."""
    folder = cache_dir()
    if folder is None:
        return models.load_model(path)
    path = Path(path)
    raw = models.read_model_file(path)
    source = hashlib.sha256(raw).hexdigest()
    entry = folder / f"{source}{SUFFIX}"
    weights = read_entry(entry, source)
    if weights is not None:
        try:
            return models.model_from_weights(weights, path)
        except ModelFormatError:        # a file of w2x's that does not fit the spec: rebuild
            pass
    weights = models.parse_model_json(raw, path)
    model = models.model_from_weights(weights, path)
    write_entry(entry, source, weights)
    return model


def read_entry(entry: Path, source: str) -> ModelWeights | None:
    """The weights in cache file ``entry`` if it is a valid one for JSON hash ``source``."""
    try:
        with open(entry, "rb") as f:
            data = f.read()
    except OSError:
        return None
    head = len(MAGIC) + _LENGTH.size
    if len(data) < head or not data.startswith(MAGIC):
        return None
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    try:
        header = json.loads(data[head:head + length])
        ok = (header["format"] == FORMAT and header["source_sha256"] == source
              and isinstance(header["arch"], str) and header["channels"] in (1, 3))
        shapes = [tuple(int(n) for n in s) for s in header["shapes"]]
    except (ValueError, TypeError, KeyError):
        return None
    payload = memoryview(data)[head + length:]
    sizes = [math.prod(s) * _FLOAT.itemsize for s in shapes]
    if (not ok or len(shapes) % 2 or any(n < 0 for s in shapes for n in s) or sum(sizes) != len(payload)
            or hashlib.sha256(payload).hexdigest() != header.get("payload_sha256")):
        return None
    arrays, at = [], 0
    for shape, size in zip(shapes, sizes):
        # copy: writable arrays that do not keep the file's bytes alive
        arrays.append(np.frombuffer(payload[at:at + size], _FLOAT).reshape(shape).astype(np.float32))
        at += size
    pairs = tuple(zip(arrays[0::2], arrays[1::2]))
    return ModelWeights(header["arch"], header["channels"], pairs)


def write_entry(entry: Path, source: str, weights: ModelWeights) -> bool:
    """Write ``weights`` to ``entry`` atomically; False (and nothing written) where the
    folder cannot be made or written."""
    arrays = [np.ascontiguousarray(a, _FLOAT) for pair in weights.arrays for a in pair]
    payload = b"".join(a.tobytes() for a in arrays)
    header = json.dumps({"format": FORMAT, "source_sha256": source, "arch": weights.arch_name,
                         "channels": weights.channels, "shapes": [list(a.shape) for a in arrays],
                         "payload_sha256": hashlib.sha256(payload).hexdigest()}).encode()
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with atomic.replacing(entry) as f:
            f.write(MAGIC + _LENGTH.pack(len(header)) + header)
            f.write(payload)
    except OSError:
        return False
    return True
