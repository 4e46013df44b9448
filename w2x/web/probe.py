"""What an uploaded file is, from its header only: format and size, before any decoding.

This lets the server answer 415 (not an image) and 413 (too many pixels) without spending
memory or time on the pixels; w2x.io.read_image then decodes (400 when that fails).
Pillow's ``Image.open`` is lazy: it parses the header and leaves the pixels alone.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from w2x.web.errors import bad_field, not_an_image


# Leading bytes of the formats w2x reads: a file that starts like one of these but does not
# open is a damaged image (400), anything else is not an image (415).
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF",
              b"GIF89a": "GIF", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def signature_format(data: bytes) -> str | None:
    """The format ``data`` claims by its first bytes (WebP: RIFF....WEBP), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for sig, fmt in SIGNATURES.items() if data.startswith(sig)), None)


@dataclass(frozen=True)
class Header:
    format: str          # Pillow's name, e.g. "PNG"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(data: bytes) -> Header:
    """Format and size of an encoded image; WebError 400 (empty) or 415 (not an image)."""
    if not data:
        raise bad_field("The file is empty; choose an image file (PNG, JPEG, WebP, ...).")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return Header(im.format or "unknown", *im.size)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        # Pillow raises UnidentifiedImageError for unknown formats and OSError/SyntaxError
        # from some plugins' header checks (e.g. a PNG cut inside its ICC chunk).
        claimed = signature_format(data)
        if claimed is not None:
            raise bad_field(f"The {claimed} file is damaged or cut short and cannot be "
                            "decoded; upload it again or re-save it.") from e
        raise not_an_image("This file is not an image w2x can read; upload PNG, JPEG, WebP, "
                           "GIF, BMP or TIFF.") from e
