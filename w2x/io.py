"""Image files in and out: the only modules that import Pillow and pypng.

Reading (`read_image`, `read_frames`) lives in `w2x.io_read`, writing (`write_image`,
`write_frames`, `quantize`) in `w2x.io_write`; this module is the one to import.
"""
from .io_read import (
    DEFAULT_MAX_PIXELS,
    Animation,
    ImageMeta,
    ImageReadError,
    Picture,
    read_frames,
    read_image,
)
from .io_write import CLIP_EPS8, CLIP_EPS16, ImageWriteError, quantize, write_frames, write_image

__all__ = [
    "CLIP_EPS8", "CLIP_EPS16", "DEFAULT_MAX_PIXELS", "Animation", "ImageMeta",
    "ImageReadError", "ImageWriteError", "Picture", "quantize", "read_frames", "read_image",
    "write_frames", "write_image",
]
