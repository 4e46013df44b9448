"""The page's language: English or Japanese, from ``Accept-Language`` (the page can switch).

All the page's text is one table, ``static/strings.json`` (language -> key -> text). The
original picks a whole translated page by the *first* ``Accept-Language`` entry
(web.lua:429-480); here the entries are weighed by their q-values (RFC 9110 §12.5.4).
"""
from __future__ import annotations

import functools
import json
from importlib import resources

DEFAULT_LANGUAGE = "en"


@functools.lru_cache(maxsize=1)
def strings() -> dict[str, dict[str, str]]:
    text = resources.files("w2x.web").joinpath("static/strings.json").read_text("utf-8")
    return json.loads(text)


def languages() -> tuple[str, ...]:
    return tuple(strings())


def pick_language(accept_language: str | None, available=None) -> str:
    """The available language the client prefers most; English when none matches."""
    available = tuple(available or languages())
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for item in (accept_language or "").split(","):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if primary in available and q > best_q:
            best, best_q = primary, q
    return best
