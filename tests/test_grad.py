"""Backward passes (w2x/nn/grad.py) against central finite differences in float64.

Each check compares the analytic gradient of a random scalar projection ``sum(r * f(p))``
with ``(L(p + h e) - L(p - h e)) / 2h`` on a few random coordinates of every parameter and
of the input.  Activations are chosen away from the kinks (LeakyReLU at 0, clip at 0/1) by
the scale of the random weights; a coordinate sitting on a kink would show as one failure.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest

from w2x.nn import grad
from w2x.nn.archs import ARCHS, forward_cunet, forward_sequential
from w2x.nn.layers import Conv2d, ConvTranspose2d

H_STEP = 1e-6          # central difference step: error O(h^2) ~ 1e-12, rounding ~ 1e-16/h ~ 1e-10
REL_TOL = 1e-5         # float64 finite differences agree to ~1e-8; 1e-5 leaves room for curvature
ABS_TOL = 1e-8         # gradients that are 0 (masked by the clip) on both sides
SAMPLES = 6            # coordinates checked per array

NP = grad.training_backend("numpy")


def _numeric(loss, flat, idx, h):
    old = flat[idx]
    flat[idx] = old + h
    up = loss()
    flat[idx] = old - h
    down = loss()
    flat[idx] = old
    return (up - down) / (2 * h)


def _close(a, b) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b)) + ABS_TOL


def _check(loss, arrays: dict, analytic: dict, rng, samples: int = SAMPLES):
    """``loss()`` reads the arrays in ``arrays`` (mutated in place); compare ``analytic``.

    A coordinate whose difference quotients at H_STEP and H_STEP/10 disagree with each other
    straddles a kink (an activation crossing 0, an output crossing 0 or 1): the function is
    not differentiable there and it is skipped; at most a quarter may be.
    """
    skipped = total = 0
    for key, a in arrays.items():
        flat = a.reshape(-1)
        for idx in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
            total += 1
            numeric = _numeric(loss, flat, idx, H_STEP)
            got = analytic[key].reshape(-1)[idx]
            if _close(got, numeric):
                continue
            if not _close(numeric, _numeric(loss, flat, idx, H_STEP / 10)):
                skipped += 1
                continue
            raise AssertionError(f"{key}[{idx}]: analytic {got}, numeric {numeric}")
    assert skipped <= total // 4, f"{skipped} of {total} coordinates on a kink"


@pytest.mark.parametrize("k,stride,size", [(3, 1, 7), (1, 1, 5), (2, 2, 8), (2, 2, 7), (3, 2, 8)])
def test_conv_backward(k, stride, size):
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.standard_normal((3, 2, size, size))
    w = rng.standard_normal((4, 3 * k * k))
    b = rng.standard_normal(4)
    y0, _ = grad.conv_forward(x, w, b, k, stride, NP)
    r = rng.standard_normal(y0.shape)

    def loss():
        return float((grad.conv_forward(x, w, b, k, stride, NP)[0] * r).sum())
    _, cols = grad.conv_forward(x, w, b, k, stride, NP)
    dx, dw, db = grad.conv_backward(r, x.shape, cols, w, k, stride, NP)
    _check(loss, {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db}, rng)


@pytest.mark.parametrize("k,stride,pad", [(4, 2, 3), (2, 2, 0), (3, 1, 1)])
def test_deconv_backward(k, stride, pad):
    rng = np.random.default_rng(k + stride + pad)
    x = rng.standard_normal((3, 2, 5, 6))
    wt = rng.standard_normal((2 * k * k, 3))
    b = rng.standard_normal(2)
    r = rng.standard_normal(grad.deconv_forward(x, wt, b, k, stride, pad, NP).shape)

    def loss():
        return float((grad.deconv_forward(x, wt, b, k, stride, pad, NP) * r).sum())
    dx, dwt, db = grad.deconv_backward(r, x, wt, k, stride, pad, NP)
    _check(loss, {"x": x, "w": wt, "b": b}, {"x": dx, "w": dwt, "b": db}, rng)


def test_forward_matches_the_inference_layers():
    """conv_forward / deconv_forward are the same maps as layers.Conv2d / ConvTranspose2d."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 9, 9)).astype(np.float32)
    w, b = rng.standard_normal((4, 27)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    np.testing.assert_allclose(grad.conv_forward(x, w, b, 3, 1, NP)[0], Conv2d(w, b, 3)(x, NP, None),
                               rtol=1e-5, atol=1e-5)
    wt = rng.standard_normal((2 * 16, 3)).astype(np.float32)
    np.testing.assert_allclose(grad.deconv_forward(x, wt, b[:2], 4, 2, 3, NP),
                               ConvTranspose2d(wt, b[:2], 4, 2, 3)(x, NP, None), rtol=1e-5, atol=1e-5)


def test_elementwise_backward():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 1, 4, 4)) * 0.8 + 0.5      # straddles 0 and 1
    r = rng.standard_normal(x.shape)
    for f, fb in ((lambda v: grad.leaky_relu(v, 0.1), lambda d: grad.leaky_relu_backward(d, x, 0.1)),
                  (grad.clip01, lambda d: grad.clip01_backward(d, x))):
        _check(lambda: float((f(x) * r).sum()), {"x": x}, {"x": fb(r)}, rng)
    a, big = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((2, 1, 7, 7))
    da, db = grad.crop_add_backward(r[:, :, :3, :3], big.shape, 2)

    def loss():
        return float(((a + big[:, :, 2:5, 2:5]) * r[:, :, :3, :3]).sum())
    _check(loss, {"a": a, "big": big}, {"a": da, "big": db}, rng)


