"""Training stage: the epoch loop of train.lua:513-714: per epoch a fresh patch set,
``inner_epoch`` shuffled passes of Adam over it, validation after each pass, the model saved
when the validation MSE improves; a checkpoint after every pass.

Every random draw comes from a generator seeded by (seed, epoch) or (seed, epoch, pass), so
a run resumed from the checkpoint of pass p repeats exactly the draws of an unbroken run:
the checkpoint's RNG state is its position.  Results are bit-for-bit equal on the same
backend and thread count.
"""
from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from w2x.atomic import replacing
from w2x.nn import grad
from w2x.nn.archs import ARCHS
from w2x.nn.models import load_model
from w2x.train import data
from w2x.train.adam import LEARNING_RATE, Adam, update_for
from w2x.train.export import save_model
from w2x.train.loss import clipped_mse, clipped_weighted_huber, instance_mse, psnr_of_mse
from w2x.train.plot import draw_history

VALIDATION_RATE = 0.05        # -validation_rate
VALIDATION_PATCHES = 16       # min(16, patches) per validation image (train.lua:259-341)
VALIDATION_BATCH = 64
# hard-example resampling ("active learning", train.lua:607-631, get_oracle_data :433-451):
# of the top oracle_rate / (1 - ORACLE_DROP_RATE) of an epoch's patches by loss, a random
# oracle_rate of all patches is carried into the next epoch's set
ORACLE_RATE = 0.1             # lib/settings.lua -oracle_rate
ORACLE_DROP_RATE = 0.5        # lib/settings.lua -oracle_drop_rate
LEAKY_GAIN = 1 + 0.1 ** 2     # MSRA gain for LeakyReLU(0.1): 2 / (1 + a²) (He et al. 2015)
CHECKPOINT_VERSION = 1


class TrainError(ValueError):
    """Bad training options or files; the message says what was expected."""


@dataclass(frozen=True)
class TrainConfig:
    arch: str
    method: str
    data: str
    out: str
    channels: int = 3
    noise_level: int = 1
    style: str = "photo"
    val: str | None = None
    init: str | None = None
    epochs: int = 50
    seed: int = 11
    crop_size: int | None = None      # None: 48, or 32 for vgg_7 noise
    batch_size: int = 16
    patches: int = 64
    inner_epoch: int = 4
    learning_rate: float = LEARNING_RATE
    backend: str = "numpy"
    oracle_rate: float = ORACLE_RATE
    identity_init: bool = False       # vgg_7 only: start at the identity map (identity_init)
    filters: tuple = data.DOWNSAMPLING_FILTERS

    @property
    def crop(self) -> int:
        if self.crop_size is not None:
            return self.crop_size
        return 32 if self.arch == "vgg_7" and self.method == "noise" else 48

    def recipe(self) -> data.Recipe:
        return data.Recipe(self.arch, self.channels, self.method, self.noise_level, self.style, self.crop,
                           tuple(self.filters))

    @property
    def checkpoint(self) -> Path:
        return Path(self.out).with_suffix(".ckpt.npz")

    @property
    def log(self) -> Path:
        return Path(self.out).with_suffix(".log.jsonl")

    @property
    def plot(self) -> Path:
        return Path(self.out).with_suffix(".png")


def he_init(arch: str, channels: int, rng) -> dict:
    """MSRA weights N(0, 2 / ((1 + 0.1²) fan_in)), zero biases, in GEMM form; fan_in of a
    transposed conv is C*k*k / stride² (the taps one output pixel sums)."""
    params = {}
    for s in ARCHS[arch].spec(channels):
        if s.kind == "conv":
            fan_in, shape = s.in_channels * s.k * s.k, (s.out_channels, s.in_channels * s.k * s.k)
        else:
            fan_in, shape = s.in_channels * s.k * s.k / s.stride ** 2, (s.out_channels * s.k * s.k, s.in_channels)
        std = math.sqrt(2.0 / (LEAKY_GAIN * fan_in))
        params[s.name] = ((rng.standard_normal(shape) * std).astype(np.float32),
                          np.zeros(s.out_channels, np.float32))
    return params


