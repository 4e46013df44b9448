"""The training stage (w2x/train/): loss gradient, Adam, export round trip, determinism,
bit-for-bit resume and bad inputs, on tiny runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from w2x.cli.main import main
from w2x.nn import grad
from w2x.nn.models import load_model
from w2x.train import adam as adam_mod
from w2x.train import data
from w2x.train.export import save_model
from w2x.train.loop import (TrainConfig, TrainError, epoch_patches, hard_examples, he_init, identity_init,
                            train)
from w2x.train.loss import HUBER_DELTA, clipped_weighted_huber
from test_grad import _check

NP = grad.training_backend("numpy")


def test_loss_value_and_gradient():
    rng = np.random.default_rng(0)
    out = rng.uniform(-0.2, 1.2, (3, 2, 5, 5))
    target = rng.uniform(0, 1, out.shape)
    loss, d = clipped_weighted_huber(out, target)
    # hand-computed reference, element by element
    w = np.array([0.29891, 0.58661, 0.11448]) * 3
    total = 0.0
    for idx in np.ndindex(out.shape):
        e = (min(max(out[idx], 0), 1) - target[idx]) * w[idx[0]]
        total += 0.5 * e * e if abs(e) < HUBER_DELTA else HUBER_DELTA * (abs(e) - HUBER_DELTA / 2)
    assert loss == pytest.approx(total / out.size, rel=1e-12)
    _check(lambda: clipped_weighted_huber(out, target)[0], {"out": out}, {"out": d}, rng, samples=40)


def test_adam_matches_the_formula_and_decays():
    a = adam_mod.Adam()
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.1])}
    a.step(p, g, 16)
    # first step of Adam: m̂ = g, v̂ = g², so the step is lr * g / (|g| + eps) = lr * sign(g)
    np.testing.assert_allclose(p["w"], [1.0 - 0.00025, -2.0 - 0.00025], rtol=1e-6)
    assert a.lr == pytest.approx(0.00025 / (1 + 16 * 3e-7))


@pytest.mark.parametrize("size", [1, 7, 4099])
def test_the_numba_adam_update_is_numpys_bit_for_bit(size):
    """adam.update_for("numba") (kernels/cpu_numba_grad.adam_update, one pass) against
    adam.update_numpy (seven), three steps; a float64 or non-contiguous array goes to NumPy."""
    pytest.importorskip("numba")
    fused = adam_mod.update_for("numba")
    assert fused is not adam_mod.update_numpy and adam_mod.update_for("numpy") is adam_mod.update_numpy
    rng = np.random.default_rng(size)
    start = [rng.standard_normal(size).astype(np.float32) for _ in range(3)] + [np.abs(rng.standard_normal(size)).astype(np.float32)]
    ours, ref = [a.copy() for a in start], [a.copy() for a in start]
    for t in range(1, 4):
        step, bias2 = 0.00025 / (1 - adam_mod.BETA1 ** t), (1 - adam_mod.BETA2 ** t) ** 0.5
        fused(*ours, step, bias2)
        adam_mod.update_numpy(*ref, step, bias2)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)
    p64, g = start[0].astype(np.float64), start[1][::-1]                  # float64; a reversed view
    fused(p64, g, np.zeros_like(p64), np.zeros_like(p64), 0.1, 1.0)
    ref = start[0].astype(np.float64)
    adam_mod.update_numpy(ref, g, np.zeros_like(ref), np.zeros_like(ref), 0.1, 1.0)
    np.testing.assert_array_equal(p64, ref)


def test_export_round_trip(tmp_path):
    for arch in ("vgg_7", "upconv_7"):
        params = he_init(arch, 3, np.random.default_rng(1))
        save_model(tmp_path / "m.json", arch, 3, params)
        m = load_model(tmp_path / "m.json")
        assert m.config.arch_name == arch
        back = grad.params_of(m.layers)
        for name, (w, b) in params.items():
            np.testing.assert_array_equal(back[name][0], w)
            np.testing.assert_array_equal(back[name][1], b)


def test_trained_forward_is_the_loaded_models(tmp_path):
    """The graph trained (grad.forward) and the exported model run by w2x give one output."""
    params = he_init("upconv_7", 3, np.random.default_rng(2))
    save_model(tmp_path / "m.json", "upconv_7", 3, params)
    x = np.random.default_rng(3).uniform(0, 1, (2, 3, 20, 20)).astype(np.float32)
    ours = grad.forward("upconv_7", 3, params, np.ascontiguousarray(x.transpose(1, 0, 2, 3)), NP)[0]
    np.testing.assert_allclose(ours.transpose(1, 0, 2, 3), load_model(tmp_path / "m.json").forward(x, "numpy"),
                               rtol=1e-4, atol=1e-5)   # float32, two GEMM orders


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(4)
    for i in range(3):
        a = (rng.uniform(0, 1, (70, 80, 3)) * 255).astype(np.uint8)
        a = np.cumsum(a.astype(np.int32), axis=1) // np.arange(1, 81)[None, :, None]   # smooth-ish
        Image.fromarray(a.astype(np.uint8)).save(d / f"{i}.png")
    return d


def _cfg(images, out, **kw) -> TrainConfig:
    base = dict(epochs=1, patches=4, inner_epoch=2, batch_size=4, crop_size=24, seed=3)
    base.update(kw)
    return TrainConfig("vgg_7", "scale", str(images), str(out), **base)


def test_patches_have_the_net_geometry(images):
    ims = data.load_images(images)
    for arch, method in (("vgg_7", "scale"), ("upconv_7", "scale"), ("vgg_7", "noise")):
        r = data.Recipe(arch, 1, method, crop_size=24 if arch == "vgg_7" else 32)
        x, y = data.patches(ims[0][1], r, 3, np.random.default_rng(0))
        assert x.shape[0] == y.shape[0] == 1 and x.shape[1] == y.shape[1] == 3
        assert y.shape[2] == r.crop_size - 2 * r.offset


def test_same_seed_same_model_and_resume_is_bit_for_bit(images, tmp_path):
    a = _cfg(images, tmp_path / "a.json")
    train(a)
    b = _cfg(images, tmp_path / "b.json")
    train(b)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    c = _cfg(images, tmp_path / "c.json")
    train(c, stop_after_passes=1)
    train(c, resume=True)
    za, zc = np.load(a.checkpoint), np.load(c.checkpoint)
    for k in za.files:
        if k != "meta":
            np.testing.assert_array_equal(za[k], zc[k], err_msg=k)
    log = [json.loads(line) for line in c.log.read_text().splitlines()]
    assert [e["pass"] for e in log] == [0, 1, 2]
    assert c.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_model(c.out).config.arch_name == "vgg_7"


def test_bad_inputs(images, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(data.DataError, match="no usable image"):
        train(_cfg(empty, tmp_path / "m.json"))
    with pytest.raises(data.DataError, match="--filters"):
        train(_cfg(images, tmp_path / "m.json", filters=("box", "bicubical")))
    with pytest.raises(data.DataError, match="smaller than"):
        train(_cfg(images, tmp_path / "m.json", crop_size=200))
    save_model(tmp_path / "up.json", "upconv_7", 3, he_init("upconv_7", 3, np.random.default_rng(0)))
    with pytest.raises(TrainError, match="expected vgg_7"):
        train(_cfg(images, tmp_path / "m.json", init=str(tmp_path / "up.json")))
    rc = main(["train", "--arch", "vgg_7", "--method", "scale", "--data", str(empty),
               "--out", str(tmp_path / "m.json"), "--quiet"])
    assert rc == 2 and "w2x train: error:" in capsys.readouterr().err


def test_failed_save_keeps_the_last_checkpoint(images, tmp_path, monkeypatch):
    cfg = _cfg(images, tmp_path / "m.json")
    train(cfg, stop_after_passes=1)
    before = cfg.checkpoint.read_bytes()
    import w2x.atomic

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(w2x.atomic.os, "replace", full_disk)   # every atomic write fails
    with pytest.raises(OSError, match="No space"):
        train(cfg, resume=True)
    monkeypatch.undo()
    assert cfg.checkpoint.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_checkpoint_from_before_hard_examples_resumes_with_oracle_rate_0(images, tmp_path):
    """Checkpoints written before --oracle-rate existed hold no oracle_rate: they ran without
    hard examples, so resuming asks for --oracle-rate 0 in one line, then works."""
    cfg = _cfg(images, tmp_path / "m.json", oracle_rate=0.0)
    train(cfg, stop_after_passes=1)
    z = np.load(cfg.checkpoint)
    arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    del meta["config"]["oracle_rate"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(cfg.checkpoint, **arrays)
    with pytest.raises(TrainError, match="oracle_rate=0.0, the command 0.1"):
        train(_cfg(images, tmp_path / "m.json"), resume=True)
    train(cfg, resume=True)
    assert len(cfg.log.read_text().splitlines()) == 3


def test_hard_examples_are_a_random_half_of_the_top_fifth():
    """oracle_rate 0.1, drop rate 0.5 (train.lua:607-631): 10 of 100 patches, drawn from the
    20 with the highest loss, all distinct."""
    losses = np.random.default_rng(7).permutation(100).astype(np.float64)   # patch i has loss losses[i]
    keep = hard_examples(losses, 0.1, np.random.default_rng(8))
    assert len(keep) == len(set(keep.tolist())) == 10
    assert set(keep.tolist()) <= set(np.flatnonzero(losses >= 80).tolist())
    other = hard_examples(losses, 0.1, np.random.default_rng(9))
    assert set(other.tolist()) != set(keep.tolist())           # drawn, not just the top 10
    assert hard_examples(losses, 0.0, np.random.default_rng(8)).size == 0


def test_hard_examples_lead_the_next_epoch_and_resume_keeps_them(images, tmp_path):
    """With the oracle on, epoch 2's set starts with epoch 1's carried patches; a run stopped
    at the epoch boundary and resumed equals an unbroken one, bit for bit."""
    kw = dict(epochs=3, inner_epoch=1, patches=10, oracle_rate=0.1)
    a = _cfg(images, tmp_path / "a.json", **kw)
    train(a, stop_after_passes=2)
    z = np.load(a.checkpoint)
    cx, cy = z["extra/carried_x"], z["extra/carried_y"]
    assert cx.shape[1] == 2                                    # 0.1 of the 2 images x 10 patches
    recipe = a.recipe()
    from w2x.train.loop import split_images
    train_images, _ = split_images(a, recipe)
    prev_x, _ = epoch_patches(a, recipe, train_images, 0, None)
    prev_loss = z["extra/instance_loss"]                       # epoch 2's losses: its set holds cx first
    x2, y2 = epoch_patches(a, recipe, train_images, 1, (cx, cy))
    np.testing.assert_array_equal(x2[:, :2], cx)
    assert x2.shape == prev_x.shape and prev_loss.shape == (20,)
    # each carried patch is one of epoch 1's patches
    for i in range(2):
        assert any(np.array_equal(cx[:, i], prev_x[:, j]) for j in range(prev_x.shape[1]))
    train(a, resume=True)
    b = _cfg(images, tmp_path / "b.json", **kw)
    train(b, stop_after_passes=1)
    train(b, resume=True)
    za, zb = np.load(a.checkpoint), np.load(b.checkpoint)
    assert sorted(za.files) == sorted(zb.files)
    for k in za.files:
        if k != "meta":
            np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


def test_more_carried_patches_than_the_set_keeps_the_usual_count(images, tmp_path):
    """A resume whose patch set shrank below the carried hard examples: the set keeps its
    usual size, made of the first carried patches (no negative slice)."""
    cfg = _cfg(images, tmp_path / "m.json", patches=2, oracle_rate=0.1)
    recipe = cfg.recipe()
    from w2x.train.loop import split_images
    train_images, _ = split_images(cfg, recipe)
    ux, uy = epoch_patches(cfg, recipe, train_images, 0, None)
    n = ux.shape[1] + 3                                        # 3 more carried than the set holds

    def numbered(a):                                           # (C, n, h, w): distinct values
        shape = (a.shape[0], n, *a.shape[2:])
        return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)

    cx, cy = numbered(ux), numbered(uy)
    x, y = epoch_patches(cfg, recipe, train_images, 1, (cx, cy))
    assert x.shape == ux.shape and y.shape == uy.shape
    np.testing.assert_array_equal(x, cx[:, :ux.shape[1]])
    np.testing.assert_array_equal(y, cy[:, :uy.shape[1]])


def test_identity_init_starts_at_the_identity_map():
    """vgg_7 from identity_init returns its input cropped by the offset (7 px), for RGB and Y."""
    for ch in (3, 1):
        params = identity_init("vgg_7", ch, np.random.default_rng(1))
        x = np.random.default_rng(2).uniform(0, 1, (ch, 2, 20, 20))
        y = grad.forward("vgg_7", ch, params, x, NP)[0]
        np.testing.assert_allclose(y, x[:, :, 7:-7, 7:-7], rtol=0, atol=1e-6)   # float32 weights
        hidden = params["conv2"][0].reshape(32, 32, 3, 3)
        assert np.abs(hidden[ch:]).max() > 0.1                   # the other channels are random
    with pytest.raises(TrainError, match="vgg_7"):
        identity_init("upconv_7", 3, np.random.default_rng(1))


def test_filters_choose_the_downscale(images):
    """--filters: the scale pairs' low-resolution input comes from the given GM filters."""
    img = data.load_images(images)[0][1]
    xs = {}
    for f in ("box", "catrom"):
        r = data.Recipe("upconv_7", 3, "scale", crop_size=32, filters=(f,))
        xs[f], y = data.image_pair(img, r, np.random.default_rng(0))
    assert xs["box"].shape == xs["catrom"].shape == (3, y.shape[1] // 2, y.shape[2] // 2)
    assert np.abs(xs["box"] - xs["catrom"]).max() > 0.01


def test_only_an_init_model_is_saved_before_training(images, tmp_path):
    """Pass 0 scores the start; it is written as the model only when it came from --init
    (fine-tuning keeps it unless a pass validates better), not for a fresh start."""
    fresh = _cfg(images, tmp_path / "fresh.json", identity_init=True)
    train(fresh, stop_after_passes=0)
    assert not (tmp_path / "fresh.json").exists()
    assert json.loads(fresh.log.read_text().splitlines()[0])["saved"] is False
    save_model(tmp_path / "start.json", "vgg_7", 3, he_init("vgg_7", 3, np.random.default_rng(0)))
    tuned = _cfg(images, tmp_path / "tuned.json", init=str(tmp_path / "start.json"))
    train(tuned, stop_after_passes=0)
    assert (tmp_path / "tuned.json").read_bytes() == (tmp_path / "start.json").read_bytes()
