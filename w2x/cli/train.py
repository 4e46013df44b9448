"""``w2x train``: learn or fine-tune a waifu2x model (CLI stage; the work is ``w2x.train.loop``).

A progress bar shows loss, learning rate, samples/s and the last validation PSNR; an error
is one line on stderr (``w2x train: error: ...``) and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from w2x.cli import machine
from w2x.nn.archs import ARCHS
from w2x.nn.backend import BackendUnavailableError
from w2x.nn.models import ModelFormatError
from w2x.train.data import DOWNSAMPLING_FILTERS, PHOTO_RELEASE_FILTERS, DataError
from w2x.train.loop import ORACLE_RATE, TrainConfig, TrainError, train

PROG = "w2x train"


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``train`` to the subcommands of the ``w2x`` parser."""
    p = commands.add_parser(
        "train", prog=PROG,
        description="Train a waifu2x model with the original recipe (ClippedWeightedHuber, Adam "
                    "0.00025 decayed per minibatch, batch 16, 64 patches per image, 4 inner passes); "
                    "writes MODEL.json, MODEL.ckpt.npz, MODEL.log.jsonl and MODEL.png.")
    p.add_argument("--arch", required=True, choices=list(ARCHS))
    p.add_argument("--method", required=True, choices=("scale", "noise", "noise_scale"))
    p.add_argument("--noise-level", type=int, default=1, choices=(0, 1, 2, 3))
    p.add_argument("--style", default="photo", choices=("art", "photo"))
    p.add_argument("--color", default="rgb", choices=("rgb", "y"), help="rgb (3 channels) or y (luma)")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--val", help="folder of validation images (default: 5%% of --data held out)")
    p.add_argument("--init", help="start from this model (fine-tuning; required for noise_scale)")
    p.add_argument("--identity-init", action="store_true",
                   help="vgg_7: start at the identity map (the input's channels carried through, the rest "
                        "random) instead of the original's random start; helps short noise runs")
    p.add_argument("--filters", default=",".join(DOWNSAMPLING_FILTERS),
                   help="GraphicsMagick filters the scale pairs' downscale is drawn from, comma-separated "
                        "(default %(default)s, lib/settings.lua; the released photo models used "
                        f"{','.join(PHOTO_RELEASE_FILTERS)})")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--inner-epoch", type=int, default=4)
    p.add_argument("--patches", type=int, default=64, help="patches per image per epoch")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop-size", type=int, help="target patch size (default 48; vgg_7 noise: 32)")
    p.add_argument("--learning-rate", type=float, default=0.00025)
    p.add_argument("--oracle-rate", type=float, default=ORACLE_RATE,
                   help="fraction of hard patches (drawn from the top 2x that fraction by loss) carried into "
                        "the next epoch; 0 turns it off (default %(default)s)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--backend", default="numba", choices=("numpy", "numba"))
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="the model JSON to write")
    p.set_defaults(command=run)
    return p


def run(args) -> int:
    cfg = TrainConfig(args.arch, args.method, args.data, args.out, channels=3 if args.color == "rgb" else 1,
                      noise_level=args.noise_level, style=args.style, val=args.val, init=args.init,
                      epochs=args.epochs, seed=args.seed, crop_size=args.crop_size, batch_size=args.batch_size,
                      patches=args.patches, inner_epoch=args.inner_epoch, learning_rate=args.learning_rate,
                      backend=args.backend, oracle_rate=args.oracle_rate,
                      identity_init=args.identity_init, filters=tuple(args.filters.lower().split(",")))
    machine.reuse_freed_memory()        # every step allocates its activations anew
    bar = tqdm(unit="batch", file=sys.stderr, disable=args.quiet, desc="pass 1")
    seen = {"t0": time.perf_counter(), "n": 0, "psnr": float("nan")}

    def report(kind: str, info: dict) -> None:
        if kind == "batch":
            bar.total = info["batches"]
            seen["n"] += info["samples"]
            rate = seen["n"] / max(time.perf_counter() - seen["t0"], 1e-9)
            bar.set_postfix(loss=f"{info['loss']:.5f}", lr=f"{info['lr']:.3g}",
                            samples_s=f"{rate:.1f}", val_psnr=f"{seen['psnr']:.2f}", refresh=False)
            bar.update(1)
        else:
            seen["psnr"] = info["val_psnr"]
            loss = "-" if info["loss"] is None else f"{info['loss']:.6f}"
            bar.write(f"pass {info['pass']}: loss {loss}, validation PSNR {info['val_psnr']:.3f} dB"
                      f"{' (saved)' if info['saved'] else ''}, {info['seconds']:.1f} s")
            bar.reset()
            bar.set_description(f"pass {info['pass'] + 1}")
    try:
        with machine.one_cpu_per_thread(args.backend):
            train(cfg, resume=args.resume, report=report)
    except (TrainError, DataError, ModelFormatError, BackendUnavailableError, FileNotFoundError) as e:
        bar.close()
        return _fail(str(e))
    except OSError as e:     # e.g. a full disk while saving: the last checkpoint is intact
        bar.close()
        return _fail(f"cannot write the model or checkpoint ({e}); the last checkpoint "
                     f"{cfg.checkpoint} is unchanged: free space and run again with --resume")
    bar.close()
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2
