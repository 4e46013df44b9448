"""The 30-file batch of the CLI's and the cluster's must-show tests (tests only): 28 crops of
the shared images (PNG with and without alpha, JPEG, in two folders) and 2 broken files."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from conftest import IMAGES

SOURCES = ["miku_small.png", "miku_small_noisy.png", "lena.png", "city.jpg", "tone.png",
           "neko_alpha.png", "miku_noisy.png"]
CROP = 24
BROKEN = ("broken_empty.png", "broken_truncated.png")


def make_thirty_inputs(src: Path) -> None:
    """Write the 30 files under ``src`` (which must not exist yet)."""
    (src / "more").mkdir(parents=True)
    for k in range(28):
        im = Image.open(IMAGES / SOURCES[k % len(SOURCES)])
        x, y = (k * 7) % (im.width - CROP), (k * 5) % (im.height - CROP)
        crop = im.crop((x, y, x + CROP, y + CROP))
        folder = src / "more" if k % 4 == 3 else src
        if k % 2:
            crop.convert("RGB").save(folder / f"img{k:02d}.jpg", quality=90)
        else:
            crop.save(folder / f"img{k:02d}.png")
    (src / BROKEN[0]).write_bytes(b"")                                          # zero bytes
    whole = (src / "img00.png").read_bytes()
    (src / BROKEN[1]).write_bytes(whole[:len(whole) // 2])                      # cut in half
