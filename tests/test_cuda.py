"""The GPU backend (w2x/nn/cuda.py, kernels/*.cu), the CUDA tile pipeline (w2x/nn/cuda_stream.py)
and the device-memory planner (w2x/nn/memory.py); the one file of CuPy primitive tests.

Tests marked ``gpu`` pit every CUDA primitive against its ``ops.py`` twin and run the network
fixtures on the cupy backend; they skip with the reason where CuPy or a device is missing.
The rest run anywhere: the kernel sources ship and compile, the launch and batch arithmetic,
and the streamer's bookkeeping, on the host and through a fake CuPy that copies synchronously.
"""
from __future__ import annotations

import dataclasses

import ctypes
import fnmatch
import importlib.util
import json
import re
import shutil
import subprocess
import tomllib
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import HAVE_SHARED, MODEL_DIR, REFERENCE
from w2x import load_model
from w2x.nn import cuda as gpu
from w2x.nn import kernel_files
from w2x import stream
from w2x.nn import memory
from w2x.nn import ops
from w2x.nn.archs import ARCHS
from w2x.nn.backend import PRECISIONS, Backend, BackendUnavailableError, get_backend
from w2x.nn.layers import Conv2d, ConvTranspose2d
from w2x.nn.models import Model, ModelConfig

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((REFERENCE / "manifest.json").read_text()) if HAVE_SHARED else {"network": [], "pipeline": []}
# cupy fp32 against the independent fixtures: float32 GEMMs in another summation order.
NETWORK_ATOL = 1e-4
# tf32 / fp16 GEMM operands keep 10 mantissa bits.  Emulating that rounding on the CPU
# (operands rounded to nearest, float64 sums) gives <= 2.4e-3 (0.62 of an 8-bit level) on
# these fixtures; allow 2 levels for the tensor cores' own rounding and summation order
# (tools/speed_gpu.py --parity prints the measured error per model).
REDUCED_PRECISION_ATOL = 2 / 255
# Relative Frobenius error of one GEMM against float64: float32 sums of K <= 2304 products
# stay near 1e-6; operands rounded to 10 mantissa bits (tf32, fp16) near 3e-4.
GEMM_RTOL = {"fp32": 1e-5, "tf32": 2e-3, "fp16": 2e-3}
# channel_mean: double sums vs NumPy's pairwise float32 sums of values in [-1, 1].
MEAN_ATOL = 1e-6
# CuPy's pool rounds every block up and may split or strand free blocks: what it holds after
# a forward may exceed the live peak that tile_bytes computes.
POOL_SLACK = 1.5
# A batch of tiles vs one tile at a time: BLAS blocks the GEMM sums by the batch width.
BATCH_ATOL = 1e-4
# numpy's reference primitives add temporaries the dry run (and the CUDA kernels) do not
# have, e.g. LeakyReLU's slope*y: measured 8-17% over the dry run's peak.
NUMPY_PEAK_EXCESS = 1.3


def _rng(seed):
    return np.random.default_rng(seed)


IM2COL_CASES = [(3, 2, 9, 11, 3, 1), (5, 1, 8, 8, 2, 2), (64, 3, 17, 13, 3, 1), (4, 2, 7, 7, 1, 1),
                (2, 1, 10, 12, 4, 2)]  # (C, N, H, W, k, stride)
COL2IM_CASES = [(3, 2, 6, 5, 4, 2, 3), (64, 2, 4, 4, 2, 2, 0), (2, 1, 5, 7, 3, 1, 1), (3, 2, 4, 6, 5, 3, 2)]
# (OC, N, H, W, k, stride, pad)


# --- no GPU needed ---------------------------------------------------------------------------
def test_every_kernel_file_exists_and_ships_as_package_data():
    files = set(gpu.KERNELS.values())
    on_disk = {p.name for p in (ROOT / "kernels").glob("*.cu")}
    assert files == on_disk, "kernels/*.cu and gpu.KERNELS must name the same files"
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = setuptools["package-data"]["w2x.kernels"]
    for name in files:
        assert any(fnmatch.fnmatch(name, g) for g in globs), f"{name} is not package data"
        assert kernel_files.source(name) == (ROOT / "kernels" / name).read_text()