def _random_params(arch: str, ch: int, rng, scale: float = 0.3) -> dict:
    """He-like random weights in GEMM form, float64."""
    params = {}
    for s in ARCHS[arch].spec(ch):
        fan_in = s.in_channels * s.k * s.k
        shape = (s.out_channels, fan_in) if s.kind == "conv" else (s.out_channels * s.k * s.k, s.in_channels)
        params[s.name] = (rng.standard_normal(shape) * scale * np.sqrt(2.0 / fan_in),
                          rng.standard_normal(s.out_channels) * 0.05)
    return params


def _layers(arch: str, ch: int, params: dict) -> dict:
    out = {}
    for s in ARCHS[arch].spec(ch):
        w, b = params[s.name]
        out[s.name] = Conv2d(w, b, s.k, s.stride) if s.kind == "conv" else ConvTranspose2d(w, b, s.k, s.stride, s.pad)
    return out


# input sizes: the smallest each arch accepts (cunet/upcunet: valid_sizes)
CASES = [("vgg_7", 3, 16), ("vgg_7", 1, 16), ("upconv_7", 3, 16), ("upconv_7", 1, 16),
         pytest.param("cunet", 3, 100, marks=pytest.mark.slow),
         pytest.param("upcunet", 1, 76, marks=pytest.mark.slow)]


@pytest.mark.parametrize("arch,ch,size", CASES)
def test_end_to_end_gradients(arch, ch, size):
    rng = np.random.default_rng(len(arch) * 7 + ch)
    params = _random_params(arch, ch, rng)
    n = 1 if "cunet" in arch else 2
    # around 0.5 so that most outputs are inside (0, 1) and the clip passes gradient
    x = rng.uniform(0.2, 0.8, (ch, n, size, size))
    y, tape, slot = grad.forward(arch, ch, params, x, NP)
    ref = (forward_cunet if "cunet" in arch else forward_sequential)(_layers(arch, ch, params), x.copy(), NP)
    # the same map as inference (whose SE mean is float32, ops.channel_mean: hence 1e-6 there)
    np.testing.assert_allclose(y, ref, rtol=1e-6 if "cunet" in arch else 1e-10, atol=1e-7)
    r = rng.standard_normal(y.shape)
    grads = grad.backward(tape, slot, r)

    def loss():
        return float((grad.forward(arch, ch, params, x, NP)[0] * r).sum())
    names = list(params)
    big = len(names) > 8        # cunet/upcunet: 6 of their 30 layers, 3 coordinates each (time)
    picked = [names[i] for i in rng.choice(len(names), 6, replace=False)] if big else names
    arrays, analytic = {}, {}
    for name in picked:
        for part, (a, d) in zip("wb", zip(params[name], grads[name])):
            arrays[f"{name}.{part}"], analytic[f"{name}.{part}"] = a, d
    _check(loss, arrays, analytic, rng, samples=3 if big else SAMPLES)


NUMBA_REL_TOL = 1e-4   # float32 on both rows, GEMMs blocked differently: ~1e-6 relative, margin for sums


