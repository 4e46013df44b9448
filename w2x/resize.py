"""GraphicsMagick-exact image resize (the benchmark's "bicubic" and its low-resolution input).

The original waifu2x resizes through GraphicsMagick (`iproc.scale`, lib/iproc.lua:51-67):
the float tensor enters GM as 16-bit quanta, `ResizeImage` (magick/resize.c) runs two 1-D
filter passes, each rounded back to 16-bit, and the result leaves as float again. This module
reproduces that arithmetic bit for bit for the filters waifu2x uses, so the PSNR benchmark
(`w2x.psnr`) sees the same low-resolution inputs and bicubic baselines as the published
table, and Y models get the original's Lanczos chroma (`w2x.reconstruct.upscale2x`, scale_y). The
Box pre-upscale of vgg_7 is plain pixel replication (`reconstruct.gather_tile`), which is what
GM's Box gives at an integer factor (see `filter_taps`).

Each 1-D pass is a table of taps per output sample, ``index (out, taps)`` and
``weight (out, taps)`` -- the rows of the sparse (out, in) weight matrix -- applied tap by tap
in the order GM sums them, so that the float64 sums (and hence every 16-bit rounding) match.
(A BLAS matmul with the same weights sums in another order: on 30 BSD100 images it rounded
386 of 17.3 million samples differently from GM.)
"""
import math

import numpy as np

# GraphicsMagick Q16 build (Debian/Ubuntu packages, debian/rules `--with-quantum-depth=16`).
MAX_RGB_Q16 = 65535
# magick/studio.h: `#define MagickEpsilon 1.0e-12`; widens the point-sampling support.
MAGICK_EPSILON = 1.0e-12
# resize.c HorizontalFilter/VerticalFilter: below this support GM falls back to point sampling.
POINT_SAMPLING_SUPPORT = 0.5

# np.vectorize over math.sin (C libm), not np.sin: NumPy may dispatch float64 sin to a SIMD
# routine that differs from glibc in the last bit, and Sinc/Lanczos weights must match GM's.
_libm_sin = np.vectorize(math.sin, otypes=[np.float64])
_libm_cos = np.vectorize(math.cos, otypes=[np.float64])


def _sinc(x):
    """resize.c Sinc: sin(pi x)/(pi x), 1 at 0."""
    px = math.pi * x
    safe = np.where(x == 0.0, 1.0, px)
    return np.where(x == 0.0, 1.0, _libm_sin(safe) / safe)


def _box(x):
    """resize.c Box: 1 on [-0.5, 0.5), else 0."""
    return np.where((x >= -0.5) & (x < 0.5), 1.0, 0.0)


def _triangle(x):
    """resize.c Triangle: 1 - |x| on (-1, 1)."""
    return np.select([x < -1.0, x < 0.0, x < 1.0], [0.0, 1.0 + x, 1.0 - x], 0.0)


def _hermite(x):
    """resize.c Hermite: (2|x| - 3) x^2 + 1 on (-1, 1)."""
    return np.select([x < -1.0, x < 0.0, x < 1.0],
                     [0.0, (2.0 * (-x) - 3.0) * (-x) * (-x) + 1.0, (2.0 * x - 3.0) * x * x + 1.0],
                     0.0)


def _catrom(x):
    """resize.c Catrom: Keys cubic with a = -0.5 (Catmull-Rom), support 2."""
    return np.select(
        [x < -2.0, x < -1.0, x < 0.0, x < 1.0, x < 2.0],
        [0.0,
         0.5 * (4.0 + x * (8.0 + x * (5.0 + x))),
         0.5 * (2.0 + x * x * (-5.0 - 3.0 * x)),
         0.5 * (2.0 + x * x * (-5.0 + 3.0 * x)),
         0.5 * (4.0 + x * (-8.0 + x * (5.0 - x)))],
        0.0)


# resize.c Mitchell: B = C = 1/3 piecewise-cubic coefficients, spelled as GM's macros.
_B = _C = 1.0 / 3.0
_P0 = (6.0 - 2.0 * _B) / 6.0
_P2 = (-18.0 + 12.0 * _B + 6.0 * _C) / 6.0
_P3 = (12.0 - 9.0 * _B - 6.0 * _C) / 6.0
_Q0 = (8.0 * _B + 24.0 * _C) / 6.0
_Q1 = (-12.0 * _B - 48.0 * _C) / 6.0
_Q2 = (6.0 * _B + 30.0 * _C) / 6.0
_Q3 = (-1.0 * _B - 6.0 * _C) / 6.0


