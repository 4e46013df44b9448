"""Any scale factor or target size: how many 2x passes, and the final resize (convert stage).

The released models only double (``scale2.0x_model``), so the original CLI fails for any
other ``-scale`` (nagadomi/waifu2x#118, waifu2x.lua:76 ``scale%.1fx``). w2x does what the
peers do and the author recommends (#275; docs/waifu2x-reference.md §1.7):

    image --[denoise +] 2x--> --2x--> ... (k passes) --resize (filter)--> target size

* ``k`` is the fewest passes that reach the target: ``ceil(log2 s)`` for ``--scale s``
  (one pass fewer when rounding the target size already fits, e.g. 10 px at 2.01x);
* the noise (or fused noise_scale) model runs in the first pass only, as waifu2x-caffe
  (``waifu2x.cpp:950-958``) and unlike ncnn, which denoises again every pass;
* alpha goes through the same passes (upscaled by the scale model) and the same final
  resize (``pipeline.convert_planes`` runs the passes);
* the final resize is Lanczos by default (waifu2x-chainer); ``box``, ``bicubic``, ``area``
  and ``sinc`` (the original web server's 1.6x = 2x + GraphicsMagick Sinc, web.lua:350)
  are the alternatives. Factors at or below 1 run no 2x pass: noise modes still denoise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from w2x.resize import gm_resize

PASS_FACTOR = 2   # every released model doubles (scale2.0x_model)

# Pillow resamplers, run per channel on float32 ("F" mode) images: no 8-bit rounding.
# Pillow's bicubic is Keys' cubic with a = -0.5 (OpenCV's INTER_CUBIC uses -0.75).
_PILLOW_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
                   "box": Image.Resampling.BOX}
FILTERS = ("lanczos", "bicubic", "box", "area", "sinc")
DEFAULT_FILTER = "lanczos"


@dataclass(frozen=True)
class Target:
    """The output size asked for: a factor, or a width and/or height in pixels.

    ``width`` or ``height`` alone keeps the aspect ratio; both give the largest size that
    fits inside ``width`` x ``height`` with the aspect kept (waifu2x-chainer ``-W/-H``,
    waifu2x-caffe ``-w/-h``). With neither, ``scale`` applies (2, as ``-scale 2``).
    """
    scale: float = 2.0
    width: int | None = None
    height: int | None = None

    def __post_init__(self):
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be a positive number, got {self.scale!r}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be a positive number of pixels, got {v!r}")

    @property
    def is_identity(self) -> bool:
        """True when no resize is asked for (scale 1, no width or height)."""
        return self.width is None and self.height is None and self.scale == 1

    def size(self, h: int, w: int) -> tuple[int, int]:
        """Output ``(rows, columns)`` for an ``h`` x ``w`` input; each side at least 1."""
        if self.width is None and self.height is None:
            return _round_px(h * self.scale), _round_px(w * self.scale)
        fx = math.inf if self.width is None else self.width / w
        fy = math.inf if self.height is None else self.height / h
        if fx <= fy:                                   # width is the binding side
            return min(_round_px(h * fx), self.height or math.inf), self.width
        return self.height, min(_round_px(w * fy), self.width or math.inf)


def _round_px(v: float) -> int:
    return max(1, math.floor(v + 0.5))                 # half up, never 0


def count_passes(h: int, w: int, out_h: int, out_w: int) -> int:
    """Fewest 2x passes after which an ``h`` x ``w`` image covers ``out_h`` x ``out_w``."""
    k = 0
    while h * PASS_FACTOR ** k < out_h or w * PASS_FACTOR ** k < out_w:
        k += 1
    return k


def check_target(mode: str, target: Target) -> None:
    """Raise ValueError when ``mode`` cannot produce ``target``: ``noise`` is 1x only."""
    if mode == "noise" and not target.is_identity:
        raise ValueError("-m noise denoises at 1x and does not scale; use -m noise_scale "
                         "with --scale/--width/--height")


def pass_modes(mode: str, passes: int) -> list[str]:
    """The pipeline mode of each pass: noise only in the first (waifu2x-caffe's rule).

    ``noise`` mode is one 1x pass (``passes`` must be 0); with no 2x pass, ``noise_scale``
    denoises at 1x and ``scale`` runs no model at all.
    """
    if mode == "noise":
        check_target(mode, Target(PASS_FACTOR ** passes))
        return ["noise"]
    if passes == 0:
        return ["noise"] if mode == "noise_scale" else []
    return [mode] + ["scale"] * (passes - 1)


def resize(x: np.ndarray, out_h: int, out_w: int, filter: str = DEFAULT_FILTER) -> np.ndarray:
    """Resize float planes, (C, H, W) -> (C, out_h, out_w), clipped to [0, 1].

    ``lanczos`` (a = 3), ``bicubic`` and ``box`` are Pillow's resamplers on float32 planes
    (they widen with the shrink factor, so they antialias); ``area`` is the exact
    area-weighted mean of the input pixels under each output pixel (OpenCV's INTER_AREA
    when shrinking; see ``_area_axis``); ``sinc`` is GraphicsMagick's Blackman-windowed
    Sinc, bit-exact through ``resize.gm_resize`` (web.lua:350 ``iproc.scale(.., "Sinc")``).
    """
    if filter == "sinc":
        y = gm_resize(x, out_h, out_w, "sinc")
    elif filter == "area":
        y = _area_axis(_area_axis(np.asarray(x, np.float64), out_h, axis=1), out_w, axis=2)
    elif filter in _PILLOW_FILTERS:
        f = _PILLOW_FILTERS[filter]
        y = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(c, np.float32))
                                 .resize((out_w, out_h), f)) for c in x])   # C x (out_h, out_w)
    else:
        raise ValueError(f"downscale filter must be one of {', '.join(FILTERS)}, got {filter!r}")
    return np.clip(y, 0, 1).astype(np.float32)


def _area_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Area-average one axis to ``n_out`` samples.

    Output sample i covers input span [i*r, (i+1)*r), r = n_in / n_out, and is the mean of
    the input over that span, pixels taken as constant over their unit cells. The running
    sum S (S[j] = sum of the first j pixels) is piecewise linear in the position, so the
    integral over a span is S interpolated at its two ends: exact, O(n).
    """
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    zero = np.zeros_like(np.take(x, [0], axis=axis))
    s = np.concatenate([zero, np.cumsum(x, axis=axis)], axis=axis)   # (.., n_in + 1, ..)
    edges = np.arange(n_out + 1) * (n_in / n_out)                    # span ends, input px
    j = np.minimum(np.floor(edges).astype(np.int64), n_in - 1)      # cell holding each end
    frac = edges - j                                                 # in [0, 1]
    shape = [1] * x.ndim
    shape[axis] = n_out + 1
    at = (np.take(s, j, axis=axis) * (1 - frac).reshape(shape)
          + np.take(s, j + 1, axis=axis) * frac.reshape(shape))     # S at the span ends
    return np.diff(at, axis=axis) * (n_out / n_in)
