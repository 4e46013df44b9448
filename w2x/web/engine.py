"""One web conversion: encoded bytes in, encoded image bytes out (the worker's job).

    bytes --probe--> limits --w2x.io.read_image--> float planes + meta
          --w2x.pipeline.convert_planes--> planes --w2x.io.write_image--> PNG / lossless WebP bytes

Decoding and encoding go through files in a private temporary folder, so alpha, ICC
profiles, gamma and 16-bit input behave exactly as in the CLI (which also reads and writes
files); the output is 8-bit, as the original web server's (web.lua ``depth = 8``).
Dispatch follows web.lua:332-373: noise and/or scale, or neither (re-encoded as is).
"""
from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from w2x import anyscale, pipeline
from w2x.reconstruct import ProgressFn
from w2x.io import ImageReadError, read_image, write_image
from w2x.pipeline import Options
from w2x.store import STYLES
from w2x.web.errors import WebError, bad_field, too_large
from w2x.web.fields import SINC_FILTER, ConvertRequest
from w2x.web.limits import Limits
from w2x.web.probe import Header, probe
from w2x.workload import FileTiles, count_tiles

OUTPUT_DEPTH = 8           # web.lua: encode_png(.., {depth = 8})


@dataclass(frozen=True)
class Result:
    """An encoded output image."""
    data: bytes
    media_type: str
    width: int
    height: int


def check_size(header: Header, req: ConvertRequest, limits: Limits) -> ConvertRequest:
    """413 when the input has too many pixels for ``req``; resolves ``tta_level`` 0."""
    if req.tta_level == 0:
        req = replace(req, tta_level=limits.auto_tta_level(header.pixels, req.scale))
    limit = limits.max_pixels(req.scale, req.tta_level)
    if limit is not None and header.pixels > limit:
        what = "noise reduction" if req.scale < 0 else f"scale {req.scale}"
        tta = f" with TTA level {req.tta_level}" if req.tta_level > 1 else ""
        raise too_large(f"The image has {header.width}x{header.height} = {header.pixels} "
                        f"pixels; {what}{tta} takes at most {limit} pixels. Use a smaller "
                        "image or a lower TTA level.")
    return req


class Engine:
    """Converts images with models loaded once per (style, mode) and shared by workers.

    ``styles`` maps the names the API accepts to model folders (``<arch>/<style>`` under
    the model roots, as ``--style`` of the CLI); ``model_dir`` is a search root holding
    that tree (default: W2X_MODEL_DIR and the user cache, see w2x.store).
    """

    def __init__(self, styles: dict[str, str] | None = None, *, backend: str = "auto",
                 tile_size: int | None = None):
        self.styles = dict(styles or STYLES)
        self.backend = backend
        self.tile_size = tile_size
        self._plans: dict[tuple[str, str, int, int], dict] = {}
        self._lock = threading.Lock()

    def options(self, req: ConvertRequest) -> Options:
        kw = {} if self.tile_size is None else {"tile_size": self.tile_size}
        return Options(mode=req.mode, noise_level=max(req.noise, 0),
                       style=self.styles[req.style], tta_level=req.tta_level,
                       backend=self.backend, **kw)

    def plans(self, opts: Options) -> dict:
        """The models for ``opts``, loaded on first use (pipeline.resolve_plans), then shared."""
        key = (opts.style, opts.mode, opts.noise_level)        # plans do not depend on TTA
        with self._lock:
            if key not in self._plans:
                self._plans[key] = pipeline.resolve_plans(opts)
            return self._plans[key]

    def convert(self, data: bytes, req: ConvertRequest, limits: Limits,
                progress: ProgressFn | None = None) -> Result:
        """Convert encoded ``data``; ``req.tta_level`` must be resolved (not 0).

        Raises WebError 400/413/415 for bad input; exceptions raised by ``progress``
        (cancellation) propagate.
        """
        header = probe(data)
        req = check_size(header, req, limits)
        with tempfile.TemporaryDirectory(prefix="w2x-web-") as tmp:
            src = Path(tmp) / "input"
            src.write_bytes(data)
            try:
                pic = read_image(src, max_pixels=limits.max_pixels(req.scale, req.tta_level))
            except ImageReadError as e:
                reason = str(e).split(": ", 1)[-1]
                raise bad_field(f"The {header.format} image could not be decoded ({reason}).") from None
            rgb, alpha = pic.rgb, pic.alpha
            if req.mode is not None:
                opts = self.options(req)
                plans = self.plans(opts)
                target = anyscale.Target(req.factor)
                counter = None
                if progress is not None:                # one count over every pass of the image
                    counter = FileTiles(lambda p: progress(p.file_done, p.file_total))
                    counter.planned(count_tiles(*rgb.shape[1:], alpha is not None, opts, target, plans))
                rgb, alpha = pipeline.convert_planes(rgb, alpha, opts, target, filter=SINC_FILTER,
                                                     plans=plans, progress=counter)
            dst = Path(tmp) / f"output.{req.format}"
            write_image(dst, rgb, alpha, pic.meta, depth=OUTPUT_DEPTH)
            return Result(dst.read_bytes(), req.media_type, rgb.shape[2], rgb.shape[1])


def model_error(e: Exception) -> WebError:
    """A missing model is the server's fault: 500 with what to install."""
    return WebError(500, f"The server is missing a model ({e}). Ask its operator to run "
                         "`w2x models download`.")