@pytest.mark.parametrize("arch,size", [("vgg_7", 18), ("upconv_7", 18),
                                       pytest.param("cunet", 100, marks=pytest.mark.slow)])
def test_numba_row_gives_the_numpy_gradients(arch, size):
    """The backward graph on the numba backend (the fast 3x3 convs of kernels/cpu_numba_grad.py,
    its col2im, matmul) equals the numpy reference."""
    try:
        nb = grad.training_backend("numba")
    except Exception as e:   # numba not installed: the row is optional (w2x[cpu])
        pytest.skip(f"numba backend unavailable: {e}")
    rng = np.random.default_rng(5)
    params = {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in _random_params(arch, 3, rng).items()}
    x = rng.uniform(0.2, 0.8, (3, 2 if size < 100 else 1, size, size)).astype(np.float32)
    results = []
    for be in (NP, nb):
        y, tape, slot = grad.forward(arch, 3, params, x, be)
        results.append((y, grad.backward(tape, slot, np.ones_like(y))))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=NUMBA_REL_TOL, atol=1e-6)
    for name, (dw, db) in results[0][1].items():
        for ref, got in ((dw, results[1][1][name][0]), (db, results[1][1][name][1])):
            assert np.abs(got - ref).max() <= NUMBA_REL_TOL * np.abs(ref).max() + 1e-7, name


def _numba_or_skip():
    try:
        return grad.training_backend("numba")
    except Exception as e:   # numba not installed: the row is optional (w2x[cpu])
        pytest.skip(f"numba backend unavailable: {e}")


# float32 Winograd (~1e-6 of the direct sum) and blocked float32 GEMM sums against the
# float64 reference; relative to the largest value of each gradient
FAST_REL_TOL = 1e-4


def _assert_near(got, ref, what):
    err = np.abs(np.asarray(got, np.float64) - ref).max()
    assert err <= FAST_REL_TOL * np.abs(ref).max(), f"{what}: max error {err}"


@pytest.mark.parametrize("c,oc,slope,size", [(3, 8, 0.1, 9), (16, 4, None, 12), (8, 8, 0.1, 30),
                                             (12, 2, 0.1, 10)])   # C >= 4 OC: kn2row, else Winograd
@pytest.mark.parametrize("gate", [None, 0.2])
def test_fast_conv3x3_backward_is_the_reference(c, oc, slope, size, gate):
    """conv3x3_fast_forward/_backward (Winograd, blocked dW with db, dX through the LeakyReLU
    below when ``gate``) against conv_forward/conv_backward + leaky_relu_backward in float64."""
    nb = _numba_or_skip()
    rng = np.random.default_rng(c + oc)
    x = rng.standard_normal((c, 3, size, size)).astype(np.float32)
    if gate is not None:
        x = grad.leaky_relu(x, gate)          # x as the LeakyReLU below gave it
    w = rng.standard_normal((oc, c * 9)).astype(np.float32) * 0.3
    b = rng.standard_normal(oc).astype(np.float32)
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    z, cols = grad.conv_forward(x64, w64, b64, 3, 1, NP)
    ref_y = z if slope is None else grad.leaky_relu(z, slope)
    y, u = grad.conv3x3_fast_forward(x, w, b, slope, nb)
    _assert_near(y, ref_y, "y")
    dz = rng.standard_normal(y.shape).astype(np.float32)
    ref_dx, ref_dw, ref_db = grad.conv_backward(dz.astype(np.float64), x.shape, cols, w64, 3, 1, NP)
    if gate is not None:
        ref_dx = grad.leaky_relu_backward(ref_dx, x64, gate)
    u_dx = None if u is None else grad._grad_kernels().input_grad_weight(u)   # None: kn2row
    got = grad.conv3x3_fast_backward(dz, x, w, u_dx, nb, gate_slope=gate)
    for name, g, r in zip(("dx", "dw", "db"), got, (ref_dx, ref_dw, ref_db)):
        _assert_near(g, r, name)
    dx, dw, db = grad.conv3x3_fast_backward(dz, x, w, u_dx, nb, input_grad=False, gate_slope=gate)
    assert dx is None
    _assert_near(dw, ref_dw, "dw without dx")
    _assert_near(db, ref_db, "db without dx")