def _mitchell(x):
    """resize.c Mitchell-Netravali, B = C = 1/3, support 2."""
    return np.select(
        [x < -2.0, x < -1.0, x < 0.0, x < 1.0, x < 2.0],
        [0.0,
         _Q0 - x * (_Q1 - x * (_Q2 - x * _Q3)),
         _P0 + x * x * (_P2 - x * _P3),
         _P0 + x * x * (_P2 + x * _P3),
         _Q0 + x * (_Q1 + x * (_Q2 + x * _Q3))],
        0.0)


def _lanczos(x):
    """resize.c Lanczos: sinc(x) sinc(x/3) on [-3, 3) (GM's test is x < -3, then x < 3)."""
    ax = np.abs(x)  # GM evaluates the x < 0 branch as Sinc(-x)*Sinc(-x/3.0): same value
    return np.where((x >= -3.0) & (x < 3.0), _sinc(ax) * _sinc(ax / 3.0), 0.0)


def _blackman_sinc(x, support=4.0):
    """resize.c BlackmanSinc (GM's "Sinc" filter): Blackman(x/4) * sinc(x), unclipped."""
    t = x / support
    blackman = 0.42 + 0.5 * _libm_cos(math.pi * t) + 0.08 * _libm_cos(2 * math.pi * t)
    return blackman * _sinc(x)


# resize.c ResizeImage `filters[]` table: name -> (function, support). GM's "Sinc" is the
# Blackman-windowed sinc (BlackmanSinc, 4.0); its window is not clipped at the support, the
# support alone bounds the taps.
FILTERS = {
    "box": (_box, 0.5),
    "triangle": (_triangle, 1.0),
    "hermite": (_hermite, 1.0),
    "catrom": (_catrom, 2.0),
    "mitchell": (_mitchell, 2.0),
    "lanczos": (_lanczos, 3.0),
    "sinc": (_blackman_sinc, 4.0),
}


def filter_taps(n_in, n_out, filter="catrom", blur=1.0):
    """Contributions of one GM resize pass, as a padded sparse (n_out, n_in) matrix.

    Parameters
    ----------
    n_in, n_out : int
        Source and destination length along the axis.
    filter : str
        A key of `FILTERS` (case-insensitive).
    blur : float
        GM's blur factor (> 1 blurrier); waifu2x always passes 1.0.

    Returns
    -------
    index : ndarray of intp, shape (n_out, taps)
        Source sample of each tap; padding taps repeat a valid index.
    weight : ndarray of float64, shape (n_out, taps)
        Normalised weight of each tap, 0 on padding taps (which come last, so adding them
        leaves GM's sums unchanged).

    Notes
    -----
    resize.c HorizontalFilter/VerticalFilter (GM 1.3.x)::

        factor = n_out / n_in;  scale = blur * max(1/factor, 1);  support = scale * filter.support
        if support <= 0.5:  support = 0.5 + MagickEpsilon;  scale = 1      # point sampling
        center = (x + 0.5) / factor
        start = (long) max(center - support + 0.5, 0);  stop = (long) min(center + support + 0.5, n_in)
        weight[n] = filter((start + n - center + 0.5) * (1/scale)),  n < stop - start
        if sum != 0 and sum != 1:  weight *= 1/sum

    Taps falling outside the image are dropped and the rest renormalised (no edge
    replication). The point-sampling branch is what makes a Box upscale (support
    0.5 * max(1/factor, 1) = 0.5) a nearest-neighbour copy: each output takes the one
    source sample whose [-0.5, 0.5) box contains its centre, so an integer 2x Box is pixel
    replication (reconstruct.lua:191-192, waifu2x issue #13).
    """
    key = filter.lower()
    if key not in FILTERS:
        raise ValueError(f"unknown resize filter {filter!r}; expected one of {sorted(FILTERS)}")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"resize lengths must be >= 1, got {n_in} -> {n_out}")
    if not blur > 0:
        raise ValueError(f"blur must be > 0, got {blur}")
    function, filter_support = FILTERS[key]
    factor = n_out / n_in
    scale = blur * max(1.0 / factor, 1.0)
    support = scale * filter_support
    if support <= POINT_SAMPLING_SUPPORT:
        support = POINT_SAMPLING_SUPPORT + MAGICK_EPSILON
        scale = 1.0
    inv_scale = 1.0 / scale

    center = (np.arange(n_out) + 0.5) / factor                        # (n_out,)
    # C's (long) cast truncates; both bounds are >= 0 here, so floor is the same.
    start = np.floor(np.maximum(center - support + 0.5, 0.0)).astype(np.intp)
    stop = np.floor(np.minimum(center + support + 0.5, n_in)).astype(np.intp)
    count = stop - start                                              # (n_out,), >= 1
    taps = int(count.max())
    n = np.arange(taps)                                               # (taps,)
    index = start[:, None] + n[None, :]                               # (n_out, taps)
    valid = n[None, :] < count[:, None]                               # (n_out, taps)
    # Same operation order as resize.c: ((double) start + n - center + 0.5) * scale.
    x = ((index.astype(np.float64) - center[:, None]) + 0.5) * inv_scale
    weight = np.where(valid, function(x), 0.0)                        # (n_out, taps)
    density = np.zeros(n_out)
    for t in range(taps):                                             # GM sums taps in order
        density += weight[:, t]
    renorm = (density != 0.0) & (density != 1.0)
    weight[renorm] *= (1.0 / density[renorm])[:, None]                # GM multiplies by 1/sum
    index = np.where(valid, index, start[:, None])
    return index, weight


