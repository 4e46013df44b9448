"""Bounded result cache: finished images keyed by input content hash and options.

The original keeps up to 200 converted images in RAM, evicting the oldest insertion
(web.lua:177-232). w2x bounds the cache by total bytes and by age (TTL), evicts the least
recently used entry first, and gives every result an ``ETag`` (a hash of its bytes).
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from w2x.web.engine import Result

ETAG_HEX_CHARS = 32


def content_key(data: bytes, options_key: str) -> str:
    """Cache key: SHA-256 of the uploaded bytes plus the options that shape the output."""
    return f"{hashlib.sha256(data).hexdigest()}|{options_key}"


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:ETAG_HEX_CHARS] + '"'


@dataclass(frozen=True)
class Entry:
    result: Result
    etag: str
    stored_at: float


class ResultCache:
    """LRU over at most ``max_bytes`` of results, each kept at most ``ttl`` seconds.

    ``max_bytes`` 0 disables caching; ``ttl`` 0 means no expiry. Thread-safe.
    """

    def __init__(self, max_bytes: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self.ttl and self._clock() - entry.stored_at > self.ttl:
                self._drop(key)
                entry = None
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: str, result: Result) -> Entry:
        entry = Entry(result, etag_of(result.data), self._clock())
        size = len(result.data)
        with self._lock:
            if key in self._entries:
                self._drop(key)
            if 0 < size <= self.max_bytes:
                self._entries[key] = entry
                self._bytes += size
                while self._bytes > self.max_bytes:
                    self._drop(next(iter(self._entries)))
        return entry

    def _drop(self, key: str) -> None:
        self._bytes -= len(self._entries.pop(key).result.data)

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes,
                    "max_bytes": self.max_bytes, "ttl_s": self.ttl,
                    "hits": self.hits, "misses": self.misses}