@pytest.mark.parametrize("multiple", [1, 4])
def test_winograd_weight_grad_blocks_cover_every_tile(multiple, monkeypatch):
    """kernels/cpu_numba_grad.winograd_weight_grad (odd and even sizes; blocks of one tile
    row, of several images (with GRAD_BLOCKS_MULTIPLE 1), of all) against dY colsᵀ of
    ops.im2col and db against Σ dY, in float64."""
    _numba_or_skip()
    from w2x.nn import kernel_files, ops
    kg = kernel_files.module("cpu_numba_grad")
    monkeypatch.setattr(kg, "GRAD_BLOCKS_MULTIPLE", multiple)
    rng = np.random.default_rng(9)
    for h, w in ((11, 13), (12, 10)):
        x = rng.standard_normal((5, 3, h, w)).astype(np.float32)
        dy = rng.standard_normal((6, 3, h - 2, w - 2)).astype(np.float32)
        ref = dy.reshape(6, -1).astype(np.float64) @ ops.im2col(x.astype(np.float64), 3, 3, 1).T
        ref_db = dy.astype(np.float64).sum(axis=(1, 2, 3))
        for size in (1, 16 * 11 * 6 * 4 * 8, 1 << 22):       # 1 tile row, 8 (of 3 images' 15-18), all
            monkeypatch.setattr(kg, "WINOGRAD_GRAD_BLOCK_BYTES", size)
            dw, db = kg.winograd_weight_grad(x, dy)
            _assert_near(dw, ref, f"dW {h}x{w}, blocks of {size} bytes")
            _assert_near(db, ref_db, f"db {h}x{w}, blocks of {size} bytes")