def identity_init(arch: str, channels: int, rng) -> dict:
    """MSRA weights (``he_init``) around an identity path: in every layer, output channel
    c < ``channels`` is input channel c's centre tap alone, and the last layer is that path
    only, so the net starts as the identity map (cropped by its offset) on inputs >= 0
    (LeakyReLU passes them) while its other channels start random and reach the output
    as soon as the first Adam steps move the last layer off zero (as a zero-initialised
    residual branch does).  Not in the original, which starts noise models from
    MSRA weights; only for nets of 3x3 stride-1 convs with as many outputs as inputs (vgg_7).
    """
    specs = ARCHS[arch].spec(channels)
    if any(s.kind != "conv" or s.k != 3 or s.stride != 1 for s in specs) or ARCHS[arch].scale_factor != 1:
        raise TrainError(f"--identity-init: {arch} is not a stack of 3x3 convs at 1x; use it with vgg_7")
    params = he_init(arch, channels, rng)
    for i, s in enumerate(specs):
        w, _ = params[s.name]
        w4 = w.reshape(s.out_channels, s.in_channels, 3, 3)   # view of the GEMM-form weight
        w4[:channels] = 0.0
        if i == len(specs) - 1:
            w4[:] = 0.0
        for c in range(channels):
            w4[c, c, 1, 1] = 1.0
    return params


def initial_params(cfg: TrainConfig) -> dict:
    if cfg.init is None:
        if cfg.method == "noise_scale":
            raise TrainError("--method noise_scale starts from the scale model: give --init SCALE_MODEL.json")
        rng = np.random.default_rng([cfg.seed, 0xC0FFEE])
        return identity_init(cfg.arch, cfg.channels, rng) if cfg.identity_init else he_init(cfg.arch, cfg.channels, rng)
    if cfg.identity_init:
        raise TrainError("--identity-init and --init both choose the starting weights; give one")
    m = load_model(cfg.init)
    if m.config.arch_name != cfg.arch or m.config.channels != cfg.channels:
        raise TrainError(f"--init {cfg.init} is {m.config.arch_name} with {m.config.channels} channel(s); "
                         f"expected {cfg.arch} with {cfg.channels} (give a model of the same --arch)")
    return grad.params_of(m.layers)


def flat(params: dict) -> dict:
    """name -> (w, b) as a flat dict "name.w" / "name.b" -> array (the same arrays)."""
    return {f"{n}.{p}": a for n, wb in params.items() for p, a in zip("wb", wb)}


def split_images(cfg: TrainConfig, recipe: data.Recipe):
    """(training images, validation images): --val, or 5% held out (at least one)."""
    images = data.usable(data.load_images(cfg.data), recipe, cfg.data)
    if cfg.val is not None:
        return images, data.usable(data.load_images(cfg.val), recipe, cfg.val)
    if len(images) < 2:
        raise TrainError(f"{cfg.data}: one usable image cannot be split for validation; add images or give --val")
    order = np.random.default_rng([cfg.seed, 0x5EED]).permutation(len(images))
    n_val = max(1, round(VALIDATION_RATE * len(images)))
    return [images[i] for i in sorted(order[n_val:])], [images[i] for i in sorted(order[:n_val])]



def validate(cfg: TrainConfig, params: dict, val_set, be) -> tuple[float, float]:
    """(Huber loss, clipped MSE) over the fixed validation patches."""
    x, y = val_set
    losses, sq = [], []
    for i in range(0, x.shape[1], VALIDATION_BATCH):
        out, _, _ = grad.forward(cfg.arch, cfg.channels, params, x[:, i:i + VALIDATION_BATCH], be)
        t = y[:, i:i + VALIDATION_BATCH]
        loss, _ = clipped_weighted_huber(out, t)
        losses.append(loss * t.shape[1])
        sq.append(clipped_mse(out, t) * t.shape[1])
    n = x.shape[1]
    return sum(losses) / n, sum(sq) / n


def train_step(cfg: TrainConfig, params: dict, adam: Adam, x, y, be) -> tuple[float, np.ndarray]:
    """Forward, loss, backward and one Adam step on a batch; returns the loss and each
    patch's clipped MSE before the step (minibatch_adam.lua's instance_loss)."""
    out, tape, slot = grad.forward(cfg.arch, cfg.channels, params, x, be, input_grad=False)
    loss, dout = clipped_weighted_huber(out, y)
    grads = grad.backward(tape, slot, dout)
    adam.step(flat(params), flat(grads), x.shape[1], update=update_for(be.name))
    return loss, instance_mse(out, y)