@pytest.mark.parametrize("filename", sorted(set(gpu.KERNELS.values())))
def test_kernel_source_declares_its_kernels_and_reference(filename):
    src = kernel_files.source(filename)
    declared = set(re.findall(r'extern "C" __global__ void (w2x_\w+)\(', src))
    assert declared == {k for k, f in gpu.KERNELS.items() if f == filename}
    refs = re.findall(r"//\s+reference: w2x/nn/ops\.py:(\w+)", src)
    assert refs and all(hasattr(ops, r) for r in refs)
    assert "#include" not in src, "NVRTC has no standard headers: kernels must be self-contained"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_kernels_compile_with_nvcc(tmp_path):
    files = sorted(str(ROOT / "kernels" / f) for f in set(gpu.KERNELS.values()))
    r = subprocess.run(["nvcc", "--ptx", "-arch=sm_90", "-Werror", "all-warnings", "-odir", str(tmp_path),
                        *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ptx = "".join(p.read_text() for p in tmp_path.glob("*.ptx"))
    assert all(f".entry {name}(" in ptx for name in gpu.KERNELS)


@pytest.mark.parametrize("per_plane, planes", [(1, 1), (255, 3), (256, 3), (257, 70000), (10**6, 65535)])
def test_launch_grid_covers_every_element_once(per_plane, planes):
    gx, gy, gz = gpu.launch_grid(per_plane, planes)
    assert (gx - 1) * gpu.BLOCK < per_plane <= gx * gpu.BLOCK
    assert gy == min(planes, gpu.MAX_GRID_Y) and gz == 1
    # the kernels' plane loop p = blockIdx.y, blockIdx.y + gridDim.y, ... visits each plane once
    visited = np.concatenate([np.arange(b, planes, gy) for b in range(gy)])
    assert np.array_equal(np.sort(visited), np.arange(planes))


def test_launch_grid_rejects_planes_beyond_int32_and_launches_nothing_when_empty():
    with pytest.raises(ValueError, match="32-bit"):
        gpu.launch_grid(2**31, 1)
    assert gpu.launch_grid(0, 5)[0] == 0
    assert gpu.reduce_grid(3) == (3, 1, 1) and gpu.reduce_grid(2**40)[0] == gpu.MAX_GRID_X


def _config(arch):
    return ModelConfig(ARCHS[arch], 3)


def _forward(net, x, be):
    """The model's graph on (C, N, H, W) device arrays, as the streamers run it."""
    return net.config.arch.forward(net.layers, x, be)


def _random_model(arch, seed=0):
    """A model of ``arch`` with random weights, built without JSON (fast)."""
    a, rng = ARCHS[arch], _rng(seed)
    layers = {s.name: Conv2d(0.05 * rng.standard_normal((s.out_channels, s.in_channels * s.k * s.k), np.float32),
                     np.zeros(s.out_channels, np.float32), s.k, s.stride) if s.kind == "conv" else
              ConvTranspose2d(0.05 * rng.standard_normal((s.out_channels * s.k * s.k, s.in_channels), np.float32),
                              np.zeros(s.out_channels, np.float32), s.k, s.stride, s.pad)
              for s in a.spec(3)}
    return Model(_config(arch), layers)


@pytest.mark.parametrize("arch, tile", [("vgg_7", 64), ("upconv_7", 48), ("cunet", 100)])
def test_tile_bytes_dry_run_tracks_the_numpy_forward_peak(arch, tile):
    model = _random_model(arch)
    x = _rng(1).random((3, 1, tile, tile), dtype=np.float32)
    # the GPU's way on the host: a fresh im2col matrix per conv and no kn2row, as the dry run
    plain = dataclasses.replace(get_backend("numpy"), im2col=ops.im2col, kn2row=False)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y = _forward(model, x, plain)
        traced = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    forward = memory.tile_bytes(model.config, tile) - 2 * 4 * 3 * (tile * tile + y.shape[2] * y.shape[3])
    assert forward <= traced <= NUMPY_PEAK_EXCESS * forward


def test_tile_bytes_rejects_tiles_the_arch_does_not_take():
    with pytest.raises(ValueError, match="does not accept 101"):
        memory.tile_bytes(_config("cunet"), 101)
    with pytest.raises(ValueError, match="too small"):
        memory.tile_bytes(_config("vgg_7"), 14)


def test_max_batch_scales_with_free_memory_and_refuses_a_tile_that_does_not_fit():
    cfg = _config("upcunet")
    need = memory.tile_bytes(cfg, 256)
    assert memory.max_batch(cfg, 256, free_bytes=int(10.5 * need), headroom=1.0) == 10
    assert memory.max_batch(cfg, 256, free_bytes=1000 * need) == memory.MAX_BATCH
    with pytest.raises(ValueError, match="smaller tile"):
        memory.max_batch(cfg, 256, free_bytes=need // 2)
    # the 16k x 16k output on a 16 GB card: 512 px upcunet tiles still batch
    assert memory.max_batch(cfg, 512, free_bytes=15 * 2**30) >= 2


def test_cuda_module_imports_anywhere_and_backend_fails_cleanly_without_a_gpu():
    with pytest.raises(ValueError, match="precision"):
        get_backend("cupy", "bf16")
    try:
        gpu.require_device()
    except BackendUnavailableError as e:
        assert "CuPy is not installed" in str(e) if gpu.cupy is None else "CUDA" in str(e)
    else:
        pytest.skip("a CUDA device is usable here: the no-GPU path cannot be exercised")
    with pytest.raises(BackendUnavailableError):
        get_backend("cupy")
    assert get_backend("auto").name in ("numpy", "numba")
    with pytest.raises(BackendUnavailableError):
        memory.max_batch(_config("vgg_7"), 64)     # free memory of no device


@pytest.fixture(scope="module")
def tiny_vgg():
    return _random_model("vgg_7", seed=4)


def _tiles(shapes, seed=0):
    rng = _rng(seed)
    return [rng.random(s, dtype=np.float32) for s in shapes]


SHAPES = [(3, 20, 20)] * 5 + [(3, 24, 18)] * 2 + [(3, 20, 20)]   # a shape change, partial batches


def _collect(model, be, tiles, batch):
    got = [(i, y.copy()) for i, y in stream.stream_tiles(model, be, iter(tiles), batch)]
    assert [i for i, _ in got] == list(range(len(tiles)))              # every tile once, in order
    return [y for _, y in got]


def test_stream_tiles_on_the_host_matches_one_forward_per_tile(tiny_vgg):
    be = get_backend("numpy")
    tiles = _tiles(SHAPES)
    for y, t in zip(_collect(tiny_vgg, be, tiles, batch=3), tiles):
        np.testing.assert_allclose(y, tiny_vgg.forward(t[None])[0], atol=BATCH_ATOL, rtol=0)


def test_stream_tiles_rejects_bad_batch_and_tiles(tiny_vgg):
    be = get_backend("numpy")
    with pytest.raises(ValueError, match="batch"):
        list(stream.stream_tiles(tiny_vgg, be, [], 0))
    with pytest.raises(ValueError, match=r"tile 1: expected a \(3, h, w\)"):
        list(stream.stream_tiles(tiny_vgg, be, _tiles([(3, 20, 20), (1, 20, 20)]), 4))


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch, tile", [("upconv_7", 20), ("cunet", 100)])   # deconv; SE and skips
def test_speed_torch_twin_computes_the_same_function(arch, tile):
    torch = pytest.importorskip("torch")
    model = _random_model(arch, seed=3)
    x = _rng(2).random((1, 3, tile, tile), dtype=np.float32)                  # (N, C, t, t)
    y = _tool("speed_gpu").torch_twin(model, "cpu")(torch.from_numpy(x)).numpy()
    ref = model.forward(x)
    assert ((ref > 0) & (ref < 1)).mean() > 0.1, "outputs clipped: the comparison would be vacuous"
    np.testing.assert_allclose(y, ref, atol=NETWORK_ATOL, rtol=0)


class _DevArray(np.ndarray):
    """A host array posing as a device array: ``.data.ptr`` as CuPy has it."""
    @property
    def data(self):
        return SimpleNamespace(ptr=self.ctypes.data)


def _fake_cupy():
    """Enough of CuPy for nn/cuda_stream.py, on the host: copies run at once, events are no-ops."""
    event = SimpleNamespace(synchronize=lambda: None)

    class Stream:
        def __init__(self, non_blocking=False):
            self.ptr = 0
        record = lambda self: event                   # noqa: E731
        wait_event = synchronize = lambda self, *a: None  # noqa: E731
        __enter__ = lambda self: self                 # noqa: E731
        __exit__ = lambda self, *a: None              # noqa: E731

    runtime = SimpleNamespace(memcpyHostToDevice=1, memcpyDeviceToHost=2,
                              memcpyAsync=lambda dst, src, n, kind, s: ctypes.memmove(dst, src, n))
    cuda = SimpleNamespace(Stream=Stream, runtime=runtime, alloc_pinned_memory=bytearray,
                           Device=lambda: SimpleNamespace(synchronize=lambda: None))
    return SimpleNamespace(cuda=cuda, float32=np.float32, exp=np.exp, clip=np.clip,
                           empty=lambda shape, dtype: np.empty(shape, dtype).view(_DevArray),
                           ascontiguousarray=lambda a: np.ascontiguousarray(a).view(_DevArray))


@pytest.mark.parametrize("batch", [1, 2, 3, 8])   # odd and even batch counts, full and partial
def test_stream_tiles_device_pipeline_bookkeeping_with_a_fake_cupy(tiny_vgg, batch):
    host = get_backend("numpy")
    fake = Backend(**{**vars(host), "name": "cupy-fake", "device": "cuda", "xp": _fake_cupy()})
    tiles = _tiles(SHAPES, seed=1)
    expected = _collect(tiny_vgg, host, tiles, batch)   # same batches, so the same sums
    for y, e in zip(_collect(tiny_vgg, fake, tiles, batch), expected):
        np.testing.assert_array_equal(y, e)


# --- the kernels' index arithmetic, emulated on the CPU ------------------------------------
# Each .cu file compiled as C++ with sequential stand-ins for the CUDA builtins: a launch runs
# every (block, thread) in turn.  This checks layouts, bounds and the plane loops where CI has
# no GPU; channel_mean's warp shuffles are not emulated (it compiles, the GPU tests check it).
EMULATOR = r"""
#include <algorithm>
#include <cstring>
#include <math.h>
using std::max; using std::min;
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads()
#define __shfl_down_sync(mask, v, d) (v)
static unsigned short f16_bits(float v) {
    _Float16 h = (_Float16)v; unsigned short b; memcpy(&b, &h, 2); return b;
}
#define asm(...) h = f16_bits(v)  /* the only asm: cvt.rn.f16.f32 h, v */
#include "im2col.cu"
#include "col2im.cu"
#include "bias_leaky_relu.cu"
#include "se.cu"
#include "crop_add.cu"
#include "pad_replicate.cu"
#define EMULATE(name, params, args)                                                             \
    extern "C" void emu_##name(unsigned emu_gx, unsigned emu_gy, unsigned emu_bx, params) {     \
    blockDim = {emu_bx, 1, 1}; gridDim = {emu_gx, emu_gy, 1};                                   \
    for (unsigned emu_y = 0; emu_y < emu_gy; ++emu_y) for (unsigned emu_x = 0; emu_x < emu_gx; ++emu_x) \
        for (unsigned emu_t = 0; emu_t < emu_bx; ++emu_t) {                                     \
            blockIdx = {emu_x, emu_y, 0}; threadIdx = {emu_t, 0, 0}; name args; } }
#define P(...) __VA_ARGS__
EMULATE(w2x_im2col_f32,
        P(const float* x, float* c, int C, int N, int H, int W, int kh, int kw, int s, int OH, int OW),
        (x, c, C, N, H, W, kh, kw, s, OH, OW))
EMULATE(w2x_im2col_f16,
        P(const float* x, unsigned short* c, int C, int N, int H, int W, int kh, int kw, int s, int OH, int OW),
        (x, c, C, N, H, W, kh, kw, s, OH, OW))
EMULATE(w2x_col2im_f32,
        P(const float* c, float* y, int OC, int N, int H, int W, int kh, int kw, int s, int p, int OH, int OW),
        (c, y, OC, N, H, W, kh, kw, s, p, OH, OW))
EMULATE(w2x_bias_leaky_relu_f32, P(float* y, const float* b, int OC, int M, float slope, int has),
        (y, b, OC, M, slope, has))
EMULATE(w2x_se_scale_f32, P(float* x, const float* z, int planes, int HW), (x, z, planes, HW))
EMULATE(w2x_crop_add_f32, P(const float* a, const float* b, float* o, int planes, int H, int W, int crop),
        (a, b, o, planes, H, W, crop))
EMULATE(w2x_pad_replicate_f32,
        P(const float* x, float* y, int C, int H, int W, int top, int left, int OH, int OW),
        (x, y, C, H, W, top, left, OH, OW))
"""
EMU_BLOCK = 32      # a small block, so that several blocks and a partial last one run
EMU_MAX_GRID_Y = 3  # fewer grid rows than planes, so that the kernels' plane loops run


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not on PATH")
    d = tmp_path_factory.mktemp("emu")
    (d / "emu.cpp").write_text(EMULATOR)
    r = subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-I", str(ROOT / "kernels"), "-o", str(d / "emu.so"),
                        str(d / "emu.cpp")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(d / "emu.so"))

    def launch(name, per_plane, planes, *args):
        gx, gy, _ = gpu.launch_grid(per_plane, planes, EMU_BLOCK)
        c_args = [a.ctypes.data_as(ctypes.c_void_p) if isinstance(a, np.ndarray) else
                  ctypes.c_float(a) if isinstance(a, float) else ctypes.c_int(a) for a in args]
        getattr(lib, f"emu_{name}")(gx, min(gy, EMU_MAX_GRID_Y), EMU_BLOCK, *c_args)
    return launch


def _poisoned(shape, dtype=np.float32):
    return np.full(shape, np.nan, dtype)   # every element must be written


@pytest.mark.parametrize("case", IM2COL_CASES, ids=str)
def test_emulated_im2col_matches_reference(emulated, case):
    c, n, h, w, k, s = case
    x = _rng(sum(case)).standard_normal((c, n, h, w)).astype(np.float32)
    ref = ops.im2col(x, k, k, s)
    oh, ow = ops.out_size(h, k, s), ops.out_size(w, k, s)
    cols, half = _poisoned(ref.shape), np.zeros(ref.shape, np.uint16)
    for name, out in (("w2x_im2col_f32", cols), ("w2x_im2col_f16", half)):
        emulated(name, n * oh * ow, c * k * k, x, out, c, n, h, w, k, k, s, oh, ow)
    np.testing.assert_array_equal(cols, ref)
    np.testing.assert_array_equal(half.view(np.float16), ref.astype(np.float16))


@pytest.mark.parametrize("case", COL2IM_CASES, ids=str)
def test_emulated_col2im_matches_reference_bit_for_bit(emulated, case):
    oc, n, h, w, k, s, p = case
    cols = _rng(sum(case)).standard_normal((oc * k * k, n * h * w)).astype(np.float32)
    ref = ops.col2im(cols, (oc, n, h, w), k, k, s, p)
    y = _poisoned(ref.shape)
    oh, ow = ref.shape[2:]
    emulated("w2x_col2im_f32", oh * ow, oc * n, cols, y, oc, n, h, w, k, k, s, p, oh, ow)
    np.testing.assert_array_equal(y, ref)


def test_emulated_elementwise_kernels_match_reference(emulated):
    rng = _rng(9)
    for slope in (None, 0.1, 0.0):
        y, b = rng.standard_normal((70, 3, 5, 9)).astype(np.float32), rng.standard_normal(70).astype(np.float32)
        ref = ops.bias_leaky_relu(y.copy(), b, slope)
        emulated("w2x_bias_leaky_relu_f32", 135, 70, y, b, 70, 135, slope or 0.0, int(slope is not None))
        np.testing.assert_array_equal(y, ref)
    x, z = rng.standard_normal((8, 3, 9, 7)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32)
    ref = ops.se_scale(x.copy(), z)
    emulated("w2x_se_scale_f32", 63, 24, x, z, 24, 63)
    np.testing.assert_array_equal(x, ref)
    for crop in (0, 4, 16):
        a = rng.standard_normal((5, 2, 9, 7)).astype(np.float32)
        b = rng.standard_normal((5, 2, 9 + 2 * crop, 7 + 2 * crop)).astype(np.float32)
        out = _poisoned(a.shape)
        emulated("w2x_crop_add_f32", 63, 10, a, b, out, 10, 9, 7, crop)
        np.testing.assert_array_equal(out, ops.crop_add(a, b, crop))
    for pads in [(0, 0, 0, 0), (3, 11, 0, 5), (20, 1, 2, 30)]:
        x = rng.standard_normal((3, 6, 9)).astype(np.float32)
        ref = ops.pad_replicate(x, *pads)
        out = _poisoned(ref.shape)
        oh, ow = ref.shape[1:]
        emulated("w2x_pad_replicate_f32", oh * ow, 3, x, out, 3, 6, 9, pads[0], pads[2], oh, ow)
        np.testing.assert_array_equal(out, ref)


# --- GPU -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cp():
    try:
        get_backend("cupy")
    except BackendUnavailableError as e:
        pytest.skip(str(e))
    return gpu.cupy


def _both(cp, a):
    return a, cp.asarray(a)




@pytest.mark.gpu
@pytest.mark.parametrize("case", IM2COL_CASES, ids=str)
def test_im2col_matches_reference(cp, case):
    c, n, h, w, k, s = case
    x, xd = _both(cp, _rng(sum(case)).standard_normal((c, n, h, w)).astype(np.float32))
    ref = ops.im2col(x, k, k, s)
    np.testing.assert_array_equal(cp.asnumpy(gpu.im2col(xd, k, k, s)), ref)  # a pure copy: exact
    half = gpu.im2col(xd, k, k, s, out_dtype=np.float16)
    np.testing.assert_array_equal(cp.asnumpy(half), ref.astype(np.float16))   # round to nearest even


@pytest.mark.gpu
@pytest.mark.parametrize("case", COL2IM_CASES, ids=str)
def test_col2im_matches_reference_bit_for_bit(cp, case):
    oc, n, h, w, k, s, p = case
    cols, cols_d = _both(cp, _rng(sum(case)).standard_normal((oc * k * k, n * h * w)).astype(np.float32))
    # the kernel adds the taps in the reference's order, from 0: the same float sums
    np.testing.assert_array_equal(cp.asnumpy(gpu.col2im(cols_d, (oc, n, h, w), k, k, s, p)),
                                  ops.col2im(cols, (oc, n, h, w), k, k, s, p))


@pytest.mark.gpu
@pytest.mark.parametrize("slope", [None, 0.1, 0.0])
def test_bias_leaky_relu_matches_reference(cp, slope):
    rng = _rng(7)
    y, yd = _both(cp, rng.standard_normal((70, 3, 5, 9)).astype(np.float32))
    b, bd = _both(cp, rng.standard_normal(70).astype(np.float32))
    out = gpu.bias_leaky_relu(yd, bd, slope)
    assert out is yd
    np.testing.assert_array_equal(cp.asnumpy(yd), ops.bias_leaky_relu(y, b, slope))


@pytest.mark.gpu
def test_se_primitives_match_reference(cp):
    rng = _rng(8)
    x, xd = _both(cp, rng.uniform(-1, 1, (64, 3, 33, 31)).astype(np.float32))
    np.testing.assert_allclose(cp.asnumpy(gpu.channel_mean(xd)), ops.channel_mean(x), atol=MEAN_ATOL, rtol=0)
    z, zd = _both(cp, rng.standard_normal((64, 3)).astype(np.float32))
    np.testing.assert_array_equal(cp.asnumpy(gpu.se_scale(xd, zd)), ops.se_scale(x, z))


@pytest.mark.gpu
@pytest.mark.parametrize("crop", [0, 4, 16])
def test_crop_add_matches_reference(cp, crop):
    rng = _rng(crop)
    a, ad = _both(cp, rng.standard_normal((5, 2, 9, 7)).astype(np.float32))
    b, bd = _both(cp, rng.standard_normal((5, 2, 9 + 2 * crop, 7 + 2 * crop)).astype(np.float32))
    np.testing.assert_array_equal(cp.asnumpy(gpu.crop_add(ad, bd, crop)), ops.crop_add(a, b, crop))


@pytest.mark.gpu
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (7, 7, 7, 7), (3, 11, 0, 5), (20, 1, 2, 30)])
def test_pad_replicate_matches_reference(cp, pads):
    x, xd = _both(cp, _rng(1).standard_normal((3, 6, 9)).astype(np.float32))
    np.testing.assert_array_equal(cp.asnumpy(gpu.pad_replicate(xd, *pads)), ops.pad_replicate(x, *pads))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("mkn", [(37, 19, 1001), (128, 1152, 4096), (1, 8, 3), (256, 64, 77)], ids=str)
