"""Training stage: the loss / validation-PSNR chart per pass, drawn with Pillow."""
from __future__ import annotations

from PIL import Image, ImageDraw

from w2x.atomic import replacing

WIDTH, HEIGHT, MARGIN = 640, 480, 48


def _panel(draw, box, values, title, colour):
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    lo, hi = min(values), max(values)
    draw.text((x0 + 4, y0 - 14), f"{title}  (min {lo:.5g}, max {hi:.5g})", fill=(0, 0, 0))
    span = (hi - lo) or 1.0
    n = len(values)
    pts = [(x0 + (x1 - x0) * (i / max(n - 1, 1)), y1 - (y1 - y0) * (v - lo) / span)
           for i, v in enumerate(values)]
    if n > 1:
        draw.line(pts, fill=colour, width=2)
    for px, py in pts:
        draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)


def draw_history(path, losses: list[float], psnrs: list[float]) -> None:
    """Two panels, training loss and validation PSNR against the pass number; PNG, atomic."""
    im = Image.new("RGB", (WIDTH, HEIGHT), "white")
    d = ImageDraw.Draw(im)
    mid = HEIGHT // 2
    if losses:
        _panel(d, (MARGIN, MARGIN, WIDTH - MARGIN // 2, mid - MARGIN // 2), losses, "training loss", (200, 40, 40))
        _panel(d, (MARGIN, mid + MARGIN // 2, WIDTH - MARGIN // 2, HEIGHT - MARGIN), psnrs,
               "validation PSNR (dB)", (40, 90, 200))
    d.text((MARGIN, HEIGHT - MARGIN + 16), f"pass 1 .. {len(losses)}", fill=(0, 0, 0))
    with replacing(path) as f:
        im.save(f, "PNG")