def _round_to_quantum(v, max_rgb):
    """magick/image.h RoundDoubleToQuantum: clamp to [0, MaxRGB], add 0.5, truncate."""
    return np.floor(np.clip(v, 0.0, max_rgb) + 0.5)


def _filter_axis(q, index, weight, axis):
    """One resize pass along `axis` of q (C, H, W) float64, summing taps in GM's order."""
    out = None
    for t in range(index.shape[1]):
        shape = [1, 1, 1]
        shape[axis] = -1
        term = weight[:, t].reshape(shape) * np.take(q, index[:, t], axis=axis)
        out = term if out is None else out + term
    return out


def gm_resize(x, out_h, out_w, filter="catrom", blur=1.0, quantum=MAX_RGB_Q16):
    """Resize a float image exactly as GraphicsMagick `ResizeImage` does through waifu2x.

    Parameters
    ----------
    x : ndarray, shape (C, H, W)
        Float image in [0, 1] (converted to float32 first, as the Torch tensor was).
    out_h, out_w : int
        Output size.
    filter : str
        GM filter name: ``"catrom"`` (the benchmark's bicubic), ``"box"``, ``"lanczos"``,
        ``"sinc"``, ``"triangle"``, ``"hermite"``, ``"mitchell"``.
    blur : float
        GM blur factor; 1.0 everywhere in waifu2x.
    quantum : int or None
        GM's MaxRGB: 65535 for the Q16 build the original ran on (255 for Q8). The input
        enters as ``RoundDoubleToQuantum(MaxRGB * x)``, and each 1-D pass is rounded the
        same way. None skips every rounding (float64 throughout).

    Returns
    -------
    ndarray of float32, shape (C, out_h, out_w)
        ``(float)(quantum / MaxRGB)``, as GM's `toTensor("float")` exports it.

    Raises
    ------
    ValueError
        If `x` is not 3-D, a size is not positive, or the filter or blur is invalid.

    Notes
    -----
    Reproduces nagadomi/waifu2x lib/iproc.lua:51-67 (`iproc.scale` on a float tensor) with
    GraphicsMagick 1.3.x magick/resize.c `ResizeImage` (see `filter_taps`), constitute.c
    float import/export, on an opaque RGB image. Pass order follows resize.c: horizontal first
    iff ``out_w * (H + out_h) > out_h * (W + out_w)``, else vertical first (so an exact 2x or
    0.5x runs vertically first). Same size with ``blur == 1`` is returned unfiltered.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"gm_resize expects a (C, H, W) image, got shape {x.shape}")
    _, in_h, in_w = x.shape
    if int(out_h) != out_h or int(out_w) != out_w or out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive integers, got {out_h}x{out_w}")
    out_h, out_w = int(out_h), int(out_w)
    y_taps = filter_taps(in_h, out_h, filter, blur)
    x_taps = filter_taps(in_w, out_w, filter, blur)

    q = x.astype(np.float32).astype(np.float64)                       # (C, H, W)
    if quantum is not None:
        q = _round_to_quantum(quantum * q, quantum)                   # constitute.c FloatPixel import
    if (out_h, out_w) != (in_h, in_w) or blur != 1.0:
        horizontal_first = out_w * (in_h + out_h) > out_h * (in_w + out_w)  # resize.c `order`
        passes = [(x_taps, 2), (y_taps, 1)] if horizontal_first else [(y_taps, 1), (x_taps, 2)]
        for (index, weight), axis in passes:
            q = _filter_axis(q, index, weight, axis)
            if quantum is not None:
                q = _round_to_quantum(q, quantum)                     # stored as Quantum
    if quantum is not None:
        q = q / quantum                                               # constitute.c FloatPixel export
    return q.astype(np.float32)
