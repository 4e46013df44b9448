"""Print the parity figures against the independent fixtures in ../shared/reference.

    python tools/parity.py                      # numpy and numba
    python tools/parity.py --backends numba

For each backend: the largest |w2x - fixture| of every network forward pass; for every
whole-image fixture, converted through the CLI as tests/test_parity.py does, the largest
difference in 8-bit levels and the share of values that differ; and the PSNR against the
original waifu2x's own output.  tests/test_parity.py asserts the same with tolerances.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from w2x import load_model  # noqa: E402  (after the path fix above)
from w2x.cli.main import main as cli_main  # noqa: E402

SHARED = ROOT.parent / "shared"


def _mode_args(model: str) -> list[str]:
    """``-m MODE [-n N]`` for a fixture's model file name (noise2_model, scale2.0x_model ...)."""
    name = model.rsplit("/", 1)[1].split(".json")[0]
    mode = "noise_scale" if "noise" in name and "scale" in name else "noise" if "noise" in name else "scale"
    return ["-m", mode] + (["-n", name[len("noise")]] if "noise" in name else [])


def _cli_image(args: list[str], out: Path) -> np.ndarray:
    assert cli_main([*args, "-o", str(out), "-q"]) == 0, args
    return np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)


def report(backend: str, shared: Path) -> None:
    reference, weights, images = shared / "reference", shared / "weights", shared / "images"
    manifest = json.loads((reference / "manifest.json").read_text())
    print(f"## {backend}\n\n| fixture | measured |\n|---|---|")
    for entry in manifest["network"]:
        ref = np.load(reference / entry["file"])
        y = load_model(weights / entry["model"]).forward(ref["input"], backend)
        print(f"| {entry['file']} | max abs diff {np.abs(y - ref['output']).max():.1e} |")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        for entry in manifest["pipeline"]:
            got = _cli_image(["-i", str(images / entry["image"]), *_mode_args(entry["model"]),
                              "--model-dir", str((weights / entry["model"]).parent),
                              "--tile-size", str(entry["block_size"]), "--backend", backend], out)
            diff = np.abs(got - np.asarray(Image.open(reference / entry["file"]).convert("RGB"), np.int16))
            print(f"| {entry['file']} | max {diff.max()} level(s), on {100 * (diff > 0).mean():.4f}% of values |")
        got = _cli_image(["-i", str(images / "miku_small.png"), "-m", "scale", "--backend", backend,
                          "--model-dir", str(weights / "cunet" / "art")], out).astype(np.float64)
        ref = np.asarray(Image.open(reference / "original" / "miku_small.cunet-art-scale2.0x.png")
                         .convert("RGB"), np.float64)
        psnr = 10 * np.log10(255.0 ** 2 / np.mean((got - ref) ** 2))
        print(f"| original waifu2x miku_small.cunet-art-scale2.0x.png | {psnr:.2f} dB PSNR |\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="numpy,numba")
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (default ../shared)")
    args = ap.parse_args(argv)
    if not (args.shared / "reference" / "manifest.json").is_file():
        print(f"parity: no fixtures at {args.shared}/reference; give --shared", file=sys.stderr)
        return 2
    for backend in args.backends.split(","):
        report(backend, args.shared)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