def test_weight_grad_has_the_same_bits_on_any_thread_count():
    """dW's (and db's) blocks and the order of their sum do not depend on the thread count (a training
    run repeats bit for bit on another machine's cores); dX's blocks do (the workers share
    its tile rows), and OpenBLAS may round a block's last N % 8 columns otherwise, so dX is
    only compared to a float32 tolerance."""
    _numba_or_skip()
    import numba
    from w2x.nn import kernel_files
    kg = kernel_files.module("cpu_numba_grad")
    rng = np.random.default_rng(13)
    x = rng.standard_normal((8, 4, 20, 20)).astype(np.float32)
    dz = rng.standard_normal((16, 4, 18, 18)).astype(np.float32)
    u_dx = kg.input_grad_weight(kg.winograd_weight(rng.standard_normal((16, 72)).astype(np.float32), 8))
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append(kg.weight_and_input_grad(x, dz, u_dx))
    finally:
        numba.set_num_threads(before)
    for (dx, dw, db) in results[1:]:
        np.testing.assert_array_equal(dw, results[0][1])
        np.testing.assert_array_equal(db, results[0][2])
        np.testing.assert_allclose(dx, results[0][0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("c,oc", [(1, 1), (3, 5), (8, 2)])
def test_input_grad_weight_is_the_transform_of_the_rotated_kernel(c, oc):
    """kernels/cpu_numba_grad.input_grad_weight (the forward's U reordered and transposed)
    against ops.winograd_weight of the kernel rotated by 180 degrees, channels swapped."""
    _numba_or_skip()
    from w2x.nn import kernel_files, ops
    kg = kernel_files.module("cpu_numba_grad")
    w = np.random.default_rng(c * oc).standard_normal((oc, c * 9)).astype(np.float32)
    rotated = w.reshape(oc, c, 3, 3)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(c, oc * 9)  # (C, OC*9)
    got = kg.input_grad_weight(kg.winograd_weight(w, c))
    assert got.shape == (16, c, oc)
    # both are float64 sums rounded once to float32, in another order: a float32 ulp apart at most
    np.testing.assert_allclose(got, ops.winograd_weight(rotated, oc), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("oc,c", [(1, 5), (6, 5), (7, 1), (64, 32)])
def test_winograd_weight_is_the_reference_transform(oc, c):
    """The Numba loop computes in float64 and rounds once, as ops.winograd_weight: same bits."""
    _numba_or_skip()
    from w2x.nn import kernel_files, ops
    kg = kernel_files.module("cpu_numba_grad")
    w = np.random.default_rng(3).standard_normal((oc, c * 9)).astype(np.float32)
    np.testing.assert_array_equal(kg.winograd_weight(w, c), ops.winograd_weight(w, c))


@pytest.mark.parametrize("arch", ["vgg_7", "upconv_7"])
def test_skipping_the_input_gradient_keeps_the_parameter_gradients(arch):
    nb = _numba_or_skip()
    rng = np.random.default_rng(6)
    params = {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in _random_params(arch, 3, rng).items()}
    x = rng.uniform(0.2, 0.8, (3, 2, 18, 18)).astype(np.float32)
    out = []
    for input_grad in (True, False):
        y, tape, slot = grad.forward(arch, 3, params, x, nb, input_grad=input_grad)
        out.append(grad.backward(tape, slot, np.ones_like(y)))
    for name in out[0]:
        np.testing.assert_array_equal(out[0][name][0], out[1][name][0])
        np.testing.assert_array_equal(out[0][name][1], out[1][name][1])


def test_summed_blocks_add_the_terms_in_block_order_whatever_the_timing():
    """kernels/cpu_numba_grad._summed_blocks: terms of very different sizes (float32 sums
    that depend on their order) whose first block finishes last, on 1 and on all threads:
    the bits of the in-order float32 sum each time (so training steps repeat bit for bit)."""
    _numba_or_skip()
    import time

    import numba
    from w2x.nn import kernel_files
    kg = kernel_files.module("cpu_numba_grad")
    rng = np.random.default_rng(5)
    terms = [(rng.standard_normal((3, 4)) * 10.0 ** rng.integers(-4, 5)).astype(np.float32)
             for _ in range(9)]
    want = np.zeros((3, 4), np.float32)
    for t in terms:
        want += t

    def work(i, out):
        if i == 0:
            time.sleep(0.05)      # the other threads finish blocks 1.. first
        out[...] = terms[i]

    before = numba.get_num_threads()
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            totals = []       # what the thread that added the last term was handed, once
            blocks, run = kg._summed_blocks(list(range(len(terms))), (3, 4), work, lambda t: totals.append(t.copy()))
            kg._run_blocks(blocks, run)
            assert len(totals) == 1
            np.testing.assert_array_equal(totals[0], want)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("arch,size", [("vgg_7", 16), ("upconv_7", 14), ("cunet", 100), ("upcunet", 76)])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_step_leaves_no_garbage_cycle(arch, size, backend):
    """The tape's closures and the tape refer to each other; the backward must break that,
    or every step's activations wait for the cyclic garbage collector (memory piled up over
    several steps of training, each page-faulting fresh memory in)."""
    be = NP if backend == "numpy" else _numba_or_skip()
    rng = np.random.default_rng(8)
    params = {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in _random_params(arch, 3, rng).items()}
    x = rng.uniform(0.2, 0.8, (3, 1, size, size)).astype(np.float32)
    y, tape, slot = grad.forward(arch, 3, params, x, be)     # a first step: Numba loads its kernels
    grad.backward(tape, slot, np.ones_like(y))
    gc.collect()
    gc.disable()
    try:
        y, tape, slot = grad.forward(arch, 3, params, x, be)
        grads = grad.backward(tape, slot, np.ones_like(y))
        del y, tape, slot, grads
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (5, 2, 3, 7), (4, 3, 8, 8)])
def test_leaky_relu_backward_is_the_reference(shape, monkeypatch):
    """kernels/cpu_numba_grad.leaky_relu_backward, channels split in 3 as on more threads,
    against grad.leaky_relu_backward (zeros in y included: the slope applies there)."""
    _numba_or_skip()
    from w2x.nn import kernel_files
    kg = kernel_files.module("cpu_numba_grad")
    monkeypatch.setattr(kernel_files.module("cpu_numba"), "ELEMENTWISE_SPLIT_MIN", 1)
    monkeypatch.setattr(kernel_files.module("cpu_numba"), "_threads", lambda: 3)
    rng = np.random.default_rng(11)
    dy, y = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    y.reshape(-1)[::4] = 0.0
    np.testing.assert_array_equal(kg.leaky_relu_backward(dy, y, 0.1), grad.leaky_relu_backward(dy, y, 0.1))


def test_a_gated_winograd_conv_is_the_conv_then_the_leaky_relu_backward():
    """kernels/cpu_numba.winograd_blocks with a gate (odd and even sizes, zeros in the gate)
    against the ungated conv then grad.leaky_relu_backward: the same bits (one product
    with the slope, either way); an F(4x4) weight or a gate of another shape is refused."""
    _numba_or_skip()
    from w2x.nn import kernel_files, ops
    kn = kernel_files.module("cpu_numba")
    rng = np.random.default_rng(15)
    for h, w in ((9, 12), (10, 7)):
        dz = rng.standard_normal((4, 2, h, w)).astype(np.float32)
        wt = rng.standard_normal((3, 4 * 9)).astype(np.float32)
        u, zero = ops.winograd_weight(wt, 4), np.zeros(3, np.float32)
        gate = rng.standard_normal((3, 2, h + 2, w + 2)).astype(np.float32)
        gate.reshape(-1)[::5] = 0.0
        out = []
        for g in (None, gate):
            y, blocks, work = kn.winograd_blocks(dz, u, zero, None, pad=2, gate=g, gate_slope=0.1)
            kn._run_blocks(blocks, work)
            out.append(y)
        np.testing.assert_array_equal(out[1], grad.leaky_relu_backward(out[0], gate, 0.1))
    with pytest.raises(ValueError, match="gate"):
        kn.winograd_blocks(dz, ops.winograd_weight(wt, 4, 4), zero, None, pad=2, gate=gate)
    with pytest.raises(ValueError, match="gate"):
        kn.winograd_blocks(dz, u, zero, None, pad=2, gate=gate[:, :, 1:])


def test_winograd_weights_of_all_layers_at_once_are_each_layers():
    """kernels/cpu_numba_grad.winograd_weights (layers shared out among the threads) gives
    each layer's winograd_weight and input_grad_weight, in the order asked."""
    _numba_or_skip()
    from w2x.nn import kernel_files
    kg = kernel_files.module("cpu_numba_grad")
    rng = np.random.default_rng(12)
    weights = [(rng.standard_normal((oc, c * 9)).astype(np.float32), c) for oc, c in ((4, 3), (32, 16), (8, 8))]
    for (w, c), (u, u_dx) in zip(weights, kg.winograd_weights(weights)):
        np.testing.assert_array_equal(u, kg.winograd_weight(w, c))
        np.testing.assert_array_equal(u_dx, kg.input_grad_weight(kg.winograd_weight(w, c)))


def test_a_tape_runs_backward_once():
    """Its closures are dropped as they run: a second backward would find none and return
    nothing, so it raises instead."""
    rng = np.random.default_rng(14)
    params = _random_params("vgg_7", 1, rng)
    x = rng.uniform(0.2, 0.8, (1, 1, 16, 16))
    y, tape, slot = grad.forward("vgg_7", 1, params, x, NP)
    grad.backward(tape, slot, np.ones_like(y))
    with pytest.raises(RuntimeError, match="already run"):
        grad.backward(tape, slot, np.ones_like(y))


def test_a_leaky_relu_output_with_two_consumers_sends_both_gradients_back():
    """Graph._fast_conv: conv b takes a's LeakyReLU output and sends its dX through that
    LeakyReLU straight to a's conv; the same output also feeds a crop-add, whose gradient
    takes the LeakyReLU's own tape entry; the two add up at a's conv (the numba graph, with
    its fast path, against the numpy graph, which has none)."""
    nb = _numba_or_skip()
    from w2x.nn.archs import LayerSpec
    specs = {"a": LayerSpec("a", "conv", 3, 8, 3), "b": LayerSpec("b", "conv", 8, 8, 3)}
    rng = np.random.default_rng(16)
    params = {n: ((rng.standard_normal((sp.out_channels, sp.in_channels * 9)) * 0.3).astype(np.float32),
                  (rng.standard_normal(sp.out_channels) * 0.1).astype(np.float32)) for n, sp in specs.items()}
    x = rng.uniform(-1, 1, (3, 2, 14, 14)).astype(np.float32)
    dy = rng.standard_normal((8, 2, 10, 10)).astype(np.float32)
    results = []
    for be in (NP, nb):
        g = grad.Graph(specs, params, be, winograd=grad.winograd_weights(specs, params, x, be))
        a = g.layer("a", (x, 0), 0.1)
        y, slot = g.crop_add(g.layer("b", a, 0.1), a, 1)      # a's output used twice
        results.append(grad.backward(g.tape, slot, dy))
    assert a[1] not in g.gates                                  # b took a's gate on the numba row
    for name in specs:
        for ref, got in zip(results[0][name], results[1][name]):
            _assert_near(got, ref.astype(np.float64), name)