def hard_examples(instance_loss: np.ndarray, rate: float, rng) -> np.ndarray:
    """Indices of the patches carried into the next epoch (get_oracle_data, train.lua:433-451):
    ``rate`` of all, drawn at random from the top ``rate / (1 - ORACLE_DROP_RATE)`` by loss."""
    n_all = instance_loss.size
    k = min(n_all, int(n_all * rate / (1 - ORACLE_DROP_RATE)))
    n = min(k, int(n_all * rate))
    top = np.argsort(-instance_loss, kind="stable")[:k]
    return top[rng.permutation(k)[:n]]


def epoch_patches(cfg: TrainConfig, recipe: data.Recipe, train_images, epoch: int, carried):
    """The epoch's patch set: the carried hard examples (x, y) first, then fresh patches
    (drawn from the (seed, 1, epoch) generator) up to the usual count (train.lua:607-631)."""
    x_all, y_all = data.patch_set(train_images, recipe, cfg.patches, np.random.default_rng([cfg.seed, 1, epoch]))
    if carried is None:
        return x_all, y_all
    total = x_all.shape[1]
    cx, cy = carried[0][:, :total], carried[1][:, :total]   # never more than the usual count
    n = total - cx.shape[1]
    return (np.concatenate([cx, x_all[:, :n]], axis=1), np.concatenate([cy, y_all[:, :n]], axis=1))


# --- checkpoint ------------------------------------------------------------------------
def save_checkpoint(cfg: TrainConfig, params: dict, adam: Adam, state: dict, extra: dict | None = None) -> None:
    """Weights, Adam moments, the position and ``extra`` arrays (the epoch's carried hard
    examples and the last pass's patch losses), in one .npz replaced atomically."""
    arrays = {f"param/{k}": v for k, v in flat(params).items()}
    arrays.update({f"m/{k}": v for k, v in adam.m.items()})
    arrays.update({f"v/{k}": v for k, v in adam.v.items()})
    arrays.update({f"extra/{k}": v for k, v in (extra or {}).items()})
    meta = {"version": CHECKPOINT_VERSION, "config": asdict(cfg), "state": state,
            "adam": {"t": adam.t, "samples_seen": adam.samples_seen, "lr0": adam.lr0, "decay": adam.decay}}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with replacing(cfg.checkpoint) as f:
        f.write(buf.getvalue())


def load_checkpoint(cfg: TrainConfig) -> tuple[dict, Adam, dict, dict]:
    path = cfg.checkpoint
    if not path.is_file():
        raise TrainError(f"--resume: no checkpoint {path}; run without --resume first")
    try:
        z = np.load(path)
        meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, ValueError, KeyError) as e:
        raise TrainError(f"{path}: not a readable w2x checkpoint ({e})") from None
    old = dict(meta["config"])
    old.setdefault("oracle_rate", 0.0)   # a checkpoint from before hard-example resampling
    for key in ("arch", "method", "channels", "seed", "noise_level", "style", "oracle_rate"):
        if old[key] != getattr(cfg, key):
            raise TrainError(f"--resume: the checkpoint has {key}={old[key]!r}, the command {getattr(cfg, key)!r}")
    params = {s.name: (z[f"param/{s.name}.w"].copy(), z[f"param/{s.name}.b"].copy())
              for s in ARCHS[cfg.arch].spec(cfg.channels)}
    a = meta["adam"]
    adam = Adam(a["lr0"], a["decay"], a["t"], a["samples_seen"],
                {k[2:]: z[k].copy() for k in z.files if k.startswith("m/")},
                {k[2:]: z[k].copy() for k in z.files if k.startswith("v/")})
    extra = {k[6:]: z[k].copy() for k in z.files if k.startswith("extra/")}
    return params, adam, meta["state"], extra


def _carried(extra: dict):
    return (extra["carried_x"], extra["carried_y"]) if "carried_x" in extra else None