def test_matmul_matches_float64(cp, precision, mkn):
    m, k, n = mkn
    rng = _rng(m + k + n)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    c = cp.asnumpy(get_backend("cupy", precision).matmul(cp.asarray(a), cp.asarray(b)))
    ref = a.astype(np.float64) @ b
    assert c.dtype == np.float32 and c.shape == (m, n)
    assert np.linalg.norm(c - ref) / np.linalg.norm(ref) <= GEMM_RTOL[precision]


def _entries():
    return [pytest.param(e, id=e["file"]) for e in MANIFEST["network"]]


@pytest.fixture(scope="module")
def models():
    cache = {}
    return lambda rel: cache.setdefault(rel, load_model(MODEL_DIR / rel))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("entry", _entries())
def test_network_fixture_on_cupy(cp, models, entry, precision):
    ref = np.load(REFERENCE / entry["file"])
    y = models(entry["model"]).forward(ref["input"], get_backend("cupy", precision))
    assert y.shape == ref["output"].shape
    tol = NETWORK_ATOL if precision == "fp32" else REDUCED_PRECISION_ATOL
    assert np.abs(y - ref["output"]).max() <= tol


@pytest.mark.gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_stream_tiles_on_gpu_matches_one_forward_per_batch(cp, tiny_vgg, precision):
    be = get_backend("cupy", precision)
    tiles = _tiles(SHAPES, seed=2)
    streamed = _collect(tiny_vgg, be, tiles, batch=3)
    net = tiny_vgg.on(be)
    for start, group in stream._batches(tiles, 3, 3):              # the same batches, run plainly
        y = cp.asnumpy(_forward(net, cp.asarray(np.stack(group, axis=1)), be))   # (C, N, oh, ow)
        for i in range(len(group)):
            np.testing.assert_allclose(streamed[start + i], y[:, i], atol=NETWORK_ATOL, rtol=0)
    if precision == "fp32":
        for g, h in zip(streamed, _collect(tiny_vgg, get_backend("numpy"), tiles, batch=3)):
            np.testing.assert_allclose(g, h, atol=NETWORK_ATOL, rtol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("arch, tile", [("vgg_7", 64), ("upcunet", 76), ("cunet", 100)])
def test_tile_bytes_bounds_what_a_forward_takes_from_the_pool(cp, arch, tile):
    model, be, n = _random_model(arch), get_backend("cupy"), 2
    net = model.on(be)
    x = cp.asarray(_rng(0).random((3, n, tile, tile), dtype=np.float32))
    pool = cp.get_default_memory_pool()
    cp.cuda.Device().synchronize()
    pool.free_all_blocks()
    before = pool.total_bytes()
    _forward(net, x, be)
    cp.cuda.Device().synchronize()
    assert pool.total_bytes() - before <= POOL_SLACK * n * memory.tile_bytes(model.config, tile)


@pytest.mark.gpu
def test_kernels_compile_once_per_device_and_get_backend_finds_cupy(cp):
    before = gpu._module.cache_info().currsize
    get_backend("cupy", "fp16")
    assert gpu._module.cache_info().currsize == before   # already loaded on this device
    be = get_backend("cupy")
    assert be.name == "cupy" and be.xp is cp
    assert memory.max_batch(_config("cunet"), 256) >= 1
