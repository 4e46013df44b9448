"""Training stage: backward passes of every waifu2x layer and graph, as im2col + GEMM run backwards.

Each backward sits beside the forward it inverts and calls only backend primitives
(``be.im2col``, ``be.col2im``, ``be.matmul``), so the numpy and numba rows of the backend
table both run it (the cupy row has the same signatures; unverified without a GPU).
Activations are (C, N, H, W) as in ``ops.py``; every function is dtype-generic so the
gradient checks can run in float64.

Parameters are held in GEMM form, ``params[name] = (w, b)``: a conv's ``w`` is the torch
weight reshaped to (OC, C*k*k) (``layers.Conv2d.w2d``), a transposed conv's is
(OC*k*k, C) (``layers.ConvTranspose2d.wt``).

On the numba row in float32, 3x3 stride-1 convs take a fast path (``conv3x3_fast_*``,
kernels/cpu_numba_grad.py: Winograd forward, dX and dW with db, kn2row for few outputs;
dX leaves through the LeakyReLU backward of the layer below, ``Graph._fast_conv``) that
keeps no im2col matrix; ``conv_forward`` / ``conv_backward`` stay the reference it is
tested against (tests/test_grad.py).

The graphs (``forward``) record a tape of backward closures; ``backward`` replays it in
reverse and returns ``grads[name] = (dw, db)`` with the shapes of ``params``.  They mirror
``archs.forward_sequential`` / ``archs.forward_cunet`` (torch7 nn's updateGradInput /
accGradParameters of SpatialConvolutionMM, SpatialFullConvolution, LeakyReLU, Mean, Sigmoid,
CMulTable, SpatialZeroPadding, CAddTable, w2nn.InplaceClip01 in lib/srcnn.lua).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from w2x.nn import kernel_files, ops
from w2x.nn.archs import ARCHS, LayerSpec
from w2x.nn.backend import Backend, get_backend
from w2x.nn.layers import KN2ROW_MIN_RATIO
from w2x.nn.ops import LEAKY_SLOPE, out_size


def training_backend(name: str) -> Backend:
    """The backend ``name`` for training, with ``ops.im2col`` on the CPU rows: it allocates
    fresh columns (numpy's inference im2col reuses one per-thread buffer, which the backward
    pass still needs), keeps the input's dtype (float64 for the gradient checks), and its
    strided copies ran 2.5x faster than the single-threaded numba kernel on a 128-channel
    batch of 16 (tools/train_speed.py)."""
    be = get_backend(name)
    return dataclasses.replace(be, im2col=ops.im2col) if be.device == "cpu" else be


# --- layers: forward and backward ----------------------------------------------------------
def conv_forward(x, w, b, k: int, stride: int, be: Backend):
    """Valid conv: x (C, N, H, W), w (OC, C*k*k), b (OC,) -> (y (OC, N, OH, OW), cols)."""
    c, n, h, wd = x.shape
    oh, ow = out_size(h, k, stride), out_size(wd, k, stride)
    cols = x.reshape(c, n * h * wd) if k == 1 else be.im2col(x, k, k, stride)  # (C*k*k, N*OH*OW)
    y = be.matmul(w, cols) + b[:, None]                                             # (OC, N*OH*OW)
    return y.reshape(w.shape[0], n, oh, ow), cols


def conv_backward(dy, x_shape, cols, w, k: int, stride: int, be: Backend):
    """Gradients of ``conv_forward``: dW = dY colsᵀ, db = Σ dY, dX = col2im(Wᵀ dY).

    dy (OC, N, OH, OW) -> (dx (C, N, H, W), dw (OC, C*k*k), db (OC,)).  col2im with pad 0 is
    the transposed conv; rows/columns a strided conv never read get a zero gradient.
    """
    c, n, h, wd = x_shape
    oc, _, oh, ow = dy.shape
    dy2 = dy.reshape(oc, n * oh * ow)                 # (OC, N*OH*OW)
    # dW = dY colsᵀ computed as (cols dYᵀ)ᵀ: OpenBLAS runs the long-K product 9x faster
    # with the wide matrix on the left ((C*k*k, M) @ (M, OC)), same sums
    dw = be.xp.ascontiguousarray(be.matmul(cols, dy2.T).T)
    db = dy2.sum(axis=1)
    dcols = be.matmul(w.T, dy2)                       # (C*k*k, N*OH*OW)
    if k == 1 and stride == 1:
        return dcols.reshape(c, n, h, wd), dw, db
    dx = be.col2im(dcols, (c, n, oh, ow), k, k, stride, 0)   # (C, N, (OH-1)*s + k, ...)
    if dx.shape[2:] != (h, wd):                       # trailing pixels no window covered
        dx = be.xp.pad(dx, ((0, 0), (0, 0), (0, h - dx.shape[2]), (0, wd - dx.shape[3])))
    return dx, dw, db


def deconv_forward(x, wt, b, k: int, stride: int, pad: int, be: Backend):
    """Transposed conv: x (C, N, H, W), wt (OC*k*k, C) -> y (OC, N, OH, OW) by GEMM + col2im,
    or in float32 by the backend's fused ``conv_transpose`` where it has one (inference's:
    numba's gathers each output row on the workers, with the bias; ``ops.conv_transpose``
    is its reference)."""
    if be.conv_transpose is not None and x.dtype == wt.dtype == np.float32:
        return be.conv_transpose(x, wt, b, k, stride, pad, None)
    c, n, h, w = x.shape
    oc = wt.shape[0] // (k * k)
    cols = be.matmul(wt, x.reshape(c, n * h * w))                       # (OC*k*k, N*H*W)
    y = be.col2im(cols, (oc, n, h, w), k, k, stride, pad)
    return y + b[:, None, None, None]


def deconv_backward(dy, x, wt, k: int, stride: int, pad: int, be: Backend):
    """Gradients of ``deconv_forward``: the adjoint of col2im is im2col of dY padded by
    ``pad``; then dWt = dcols Xᵀ, dX = Wtᵀ dcols, db = Σ dY."""
    c, n, h, w = x.shape
    xp = be.xp
    dyp = xp.pad(dy, ((0, 0), (0, 0), (pad, pad), (pad, pad)))          # (OC, N, OH+2p, OW+2p)
    dcols = be.im2col(xp.ascontiguousarray(dyp), k, k, stride)          # (OC*k*k, N*H'*W')
    hh, ww = out_size(dyp.shape[2], k, stride), out_size(dyp.shape[3], k, stride)
    if (hh, ww) != (h, w):  # only when the padded size overhangs; keep the windows of real pixels
        dcols = dcols.reshape(-1, n, hh, ww)[:, :, :h, :w].reshape(-1, n * h * w)
    x2 = x.reshape(c, n * h * w)
    dwt = be.xp.ascontiguousarray(be.matmul(x2, dcols.T).T)             # (OC*k*k, C), see conv_backward
    dx = be.matmul(wt.T, dcols).reshape(c, n, h, w)
    db = dy.sum(axis=(1, 2, 3))
    return dx, dwt, db


# --- the fast 3x3 stride-1 conv of the numba row (float32) ---------------------------------
def fast_conv_eligible(x, k: int, stride: int, slope: float | None, be: Backend) -> bool:
    """Whether a conv layer runs on ``conv3x3_fast_forward``/``_backward``: a 3x3 stride-1
    float32 conv on a backend with Winograd and the numba backward kernels, its activation
    none or a LeakyReLU with slope > 0 (whose backward reads the output's sign)."""
    return (k == 3 and stride == 1 and be.winograd_conv3x3 is not None and be.device == "cpu"
            and x.dtype == np.float32 and (slope is None or slope > 0))


def _grad_kernels():
    return kernel_files.module("cpu_numba_grad")


def _kn2row(x, w) -> bool:
    """Whether the conv of x by w runs as kn2row (``_kn2row_channels``)."""
    return _kn2row_channels(x.shape[0], w.shape[0])


def _kn2row_channels(c: int, oc: int) -> bool:
    """Whether a conv of C inputs and OC outputs runs as kn2row (kernels/cpu_numba_grad.kn2row_*),
    where inference does (``layers.KN2ROW_MIN_RATIO``, vgg_7's 128->3): GEMMs of OC*9 rows
    instead of C*9."""
    return c >= KN2ROW_MIN_RATIO * oc


def conv3x3_fast_forward(x, w, b, slope: float | None, be: Backend, u=None):
    """conv + bias + LeakyReLU(slope) (None: no activation) by the backend's Winograd kernel,
    or kn2row for few outputs: (y (OC, N, OH, OW), u), u the Winograd weight (16, OC, C) that
    the backward reuses (given, or computed here; None for kn2row); no columns are kept
    (the backward re-reads x)."""
    kg = _grad_kernels()
    if _kn2row(x, w):
        return kg.kn2row_forward(x, ops.kn2row_weight(w, x.shape[0], 3), b, 3, slope, be.matmul), None
    if u is None:
        u = kg.winograd_weight(w, x.shape[0])                           # (16, OC, C)
    return be.winograd_conv3x3(x, u, b, slope), u


def conv3x3_fast_backward(dz, x, w, u_dx, be: Backend, input_grad: bool = True, gate_slope: float | None = None):
    """Gradients of ``conv3x3_fast_forward``'s conv from dZ at its pre-activation (its
    LeakyReLU's backward runs before: ``Graph._fast_conv``): dW by Winograd run backwards with
    db = Σ dZ from the same transform of dZ (kernels/cpu_numba_grad.py), dX = the Winograd
    conv of dZ padded by 2 with the rotated, transposed weights ``u_dx``
    (``input_grad_weight`` of the forward's u; None for kn2row).

    ``gate_slope``: x is the output of a LeakyReLU of that slope, and dX is returned through
    it, the gradient at that LeakyReLU's input (applied as dX's blocks write it).
    Returns (dx or None when not ``input_grad``, dw, db); equal to ``conv_backward`` (then
    ``leaky_relu_backward`` of x) up to float32 rounding."""
    kg = _grad_kernels()
    c = x.shape[0]
    dz = np.ascontiguousarray(dz, dtype=np.float32)
    if _kn2row(x, w):
        db = dz.sum(axis=(1, 2, 3), dtype=np.float64).astype(np.float32)
        dx, dw = kg.kn2row_backward(dz, x, ops.kn2row_weight(w, c, 3), 3, be.matmul, input_grad)
        if dx is not None and gate_slope is not None:
            dx = kg.leaky_relu_backward(dx, x, gate_slope)
        return dx, dw, db
    if not input_grad:
        return (None, *kg.winograd_weight_grad(x, dz))
    return kg.weight_and_input_grad(x, dz, u_dx, gate_slope)


def leaky_relu(x, slope: float):
    """LeakyReLU(slope) (ReLU when slope is 0), out of place."""
    return x * np.where(x > 0, 1.0, slope).astype(x.dtype)


def leaky_relu_backward(dy, x, slope: float):
    """dX = dY where x > 0, slope * dY elsewhere (torch7 LeakyReLU updateGradInput)."""
    return dy * np.where(x > 0, 1.0, slope).astype(dy.dtype)


def clip01(x):
    return np.clip(x, 0.0, 1.0)


def clip01_backward(dy, x):
    """The derivative of clamp(x, 0, 1): dY inside (0, 1), 0 outside."""
    return dy * ((x > 0) & (x < 1))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def crop_add_backward(dy, b_shape, crop: int):
    """``a + crop(b)``: da = dY, db = dY zero-padded by ``crop`` to b's shape."""
    db = np.zeros(b_shape, dtype=dy.dtype)
    db[:, :, crop:crop + dy.shape[2], crop:crop + dy.shape[3]] = dy
    return dy, db


# --- the tape -----------------------------------------------------------------------------
class Tape:
    """The forward values' backward closures, in order; ``backward`` runs them in reverse.

    Values are slots (ints); a closure maps the gradient of its output slot to gradients of
    its input slots, and parameter gradients go into ``self.grads`` (name -> [dw, db]).
    """

    def __init__(self, be: Backend):
        self.be = be
        self.entries: list[tuple[int, tuple[int, ...], Callable]] = []
        self.n_slots = 1              # slot 0 is the input
        self.spent = False            # backward has run: the closures are gone
        self.grads: dict[str, list] = {}

    def record(self, inputs: tuple[int, ...], fn: Callable) -> int:
        slot = self.n_slots
        self.n_slots += 1
        self.entries.append((slot, inputs, fn))
        return slot

    def backward(self, dy, out_slot: int):
        """Returns the input's gradient; parameter gradients are left in ``self.grads``.

        Runs once: each closure is dropped as soon as it has run, so the activations it holds
        are freed during the backward pass, not at the next run of Python's cyclic garbage
        collector (the closures hold the tape, the tape them: a cycle).  Left to the
        collector, a training step's ~15 MB of activations piled up over several steps, each
        step page-faulting fresh memory in (upconv_7, batch 16: ~4000 faults a step)."""
        if self.spent:
            raise RuntimeError("this tape's backward has already run; record a new forward")
        self.spent = True
        g: dict[int, object] = {out_slot: dy}
        while self.entries:
            slot, inputs, fn = self.entries.pop()
            if slot not in g:
                continue
            for i, d in zip(inputs, fn(g.pop(slot))):
                if d is not None:     # None: an input gradient nobody asked for
                    g[i] = d if i not in g else g[i] + d
        return g.get(0)

    def add_param_grad(self, name: str, dw, db) -> None:
        if name in self.grads:
            self.grads[name][0] = self.grads[name][0] + dw
            self.grads[name][1] = self.grads[name][1] + db
        else:
            self.grads[name] = [dw, db]


class Graph:
    """A forward pass that records itself: each method takes and returns (value, slot)."""

    def __init__(self, specs: dict[str, LayerSpec], params: dict, be: Backend, input_grad: bool = True,
                 winograd: dict | None = None):
        self.specs, self.params, self.be = specs, params, be
        self.input_grad = input_grad
        self.winograd = winograd or {}     # name -> (u, u_dx), ``winograd_weights``
        self.gates: dict[int, tuple[int, float]] = {}   # see ``_fast_conv``
        self.tape = Tape(be)

    def layer(self, name: str, v, slope: float | None):
        """The named conv or transposed conv, then LeakyReLU(slope) unless None."""
        x, s = v
        sp, (w, b), be = self.specs[name], self.params[name], self.be
        tape = self.tape
        if sp.kind == "conv" and fast_conv_eligible(x, sp.k, sp.stride, slope, be):
            return self._fast_conv(name, v, w, b, slope)
        if sp.kind == "conv":
            y, cols = conv_forward(x, w, b, sp.k, sp.stride, be)

            def back(dy, x_shape=x.shape, cols=cols, w=w, sp=sp):
                dx, dw, db = conv_backward(dy, x_shape, cols, w, sp.k, sp.stride, be)
                tape.add_param_grad(name, dw, db)
                return (dx,)
        else:
            y = deconv_forward(x, w, b, sp.k, sp.stride, sp.pad, be)

            def back(dy, x=x, w=w, sp=sp):
                dx, dw, db = deconv_backward(dy, x, w, sp.k, sp.stride, sp.pad, be)
                tape.add_param_grad(name, dw, db)
                return (dx,)
        v = (y, tape.record((s,), back))
        return v if slope is None else self.act(v, slope)

    def _fast_conv(self, name: str, v, w, b, slope: float | None):
        """``layer`` on the fast path: two tape entries, the conv (which takes dZ at its
        pre-activation) and, unless ``slope`` is None, its LeakyReLU.  Where x is the
        LeakyReLU output of a fast conv below (``self.gates``; the first such consumer
        only), the conv sends its dX through that LeakyReLU itself, straight to the conv
        below; the LeakyReLU's own entry then runs only if another consumer of x sends it a
        gradient (the two add up: the LeakyReLU's backward is linear in dY)."""
        x, s = v
        be, tape = self.be, self.tape
        u, u_dx = self.winograd.get(name, (None, None))
        y, u = conv3x3_fast_forward(x, w, b, slope, be, u)
        below = self.gates.pop(s, None)        # (the conv below's slot, its slope) or None
        need_dx = self.input_grad or s != 0

        def back(dz, x=x, w=w, u=u, u_dx=u_dx):
            if u_dx is None and u is not None:
                u_dx = _grad_kernels().input_grad_weight(u)
            dx, dw, db = conv3x3_fast_backward(dz, x, w, u_dx, be, need_dx, None if below is None else below[1])
            tape.add_param_grad(name, dw, db)
            return (dx,)
        z_slot = tape.record((s if below is None else below[0],), back)
        if slope is None:
            return y, z_slot
        y_slot = tape.record((z_slot,), lambda dy: (_grad_kernels().leaky_relu_backward(dy, y, slope),))
        self.gates[y_slot] = (z_slot, slope)
        return y, y_slot

    def act(self, v, slope: float):
        x, s = v
        return leaky_relu(x, slope), self.tape.record((s,), lambda dy: (leaky_relu_backward(dy, x, slope),))

    def clip(self, v):
        x, s = v
        return clip01(x), self.tape.record((s,), lambda dy: (clip01_backward(dy, x),))

    def crop_add(self, a, b, crop: int):
        (xa, sa), (xb, sb) = a, b
        h, w = xa.shape[2:]
        y = xa + xb[:, :, crop:crop + h, crop:crop + w]
        return y, self.tape.record((sa, sb), lambda dy: crop_add_backward(dy, xb.shape, crop))

    def se(self, v, name: str):
        """SEBlock: x * sigmoid(excite(relu(squeeze(mean_hw(x))))) (lib/srcnn.lua:232-244)."""
        x, s = v
        c, n, h, w = x.shape
        m = x.mean(axis=(2, 3)).reshape(c, n, 1, 1)                    # (C, N, 1, 1)
        ms = self.tape.record((s,), lambda dm: (np.broadcast_to(dm.reshape(c, n, 1, 1) / (h * w), x.shape),))
        e, es = self.layer(f"{name}.se.excite", self.layer(f"{name}.se.squeeze", (m, ms), 0.0), None)
        z = sigmoid(e)                                                  # (C, N, 1, 1)
        zs = self.tape.record((es,), lambda dz: (dz * z * (1 - z),))
        y = x * z

        def back(dy):
            return dy * z, (dy * x).sum(axis=(2, 3), keepdims=True)
        return y, self.tape.record((s, zs), back)


# --- the four graphs, as archs.py runs them --------------------------------------------
def _sequential(g: Graph, v):
    *hidden, last = g.specs
    for name in hidden:
        v = g.layer(name, v, LEAKY_SLOPE)
    return g.clip(g.layer(last, v, None))


def _unet_conv(g: Graph, v, name: str):
    v = g.layer(f"{name}.1", g.layer(f"{name}.0", v, LEAKY_SLOPE), LEAKY_SLOPE)
    return g.se(v, name) if f"{name}.se.squeeze" in g.specs else v


def _unet_branch(g: Graph, v, down: str, inner: Callable, up: str, depad: int):
    y = g.layer(up, inner(g.layer(down, v, LEAKY_SLOPE)), LEAKY_SLOPE)
    return g.crop_add(y, v, depad)


def _unet1(g: Graph, v):
    v = _unet_conv(g, v, "unet1.conv1")
    v = _unet_branch(g, v, "unet1.down1", lambda y: _unet_conv(g, y, "unet1.conv2"), "unet1.up1", 4)
    return g.layer("unet1.out", g.layer("unet1.conv3", v, LEAKY_SLOPE), None)


def _unet2(g: Graph, v):
    def inner(y):
        y = _unet_conv(g, y, "unet2.conv2")
        y = _unet_branch(g, y, "unet2.down2", lambda z: _unet_conv(g, z, "unet2.conv3"), "unet2.up2", 4)
        return _unet_conv(g, y, "unet2.conv4")
    v = _unet_conv(g, v, "unet2.conv1")
    v = _unet_branch(g, v, "unet2.down1", inner, "unet2.up1", 16)
    return g.layer("unet2.out", g.layer("unet2.conv5", v, LEAKY_SLOPE), None)


def _cunet(g: Graph, v):
    z1 = _unet1(g, v)
    return g.clip(g.crop_add(_unet2(g, z1), z1, 20))


GRAPHS = {"vgg_7": _sequential, "upconv_7": _sequential, "cunet": _cunet, "upcunet": _cunet}


def forward(arch: str, channels: int, params: dict, x, be: Backend, input_grad: bool = True):
    """Run ``arch`` on x (C, N, H, W) recording a tape: returns (y (C, N, OH, OW), tape, slot).

    ``input_grad`` False: the backward may skip the gradient of x (training needs only the
    parameters')."""
    specs = {s.name: s for s in ARCHS[arch].spec(channels)}
    g = Graph(specs, params, be, input_grad, winograd_weights(specs, params, x, be))
    y, slot = GRAPHS[arch](g, (x, 0))
    return y, g.tape, slot


def winograd_weights(specs: dict[str, LayerSpec], params: dict, x, be: Backend) -> dict:
    """{name: (u, u_dx)} for every 3x3 stride-1 conv that will run on the Winograd fast path
    (``fast_conv_eligible``, not kn2row), all computed before the forward on the worker
    threads (kernels/cpu_numba_grad.winograd_weights); {} where the fast path does not run."""
    if not fast_conv_eligible(x, 3, 1, None, be):
        return {}
    names = [n for n, sp in specs.items() if sp.kind == "conv" and sp.k == 3 and sp.stride == 1
             and not _kn2row_channels(sp.in_channels, sp.out_channels)]
    weights = _grad_kernels().winograd_weights([(params[n][0], specs[n].in_channels) for n in names])
    return dict(zip(names, weights))


def backward(tape: Tape, slot: int, dy) -> dict[str, tuple]:
    """Parameter gradients of the recorded forward for output gradient dy (C, N, OH, OW)."""
    tape.backward(dy, slot)
    return {name: (dw, db) for name, (dw, db) in tape.grads.items()}


def params_of(layers: dict) -> dict[str, tuple]:
    """``params`` from a loaded model's layers (``Model.layers``), as float32 copies."""
    out = {}
    for name, layer in layers.items():
        w = layer.w2d if hasattr(layer, "w2d") else layer.wt
        out[name] = (np.array(w, dtype=np.float32), np.array(layer.bias, dtype=np.float32))
    return out