# --- the loop ------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, report: Callable[[str, dict], None] = lambda kind, info: None,
          stop_after_passes: int | None = None) -> dict:
    """Train; returns the final state. ``report("batch"|"pass", info)`` tells progress.

    ``stop_after_passes`` ends the run after that many passes of this call (to test resume).
    """
    if cfg.arch not in ARCHS:
        raise TrainError(f"--arch {cfg.arch}: expected one of {', '.join(ARCHS)}")
    if not 0 <= cfg.oracle_rate <= 1 - ORACLE_DROP_RATE:
        raise TrainError(f"--oracle-rate {cfg.oracle_rate}: expected 0 (off) to {1 - ORACLE_DROP_RATE}")
    recipe = cfg.recipe()
    recipe.check()
    be = grad.training_backend(cfg.backend)
    train_images, val_images = split_images(cfg, recipe)
    val_set = data.patch_set(val_images, recipe, min(VALIDATION_PATCHES, cfg.patches),
                             np.random.default_rng([cfg.seed, 0xA11]), augment=False)
    extra: dict = {}     # "carried_x"/"carried_y": this epoch's hard examples; "instance_loss"
    if resume:
        params, adam, state, extra = load_checkpoint(cfg)
    else:
        params, adam = initial_params(cfg), Adam(cfg.learning_rate)
        cfg.log.unlink(missing_ok=True)
        # pass 0: the starting point is scored; an --init model is also saved, so that a
        # fine-tuned model is only replaced by one that validates better.  A fresh start is
        # not (train.lua's best_score starts at 1000): --identity-init's identity map would
        # otherwise hold the noise models' validation, 70% clean patches, for many passes
        val_loss, val_mse = validate(cfg, params, val_set, be)
        fine_tune = cfg.init is not None
        if fine_tune:
            save_model(cfg.out, cfg.arch, cfg.channels, params)
        start = {"pass": 0, "epoch": 0, "loss": None, "lr": adam.lr, "val_loss": val_loss,
                 "val_psnr": psnr_of_mse(val_mse), "saved": fine_tune, "seconds": 0.0}
        with open(cfg.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(start) + "\n")
        state = {"pass": 0, "best_mse": val_mse if fine_tune else math.inf, "history": []}
        report("pass", start)
    total = cfg.epochs * cfg.inner_epoch
    done_here = 0
    x_all = y_all = None
    while state["pass"] < total:
        if stop_after_passes is not None and done_here >= stop_after_passes:
            break
        epoch, inner = divmod(state["pass"], cfg.inner_epoch)
        if inner == 0 and "instance_loss" in extra and cfg.oracle_rate > 0:   # a new epoch
            if x_all is None:   # resumed at an epoch's end: rebuild the set its losses belong to
                x_all, y_all = epoch_patches(cfg, recipe, train_images, epoch - 1, _carried(extra))
            keep = hard_examples(extra["instance_loss"], cfg.oracle_rate, np.random.default_rng([cfg.seed, 3, epoch]))
            extra = {"carried_x": x_all[:, keep], "carried_y": y_all[:, keep]}
        elif inner == 0:
            extra = {}
        if inner == 0 or x_all is None:   # one patch set per epoch, its inner passes share it
            x_all, y_all = epoch_patches(cfg, recipe, train_images, epoch, _carried(extra))
        instance_loss = np.zeros(x_all.shape[1], np.float64)
        order = np.random.default_rng([cfg.seed, 2, epoch, inner]).permutation(x_all.shape[1])
        t0, losses = time.perf_counter(), []
        for b0 in range(0, len(order), cfg.batch_size):
            idx = order[b0:b0 + cfg.batch_size]
            loss, instance_loss[idx] = train_step(cfg, params, adam, x_all[:, idx], y_all[:, idx], be)
            losses.append(loss)
            report("batch", {"loss": losses[-1], "lr": adam.lr, "samples": len(idx),
                             "batches": math.ceil(len(order) / cfg.batch_size)})
        val_loss, val_mse = validate(cfg, params, val_set, be)
        seconds = time.perf_counter() - t0
        state["pass"] += 1
        done_here += 1
        improved = val_mse < state["best_mse"]
        if improved:
            state["best_mse"] = val_mse
            save_model(cfg.out, cfg.arch, cfg.channels, params)
        entry = {"pass": state["pass"], "epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": adam.lr,
                 "val_loss": val_loss, "val_psnr": psnr_of_mse(val_mse), "saved": improved,
                 "seconds": round(seconds, 3)}
        state["history"].append(entry)
        extra["instance_loss"] = instance_loss
        save_checkpoint(cfg, params, adam, state, extra)
        with open(cfg.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        draw_history(cfg.plot, [h["loss"] for h in state["history"]], [h["val_psnr"] for h in state["history"]])
        report("pass", entry)
    return state
