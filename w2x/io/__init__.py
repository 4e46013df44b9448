"""Image files in and out (stages 1 and 3), through Pillow and pypng.

Reading (`read_image`, `read_frames`) lives in `w2x.io.read`, writing (`write_image`,
`write_frames`) in `w2x.io.write`, the ICC colour-profile conversions both use in
`w2x.io.icc`; the float -> integer rounding they share is `w2x.color.quantize`. (Other
stages use Pillow too: its resamplers in anyscale, its decoder in psnr.)
"""
from w2x.io.read import (
    DEFAULT_MAX_PIXELS,
    Animation,
    ImageMeta,
    ImageReadError,
    Picture,
    read_frames,
    read_image,
)
from w2x.io.write import ImageWriteError, write_frames, write_image

__all__ = [
    "DEFAULT_MAX_PIXELS", "Animation", "ImageMeta",
    "ImageReadError", "ImageWriteError", "Picture", "read_frames", "read_image",
    "write_frames", "write_image",
]
