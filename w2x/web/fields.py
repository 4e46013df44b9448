"""The ``/api`` form fields -> a validated ``ConvertRequest`` (web.lua:301-373 semantics).

Fields, as the original's form plus w2x's additions:

=========== ====================================== =========================================
field       values (default first)                 meaning
=========== ====================================== =========================================
style       art, photo (or a style the server      model set (web.lua: art = cunet/art,
            was started with)                      photo = upconv_7/photo)
noise       -1, 0, 1, 2, 3                         -1 = no noise reduction
scale       -1, 1, 2, 4                            -1 = none, 1 = 1.6x (2x then Sinc 0.8,
                                                   web.lua:350), 4 = two 2x passes (w2x)
tta_level   1, 0, 2, 4, 8                          0 = the largest the size allows
format      png, webp                              webp is lossless (w2x)
download    empty or anything                      non-empty: Content-Disposition attachment
=========== ====================================== =========================================

Unlike the original, which reads any other style as photo and any other number as its
default, a value outside these answers 400 with what was expected.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from w2x.web.errors import bad_field

NOISE_LEVELS = (-1, 0, 1, 2, 3)
SCALES = (-1, 1, 2, 4)
TTA_LEVELS = (0, 1, 2, 4, 8)
FORMATS = ("png", "webp")
MEDIA_TYPES = {"png": "image/png", "webp": "image/webp"}
WEB_16X_FACTOR = 1.6            # web.lua:350: scale=1 is the 2x result shrunk by 0.8
FACTORS = {1: WEB_16X_FACTOR, 2: 2.0, 4: 4.0}
SINC_FILTER = "sinc"            # GraphicsMagick Sinc, as iproc.scale(.., "Sinc") in web.lua
_UNSAFE_NAME = re.compile(r"[^\w.\- ()\[\]]+")   # keep letters (any script), digits, few marks
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class ConvertRequest:
    """What one ``/api`` request asks for; ``tta_level`` 0 is resolved once the size is known."""
    style: str = "art"
    noise: int = -1
    scale: int = -1
    tta_level: int = 1
    format: str = "png"
    download: bool = False

    @property
    def mode(self) -> str | None:
        """The pipeline mode (web.lua:332-373), or None: no model, the input re-encoded."""
        if self.scale > 0:
            return "noise_scale" if self.noise >= 0 else "scale"
        return "noise" if self.noise >= 0 else None

    @property
    def factor(self) -> float:
        return FACTORS.get(self.scale, 1.0)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def cache_key(self) -> str:
        """The options that change the output bytes (not ``download``)."""
        return f"{self.style}|n{self.noise}|s{self.scale}|t{self.tta_level}|{self.format}"

    def output_name(self, input_name: str | None) -> str:
        """``<base>_waifu2x_<style>[_noiseN][_scale].<ext>`` as make_output_filename
        (web.lua): the input's base name, sanitised; ``image`` when there is none."""
        base = sanitise_name(input_name)
        parts = []
        if self.noise >= 0:
            parts.append(f"noise{self.noise}")
        if self.scale > 0:
            parts.append("scale" if self.scale == 2 else f"scale{self.factor:g}x")
        suffix = f"_waifu2x_{self.style}_{'_'.join(parts)}" if parts else ""
        return f"{base}{suffix}.{self.format}"


def sanitise_name(name: str | None) -> str:
    """The base name of an uploaded file without folders, extension or unsafe characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    stem = _UNSAFE_NAME.sub("_", stem).strip(" ._")[:MAX_NAME_CHARS]
    return stem or "image"


def _int_field(form, name: str, default: int, allowed: tuple[int, ...]) -> int:
    raw = form.get(name)
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return default
    if not isinstance(raw, str):
        raise bad_field(f"'{name}' must be a form value, not a file.")
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value not in allowed:
        raise bad_field(f"'{name}' must be one of {', '.join(map(str, allowed))}; got {raw!r}.")
    return value


def _choice_field(form, name: str, default: str, allowed) -> str:
    raw = form.get(name)
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return default
    if not isinstance(raw, str) or raw.strip() not in allowed:
        shown = raw if isinstance(raw, str) else "a file"
        raise bad_field(f"'{name}' must be one of {', '.join(allowed)}; got {shown!r}.")
    return raw.strip()


def parse_fields(form, styles) -> ConvertRequest:
    """Validate the option fields of a form (a mapping of names to strings)."""
    download = form.get("download")
    return ConvertRequest(
        style=_choice_field(form, "style", "art" if "art" in styles else next(iter(styles)),
                            tuple(styles)),
        noise=_int_field(form, "noise", -1, NOISE_LEVELS),
        scale=_int_field(form, "scale", -1, SCALES),
        tta_level=_int_field(form, "tta_level", 1, TTA_LEVELS),
        format=_choice_field(form, "format", "png", FORMATS),
        download=bool(download) and not (isinstance(download, str) and download.strip() == ""),
    )
