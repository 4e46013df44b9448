"""Start-up: a plain ``w2x -i a.png -o b.png`` imports only what converting a picture needs.

Each case runs the command line in a fresh interpreter and reads ``sys.modules`` at its end.
The time these imports take is measured by ``tools/speed_process.py`` (start-up breakdown)
and ``python3 -X importtime -m w2x ...``, never asserted here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# Modules (and their submodules) a plain conversion must not import: the other commands'
# (downloads, PSNR, training, web server, Dask), progress bars without a terminal, the
# platform cache-folder lookup where $W2X_CACHE_DIR names it
# (as in the tests), and the Pillow plugins of formats not read or written.
NOT_FOR_A_PLAIN_RUN = (
    "w2x.web", "w2x.train", "w2x.download", "w2x.psnr", "w2x.cli.models", "w2x.cli.psnr",
    "w2x.cli.train", "w2x.distributed.batch", "w2x.distributed.chunks", "w2x.distributed.cluster",
    "dask", "distributed", "starlette", "uvicorn", "httpx", "urllib.request", "http.client",
    "tqdm", "platformdirs", "threadpoolctl",
    "PIL.ImageDraw", "PIL.ImageFont", "PIL.WebPImagePlugin", "PIL.TiffImagePlugin",
)
# scipy.linalg: Numba's target imports it to check for BLAS, which the command line keeps it
# from doing (w2x.cli.machine.start_numba).
NOT_FOR_A_PLAIN_RUN += ("scipy.linalg",)
# Only the numpy backend can do without these: Numba itself imports SciPy's package (its
# version check, numba/__init__.py), PyYAML (numba/core/config.py) and the installed
# packages' metadata (its extension entry points, numba/core/entrypoints.py).
NOT_WITHOUT_NUMBA = ("numba", "llvmlite", "scipy", "yaml", "importlib.metadata")

_CHILD = """
import json, sys
from w2x.cli.main import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


def _modules_of_a_run(tmp_path: Path, *options: str) -> list[str]:
    src, dst = tmp_path / "a.png", tmp_path / "b.png"
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(src)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("W2X_BACKEND", None)
    run = subprocess.run([sys.executable, "-c", _CHILD, "-i", str(src), "-o", str(dst), "-q",
                          "--style", "upconv_7/art", "-m", "scale", *options],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.splitlines()[-1])
    assert found["rc"] == 0 and dst.is_file()
    return found["modules"]


def _unneeded(modules: list[str], names) -> list[str]:
    return [m for m in modules if any(m == n or m.startswith(n + ".") for n in names)]


@pytest.mark.slow
def test_a_plain_run_on_numpy_imports_nothing_it_does_not_need(tmp_path):
    modules = _modules_of_a_run(tmp_path, "--backend", "numpy")
    assert _unneeded(modules, NOT_FOR_A_PLAIN_RUN + NOT_WITHOUT_NUMBA) == []


@pytest.mark.slow
def test_a_plain_run_on_numba_imports_nothing_it_does_not_need(tmp_path):
    pytest.importorskip("numba")
    modules = _modules_of_a_run(tmp_path, "--backend", "numba")
    assert "w2x.kernels.cpu_numba" in modules
    assert _unneeded(modules, NOT_FOR_A_PLAIN_RUN) == []
