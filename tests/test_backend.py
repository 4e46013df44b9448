"""The backend switch (``w2x/nn/backend.py``): names, "auto", missing packages, kernels found
from a plain checkout, and that every backend runs the real networks to the numpy result."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import IMAGES, MODEL_DIR, available_backends
from w2x import load_model
from w2x.nn import ops
from w2x.nn.backend import Backend, BackendUnavailableError, get_backend

PRIMITIVES = ("im2col", "col2im", "bias_leaky_relu", "channel_mean", "se_scale", "crop_add",
              "matmul", "to_device", "to_host")
# Whole networks, float32 in another summation order (and Winograd on numba): the parity
# tests allow 1e-4 against the fixtures; backends agree with each other within that.
NETWORK_ATOL = 1e-4


@pytest.fixture
def fresh_cache():
    """get_backend is memoised: clear it around a test that fakes a missing package."""
    get_backend.cache_clear()
    yield
    get_backend.cache_clear()


def test_numpy_backend_is_the_ops_reference():
    be = get_backend("numpy")
    assert be.name == "numpy" and be.xp is np
    assert be.col2im is ops.col2im and be.crop_add is ops.crop_add and be.matmul is np.matmul
    rng = np.random.default_rng(14)
    a, b = rng.random((4, 2, 9, 8), dtype=np.float32), rng.random((3, 1, 6, 6), dtype=np.float32)
    first = be.im2col(a, 3, 3, 1).copy()        # a backend may reuse its buffer on the next call
    np.testing.assert_array_equal(be.im2col(b, 2, 2, 2), ops.im2col(b, 2, 2, 2))
    np.testing.assert_array_equal(first, ops.im2col(a, 3, 3, 1))


@pytest.mark.parametrize("backend", available_backends())
def test_every_backend_provides_every_primitive(backend):
    be = get_backend(backend)
    assert isinstance(be, Backend) and be.name.startswith(backend)
    for name in PRIMITIVES:
        assert callable(getattr(be, name)), name


def test_numba_backend_comes_from_kernels_cpu_numba():
    pytest.importorskip("numba")
    from w2x.kernels import cpu_numba
    be = get_backend("numba")
    assert be.name == "numba" and be.device == "cpu" and be.xp is np
    assert be.im2col is cpu_numba.im2col and be.matmul is cpu_numba.matmul


def test_unknown_backend_name_is_a_value_error_listing_the_choices():
    with pytest.raises(ValueError, match="unknown backend 'cuda'.*auto, numpy, numba, cupy"):
        get_backend("cuda")


def _works(name):
    try:
        get_backend(name)
    except BackendUnavailableError:
        return False
    return True


def test_auto_picks_cupy_then_numba_then_numpy():
    expected = next(n for n in ("cupy", "numba", "numpy") if _works(n))
    assert get_backend("auto").name.startswith(expected)


def test_missing_numba_is_a_backend_unavailable_error_and_auto_falls_back(monkeypatch, fresh_cache):
    from w2x.nn import cuda
    monkeypatch.setitem(sys.modules, "w2x.kernels.cpu_numba", None)   # import fails, as without numba
    monkeypatch.setattr(cuda, "cupy", None)
    with pytest.raises(BackendUnavailableError, match="pip install 'w2x\\[cpu\\]' or use --backend numpy"):
        get_backend("numba")
    assert get_backend("auto").name == "numpy"


def test_missing_cupy_is_a_backend_unavailable_error(monkeypatch, fresh_cache):
    from w2x.nn import cuda
    monkeypatch.setattr(cuda, "cupy", None)
    with pytest.raises(BackendUnavailableError, match="pip install 'w2x\\[gpu\\]'"):
        get_backend("cupy")


ROOT = Path(__file__).resolve().parents[1]
# Runs a module as ``PYTHONPATH=. python -m`` would in a checkout that was never pip-installed:
# setuptools' editable-install finders (which map w2x.kernels to kernels/) are removed first.
_PLAIN_CHECKOUT = ("import runpy, sys; "
                   "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in "
                   "getattr(f, '__module__', '') and 'editable' not in type(f).__name__.lower()]; "
                   "sys.argv[0] = 'w2x'; runpy.run_module(sys.argv.pop(1), run_name='__main__')")


@pytest.mark.skipif(not (IMAGES / "miku_small.png").is_file(), reason="needs ../shared/images")
def test_plain_checkout_runs_the_numba_backend(tmp_path):
    pytest.importorskip("numba")
    out = tmp_path / "x.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _PLAIN_CHECKOUT, "w2x", "-i", str(IMAGES / "miku_small.png"),
                        "-o", str(out), "--backend", "numba", "--style", "vgg_7/art", "-m", "scale"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert out.is_file()
    probe = subprocess.run([sys.executable, "-c", _PLAIN_CHECKOUT.replace(
        "runpy.run_module(sys.argv.pop(1), run_name='__main__')",
        "import w2x.nn.kernel_files as k; print(k.package().__file__)")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == str(ROOT / "kernels" / "__init__.py"), probe.stderr


NETWORKS = [  # (model, input tile): each arch once, sizes that cunet's graph accepts
    ("vgg_7/photo/scale2.0x_model.json.gz", 40),
    ("upconv_7/photo/scale2.0x_model.json.gz", 36),
    ("cunet/art/scale2.0x_model.json.gz", 76),
    ("cunet/art/noise0_model.json.gz", 100),
]


@pytest.mark.parametrize("backend", [p for p in available_backends() if p.id != "numpy"])
@pytest.mark.parametrize("model", NETWORKS, ids=lambda m: m[0].split(".json")[0] if isinstance(m, tuple) else m)
def test_backend_runs_each_arch_like_numpy(backend, model):
    path, tile = model
    net = load_model(MODEL_DIR / path)
    x = np.random.default_rng(13).random((2, net.config.channels, tile, tile), dtype=np.float32)  # (N, C, H, W)
    expected = net.forward(x, "numpy")
    got = net.forward(x, backend)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=NETWORK_ATOL)
