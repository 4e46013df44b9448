"""Shared pieces of the web tests: a fast server config, small test images, the CLI."""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import IMAGES, MODEL_DIR

# upconv_7 / vgg_7 instead of cunet for "art": the same code path, ~20x faster on a CPU.
FAST_STYLES = {"art": "upconv_7/art", "photo": "upconv_7/photo"}
MIKU = IMAGES / "miku_small.png"
POLL_S = 0.02
POLL_LIMIT_S = 60


def have_shared() -> bool:
    return MIKU.exists() and (MODEL_DIR / "upconv_7" / "art").is_dir()


def crop_png(box=(90, 50, 130, 82), mode: str | None = None, fmt: str = "PNG", **save) -> bytes:
    """A crop of miku_small.png (opaque in the default box) encoded as ``fmt``."""
    im = Image.open(MIKU).crop(box)
    if mode:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def cli_convert(tmp: Path, data: bytes, style_dir: str, noise: int, scale: int, tta: int,
                name: str = "in.png") -> np.ndarray:
    """The same conversion through the command line (w2x.cli.main), as an array."""
    from w2x.cli.main import main
    src, dst = tmp / name, tmp / f"cli_{noise}_{scale}_{tta}.png"
    src.write_bytes(data)
    mode = ("noise_scale" if noise >= 0 else "scale") if scale > 0 else "noise"
    factor = {1: "1.6", 2: "2", 4: "4"}.get(scale, "1")
    argv = ["-i", str(src), "-o", str(dst), "-m", mode, "--style", style_dir, "-s", factor,
            "--downscale-filter", "sinc", "--tta-level", str(tta), "--progress", "none", "-q"]
    if noise >= 0:
        argv += ["-n", str(noise)]
    assert main(argv) == 0
    return np.asarray(Image.open(dst))


def wait_job(client, job_id: str, states=("done", "failed", "cancelled")) -> dict:
    t = time.monotonic()
    while time.monotonic() - t < POLL_LIMIT_S:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(POLL_S)
    raise AssertionError(f"job {job_id} did not reach {states}: {status}")
