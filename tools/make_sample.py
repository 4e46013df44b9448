"""Draw docs/sample.jpg, the picture the README's first command upscales.

The project makes it itself, so it carries no licence of anyone else's: flat colours with
dark outlines, a gradient, thin lines and small text, the kind of picture waifu2x is for,
saved as a JPEG at quality 70 so that noise removal has visible work to do.  Deterministic:

    python tools/make_sample.py            # writes docs/sample.jpg
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = (192, 144)
JPEG_QUALITY = 70       # enough 8x8 blocking and ringing for -n 1 to remove
OUTLINE = (40, 30, 50)


def draw() -> Image.Image:
    im = Image.new("RGB", SIZE)
    d = ImageDraw.Draw(im)
    w, h = SIZE
    for y in range(h):                                        # sky: a vertical gradient
        t = y / (h - 1)
        d.line([(0, y), (w, y)], fill=(int(120 + 100 * t), int(170 + 60 * t), 235))
    d.ellipse([140, 14, 176, 50], fill=(255, 214, 90), outline=OUTLINE, width=2)          # sun
    d.polygon([(0, 110), (50, 60), (100, 110)], fill=(90, 150, 110), outline=OUTLINE)     # hills
    d.polygon([(60, 110), (120, 50), (192, 110)], fill=(70, 130, 100), outline=OUTLINE)
    d.rectangle([0, 110, w, h], fill=(230, 200, 160), outline=OUTLINE)                    # ground
    d.ellipse([30, 78, 86, 134], fill=(250, 225, 205), outline=OUTLINE, width=2)          # a face
    for x in (47, 66):
        d.ellipse([x - 5, 98, x + 5, 110], fill=(60, 90, 170), outline=OUTLINE, width=2)  # eyes
        d.ellipse([x - 2, 100, x + 1, 104], fill=(255, 255, 255))
    d.arc([50, 112, 64, 122], 20, 160, fill=(180, 60, 70), width=2)                       # mouth
    d.pieslice([24, 66, 92, 108], 180, 360, fill=(120, 70, 60), outline=OUTLINE, width=2)  # hair
    for i in range(8):                                                                    # fine lines
        d.line([(110 + 8 * i, 118), (118 + 8 * i, 140)], fill=OUTLINE, width=1)
    d.text((104, 124), "w2x", fill=OUTLINE)
    return im


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "sample.jpg")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw().save(args.out, quality=JPEG_QUALITY, subsampling=2, optimize=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
