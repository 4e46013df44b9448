"""Size limits of the web API, as the original web server's (web.lua:81-122), configurable.

* body: 5 MiB (``-max_body_size``);
* input pixels: ``max_pixels`` = 3000^2 for noise reduction only, and
  ``(sqrt(max_pixels) / 2)^2`` = 1500^2 when upscaling, both measured on the input;
* with test-time augmentation the limit shrinks to ``floor(sqrt(limit / tta))^2``, and
  ``tta_level=0`` picks the largest of 8, 4, 2 whose limit the image fits (else 1).

w2x adds ``scale=4`` (two 2x passes, the second on a 4x larger image): its limit is the
upscaling limit divided by 4, the same side halved. 0 means "no limit" everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MIB = 1024 * 1024
AUTO_TTA_LEVELS = (8, 4, 2)          # web.lua auto_tta_level: the largest that fits
SCALE4_COST = 4                      # second pass works on 4x the pixels of the first


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one request; 0 disables a bound."""
    max_body: int = 5 * MIB
    max_noise_pixels: int = 3000 * 3000
    max_scale_pixels: int = 1500 * 1500

    def __post_init__(self):
        for name in ("max_body", "max_noise_pixels", "max_scale_pixels"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more, got {getattr(self, name)}")

    def max_pixels(self, scale: int, tta_level: int) -> int | None:
        """Most input pixels for ``scale`` (-1 = none, 1, 2, 4) and a TTA level; None = any."""
        base = self.max_noise_pixels if scale < 0 else self.max_scale_pixels
        if base == 0:
            return None
        if scale == 4:
            base //= SCALE4_COST
        return math.isqrt(base // max(tta_level, 1)) ** 2    # floor(sqrt(MAX / tta))^2

    def auto_tta_level(self, pixels: int, scale: int) -> int:
        """``tta_level=0``: the largest of 8, 4, 2 whose limit ``pixels`` fits, else 1."""
        for level in AUTO_TTA_LEVELS:
            limit = self.max_pixels(scale, level)
            if limit is None or pixels <= limit:
                return level
        return 1

    def to_json(self) -> dict:
        return {"max_body_bytes": self.max_body, "max_noise_pixels": self.max_noise_pixels,
                "max_scale_pixels": self.max_scale_pixels,
                "scale4_pixels_divisor": SCALE4_COST, "tta_divides_pixels": True}
