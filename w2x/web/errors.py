"""HTTP errors of the web API as data: a status, one sentence for a person, extra headers.

The original answers every failure with HTTP 400 and a fixed text (web.lua:397-403); w2x
answers JSON ``{"error": {"status": N, "message": "..."}}`` with the status that fits.
"""
from __future__ import annotations


class WebError(Exception):
    """A request the server refuses, with the status and sentence to answer it with."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def to_json(self) -> dict:
        return {"error": {"status": self.status, "message": self.message}}


def bad_field(message: str) -> WebError:
    return WebError(400, message)


def too_large(message: str) -> WebError:
    return WebError(413, message)


def not_an_image(message: str) -> WebError:
    return WebError(415, message)


def busy(retry_after: int) -> WebError:
    return WebError(503, "The server is busy with other images; try again in a few seconds.",
                    {"Retry-After": str(retry_after)})
