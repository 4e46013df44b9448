"""An independent reference for w2x's training: the same vgg_7 / upconv_7 in PyTorch, trained
with autograd and ``torch.optim.Adam`` from the same initial weights on the same batches.

Prints, per arch, the largest relative difference of any layer's weights after N Adam steps
(``max |w_w2x - w_torch| / max |w_torch|`` per layer) and exits 1 above ``--tol``.
Both run in float64 so the comparison measures the algorithms, not float32 rounding.

    PYTHONPATH=. python3 tools/train_twin.py [--steps 10] [--tol 1e-5]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

from w2x.nn import grad
from w2x.nn.archs import ARCHS
from w2x.train.adam import BETA1, BETA2, EPS, Adam, decayed_lr
from w2x.train.loop import he_init
from w2x.train.loss import HUBER_DELTA, RGB_WEIGHTS, clipped_weighted_huber

BATCH, CHANNELS = 16, 3
INPUT = {"vgg_7": 24, "upconv_7": 20}     # small patches: the check is about the arithmetic


def torch_forward(arch: str, tparams: dict, x):
    """The arch in PyTorch (N, C, H, W): LeakyReLU(0.1) after all but the last layer, clamp."""
    specs = ARCHS[arch].spec(CHANNELS)
    for i, s in enumerate(specs):
        w, b = tparams[s.name]
        x = F.conv2d(x, w, b, stride=s.stride) if s.kind == "conv" else \
            F.conv_transpose2d(x, w, b, stride=s.stride, padding=s.pad)
        if i < len(specs) - 1:
            x = F.leaky_relu(x, 0.1)
    return x.clamp(0, 1)


def torch_loss(out, target):
    w = torch.tensor(RGB_WEIGHTS, dtype=out.dtype).view(1, 3, 1, 1)
    d = (out.clamp(0, 1) - target) * w
    a = d.abs()
    return torch.where(a < HUBER_DELTA, 0.5 * d * d, HUBER_DELTA * (a - 0.5 * HUBER_DELTA)).mean()


def to_torch(arch: str, params: dict) -> dict:
    out = {}
    for s in ARCHS[arch].spec(CHANNELS):
        w, b = params[s.name]
        w4 = (w.reshape(s.out_channels, s.in_channels, s.k, s.k) if s.kind == "conv"
              else w.T.reshape(s.in_channels, s.out_channels, s.k, s.k))   # (OC*k*k, C) -> (C, OC, k, k)
        out[s.name] = (torch.tensor(w4, requires_grad=True), torch.tensor(b, requires_grad=True))
    return out


def compare(arch: str, steps: int, seed: int = 0) -> tuple[float, float]:
    """(max relative difference w2x vs torch, max relative change of the weights by training)."""
    rng = np.random.default_rng(seed)
    params = {k: (w.astype(np.float64), b.astype(np.float64) + 0.01)
              for k, (w, b) in he_init(arch, CHANNELS, rng).items()}
    tparams = to_torch(arch, params)
    initial = {n: w.copy() for n, (w, _) in params.items()}
    opt = torch.optim.Adam([t for wb in tparams.values() for t in wb], lr=decayed_lr(0.00025, 0),
                           betas=(BETA1, BETA2), eps=EPS)
    adam = Adam()
    be = grad.training_backend("numpy")
    size = INPUT[arch]
    for _ in range(steps):
        x = rng.uniform(0, 1, (CHANNELS, BATCH, size, size))
        out, tape, slot = grad.forward(arch, CHANNELS, params, x, be)
        target = np.clip(x.mean() + 0.3 * rng.standard_normal(out.shape), 0, 1)
        _, dout = clipped_weighted_huber(out, target)
        g = grad.backward(tape, slot, dout)
        flat_p = {f"{n}.{i}": a for n, wb in params.items() for i, a in enumerate(wb)}
        adam.step(flat_p, {f"{n}.{i}": a for n, wb in g.items() for i, a in enumerate(wb)}, BATCH)
        # torch, the same batch (N, C, H, W)
        for group in opt.param_groups:
            group["lr"] = decayed_lr(0.00025, adam.samples_seen - BATCH)
        opt.zero_grad()
        tout = torch_forward(arch, tparams, torch.tensor(x.transpose(1, 0, 2, 3)))
        torch_loss(tout, torch.tensor(target.transpose(1, 0, 2, 3))).backward()
        opt.step()
    worst = 0.0
    ref = to_torch(arch, params)
    for name, (tw, tb) in tparams.items():
        for ours, theirs in zip(ref[name], (tw, tb)):
            theirs = theirs.detach().numpy()
            worst = max(worst, float(np.abs(ours.detach().numpy() - theirs).max() / np.abs(theirs).max()))
    moved = max(float(np.abs(params[n][0] - w0).max() / np.abs(w0).max()) for n, w0 in initial.items())
    return worst, moved


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--tol", type=float, default=1e-5)
    args = p.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    ok = True
    for arch in ("vgg_7", "upconv_7"):
        worst, moved = compare(arch, args.steps)
        ok &= worst <= args.tol
        print(f"{arch}: {args.steps} Adam steps moved the weights by up to {moved:.3e} (relative); "
              f"max relative weight difference w2x vs torch {worst:.3e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
