"""Training stage: Adam with the original's per-minibatch learning-rate decay
(lib/minibatch_adam.lua:62-63, ``optim.adam`` defaults β1 0.9, β2 0.999, ε 1e-8).

The update is written as ``torch.optim.Adam`` computes it (ε added to sqrt(v)/sqrt(1-β2^t)),
so that tools/train_twin.py can compare step for step; torch7's optim.adam differs only in
where ε enters, before the bias correction: shorter first steps for tiny gradients (guide §11).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

LEARNING_RATE = 0.00025          # lib/settings.lua -learning_rate
LEARNING_RATE_DECAY = 3.0e-7     # lib/settings.lua -learning_rate_decay
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def decayed_lr(lr0: float, samples_seen: int, decay: float = LEARNING_RATE_DECAY) -> float:
    """``lr0 / (1 + samples_seen * decay)``."""
    return lr0 / (1.0 + samples_seen * decay)


@dataclass
class Adam:
    """Adam state for a dict of parameter arrays; ``step`` updates them in place."""
    lr0: float = LEARNING_RATE
    decay: float = LEARNING_RATE_DECAY
    t: int = 0
    samples_seen: int = 0
    m: dict = field(default_factory=dict)
    v: dict = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return decayed_lr(self.lr0, self.samples_seen, self.decay)

    def step(self, params: dict, grads: dict, batch_size: int, update: Callable | None = None) -> None:
        """One update of every ``params[key]`` (arrays, in place) by ``grads[key]``; then the
        sample count grows by ``batch_size`` and the next step's rate decays.  ``update``:
        ``update_numpy`` (the default) or a twin with its signature and bits
        (``update_for``)."""
        update = update or update_numpy
        lr = self.lr
        self.t += 1
        bc1, bc2 = 1 - BETA1 ** self.t, 1 - BETA2 ** self.t
        for key, p in params.items():
            if key not in self.m:            # the first step: moments start at zero
                self.m[key], self.v[key] = np.zeros_like(p), np.zeros_like(p)
            update(p, grads[key], self.m[key], self.v[key], lr / bc1, math.sqrt(bc2))
        self.samples_seen += batch_size


def update_for(backend_name: str) -> Callable:
    """The update ``Adam.step`` should run on a backend's arrays: on "numba", one pass of
    kernels/cpu_numba_grad.adam_update (NumPy's bits, 5x faster) for float32 C-contiguous
    arrays and ``update_numpy`` for any other; elsewhere ``update_numpy``."""
    if backend_name != "numba":
        return update_numpy
    from w2x.nn import kernel_files
    fused = kernel_files.module("cpu_numba_grad").adam_update

    def update(p, g, m, v, step_size: float, bias2_sqrt: float) -> None:
        if all(a.dtype == np.float32 and a.flags.c_contiguous for a in (p, g, m, v)):
            fused(p, g, m, v, step_size, bias2_sqrt, BETA1, BETA2, EPS)
        else:
            update_numpy(p, g, m, v, step_size, bias2_sqrt)
    return update


def update_numpy(p, g, m, v, step_size: float, bias2_sqrt: float) -> None:
    """Adam's update of one parameter array p (in place) by its gradient g, with its moments
    m and v (in place): the bias-corrected step ``step_size`` = lr / (1 - β1^t) and
    ``bias2_sqrt`` = sqrt(1 - β2^t).  Python floats combine with float32 arrays as float32."""
    m *= BETA1
    m += (1 - BETA1) * g
    v *= BETA2
    v += (1 - BETA2) * g * g
    denom = np.sqrt(v) / bias2_sqrt + EPS
    p -= step_size * m / denom
