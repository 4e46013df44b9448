#!/usr/bin/env python3
"""CPU speed benchmark (tooling, not inference): seconds per output megapixel and peak RSS
of each backend on the four architectures, optionally against PyTorch's CPU convolution.

    python tools/speed.py                                   # numpy + numba, 2 threads, lena.png
    python tools/speed.py --vs-torch                        # + PyTorch in this process, ratios
    python tools/speed.py --vs-torch --torch-malloc-tuned   # + PyTorch with glibc malloc tuned
    python tools/speed.py --rss-size 4000 --archs upconv_7  # peak RSS of w2x.reconstruct on 4000x4000

What is timed: the network forward over the tiles that ``w2x.reconstruct.run_net`` cuts
(``tiling.tile_grid`` + edge padding, ``--tile-size``, ``--batch-size``), the same input tiles for
every engine; s/MP = that time / output megapixels of the image (the pipeline's padding and
pasting are not timed).  Repetitions are interleaved tile by tile (tile 1 on numpy, numba,
torch; tile 2 ...), each run after a pause that lets the previous engine's BLAS threads stop
spinning, and each tile's best time counts: other processes on a shared machine only ever
add time.  Process CPU time (all threads) is reported beside it.  Peak RSS is the process's
high-water mark during that engine's runs (reset through /proc/self/clear_refs), so it
includes what the process had already mapped (the "base" column).  ``--rss-size`` instead
runs ``w2x.reconstruct.upscale2x`` (``denoise`` for cunet) on lena tiled to SIZE x SIZE, one
fresh child process per arch and backend, and reports that process's peak RSS.

PyTorch (optional: ``pip install torch==2.13.0``) runs the same JSON weights: every w2x layer
becomes ``F.conv2d`` / ``F.conv_transpose2d`` on NCHW tensors, wired by the same graph code
(``w2x.archs``) through a small torch backend; its output is checked against w2x's.  glibc's
malloc reads ``MALLOC_*_`` settings only at process start, so ``--torch-malloc-tuned`` runs
this script again in a child process with them set as the ``w2x`` command sets them for
itself (``MALLOC_TUNED``), timing torch and numba there as well: the "/torch tuned" column
is the ratio a user of the command sees.
Thread counts (``--threads``) are set in the environment before NumPy, Numba or torch load.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

ARCH_MODELS = {  # arch -> (model file under the model dir, 2x pipeline?)
    "vgg_7": ("vgg_7/photo/scale2.0x_model.json.gz", True),       # 1x net on a nearest-2x input
    "upconv_7": ("upconv_7/photo/scale2.0x_model.json.gz", True),
    "upcunet": ("cunet/art/scale2.0x_model.json.gz", True),
    "cunet": ("cunet/art/noise0_model.json.gz", False),
}
# glibc's malloc as the `w2x` command sets it for itself (w2x/cli/machine.py
# reuse_freed_memory, by mallopt): big blocks from the heap, the heap never trimmed.
MALLOC_TUNED = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}   # machine._INT_MAX
# Pause before each timed run: OpenBLAS's worker threads busy-wait ~0.1 s after a GEMM
# (and OpenMP's briefly after a parallel region), which would bill the next engine.
SETTLE_S = 0.2
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=",".join(ARCH_MODELS), help="comma list (default: all four)")
    p.add_argument("--backends", default="numpy,numba", help="comma list of w2x backends")
    p.add_argument("--vs-torch", action="store_true", help="also run PyTorch in this process")
    p.add_argument("--torch-malloc-tuned", action="store_true",
                   help="also run torch and numba in a child process with glibc's malloc tuned "
                        "as the w2x command tunes it (MALLOC_TUNED)")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS, Numba and torch")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1, help="tiles per forward")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions; best is kept")
    p.add_argument("--image", type=Path, default=ROOT.parent / "shared" / "images" / "lena.png")
    p.add_argument("--crop", type=int, default=0, help="time a centred CROP x CROP part only")
    p.add_argument("--model-dir", type=Path,
                   default=Path(os.environ.get("W2X_MODEL_DIR", ROOT.parent / "shared" / "weights")))
    p.add_argument("--rss-size", type=int, default=0,
                   help="instead: peak RSS of w2x.reconstruct on a SIZE x SIZE RGB image, one child "
                        "process per arch and backend")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", choices=("time", "rss"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- measuring -----------------------------------------------------------------------------
def memory_mb() -> tuple[int, int]:
    """(VmHWM, VmRSS) of this process in MiB."""
    status = Path("/proc/self/status").read_text()
    return tuple(int(re.search(rf"{k}:\s+(\d+)", status).group(1)) // 1024 for k in ("VmHWM", "VmRSS"))


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0, ``clear_refs`` value 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def load_image(args):
    import numpy as np
    from PIL import Image
    x = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
    if args.crop:
        h, w = x.shape[1:]
        r, q = max(0, (h - args.crop) // 2), max(0, (w - args.crop) // 2)
        x = x[:, r:r + args.crop, q:q + args.crop]
    return np.ascontiguousarray(x)                                     # (3, H, W)


def tile_batches(model, x, tile_size, batch_size):
    """The (C, N, t, t) batches ``reconstruct.run_net`` feeds the net, and the output MP."""
    import numpy as np
    from w2x import tiling
    from w2x.nn import ops
    if ARCH_MODELS[model.config.arch_name][1] and model.config.scale_factor == 1:
        x = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # Box 2x = pixel replication (vgg_7)
    c, h, w = x.shape
    grid = tiling.tile_grid(h, w, model.config, tile_size)
    padded = ops.pad_replicate(x, grid.pad_lo, grid.pad_bottom, grid.pad_lo, grid.pad_right)
    corners = list(grid.tiles())
    batches = []
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        batches.append(np.ascontiguousarray(np.stack(
            [padded[:, r:r + grid.tile, q:q + grid.tile] for r, q in chunk], axis=1)))  # (C, N, t, t)
    return batches, grid.out_h * grid.out_w / 1e6


class TorchEngine:
    """The w2x graph (``w2x.nn.archs``) with every layer run by PyTorch's CPU convolution.

    Tensors are NCHW, so where the graph says (C, N) it gets (N, C): the SE block's
    ``reshape(c, n, 1, 1)`` is then an NCHW 1x1 image and its scale broadcasts per (n, c).
    """

    def __init__(self, model):
        import numpy as np
        import torch
        import torch.nn.functional as F
        from w2x.nn.backend import Backend
        self.torch = torch

        def conv(w, b, stride, pad, transposed):
            def layer(x, be, slope):
                y = (F.conv_transpose2d(x, w, b, stride, pad) if transposed else F.conv2d(x, w, b, stride))
                return y if slope is None else F.leaky_relu(y, slope, inplace=True)
            return layer

        self.layers = {}
        for name, l in model.layers.items():
            if hasattr(l, "w2d"):   # Conv2d: (OC, C*k*k) -> torch (OC, C, k, k)
                w = l.w2d.reshape(l.w2d.shape[0], l.in_channels, l.k, l.k)
                self.layers[name] = conv(torch.from_numpy(np.ascontiguousarray(w)), torch.from_numpy(l.bias),
                                         l.stride, 0, False)
            else:                   # ConvTranspose2d: (OC*k*k, C) -> torch (C, OC, k, k)
                w = l.wt.T.reshape(l.wt.shape[1], l.out_channels, l.k, l.k)
                self.layers[name] = conv(torch.from_numpy(np.ascontiguousarray(w)), torch.from_numpy(l.bias),
                                         l.stride, l.pad, True)
        self.be = Backend("torch", "cpu", torch, None, None, None,
                          lambda x: x.mean(dim=(2, 3)),                                 # channel_mean
                          lambda x, z: x.mul_(z[:, :, None, None]),                     # se_scale
                          lambda a, b, k: a + b[:, :, k:k + a.shape[2], k:k + a.shape[3]],  # crop_add
                          None, torch.from_numpy, lambda t: t.numpy())
        self.forward = model.config.arch.forward

    def prepare(self, batch):
        return self.torch.from_numpy(batch.transpose(1, 0, 2, 3).copy())  # (C, N, t, t) -> (N, C, t, t)

    def run(self, xt):
        with self.torch.inference_mode():
            return self.forward(self.layers, xt, self.be).numpy().transpose(1, 0, 2, 3)  # -> (C, N, OH, OW)


class W2xEngine:
    def __init__(self, model, backend):
        from w2x.nn.backend import get_backend
        self.be = get_backend(backend)
        self.net = model.on(self.be)

    def prepare(self, batch):
        return self.be.to_device(batch)

    def run(self, x):
        return self.be.to_host(self.net.config.arch.forward(self.net.layers, x, self.be))


def time_engines(args, engines, env_label, archs):
    """Interleaved timing of every engine on every arch; one result dict per (arch, engine).

    Each repetition runs every batch through every engine in turn (the order rotating between
    repetitions and reversed every other batch, with a pause before each run), and an engine's
    time is the sum over batches of its best time for that batch: on a shared machine, a
    burst of load then costs every engine alike or none.
    CPU time (all threads of the process) is kept the same way.
    """
    import numpy as np
    from w2x import load_model
    image = load_image(args)
    results = []
    for arch in archs:
        model = load_model(args.model_dir / ARCH_MODELS[arch][0])
        batches, out_mp = tile_batches(model, image, args.tile_size, args.batch_size)
        runners = {}
        for name in engines:
            eng = TorchEngine(model) if name == "torch" else W2xEngine(model, name)
            runners[name] = (eng, [eng.prepare(b) for b in batches])
        first = {name: eng.run(xs[0]) for name, (eng, xs) in runners.items()}  # warm-up, compile
        wall = {name: np.zeros((args.repeat, len(batches))) for name in engines}
        cpu = {name: np.zeros((args.repeat, len(batches))) for name in engines}
        peak = dict.fromkeys(engines, 0)
        base = memory_mb()[1]
        for rep in range(args.repeat):
            order = engines[rep % len(engines):] + engines[:rep % len(engines)]
            for b in range(len(batches)):
                for name in order if b % 2 == 0 else order[::-1]:   # each engine after each other
                    eng, xs = runners[name]
                    time.sleep(SETTLE_S)
                    reset_peak()
                    t0, c0 = time.perf_counter(), time.process_time()
                    eng.run(xs[b])
                    wall[name][rep, b], cpu[name][rep, b] = time.perf_counter() - t0, time.process_time() - c0
                    peak[name] = max(peak[name], memory_mb()[0])
        for name in engines:
            results.append({
                "arch": arch, "engine": name, "env": env_label, "out_mp": out_mp,
                "s_per_mp": float(wall[name].min(axis=0).sum() / out_mp),
                "cpu_s_per_mp": float(cpu[name].min(axis=0).sum() / out_mp),
                "times": [float(t) for t in wall[name].sum(axis=1) / out_mp],   # per repetition
                "peak_rss_mb": peak[name], "base_rss_mb": base,
                "max_abs_diff": float(abs(first[name] - first[engines[0]]).max())})
        del runners, first
    return results


def rss_child(args):
    """One arch, one backend: w2x.reconstruct on a SIZE x SIZE image; peak RSS in this process."""
    import numpy as np
    from w2x import load_model, reconstruct
    arch, backend = args.archs, args.backends
    model = load_model(args.model_dir / ARCH_MODELS[arch][0])
    lena = load_image(args)
    reps = -(-args.rss_size // lena.shape[1]), -(-args.rss_size // lena.shape[2])
    x = np.ascontiguousarray(np.tile(lena, (1, *reps))[:, :args.rss_size, :args.rss_size])  # (3, S, S)
    del lena
    base = memory_mb()[1]
    reset_peak()
    run = reconstruct.upscale2x if ARCH_MODELS[arch][1] else reconstruct.denoise
    t0 = time.perf_counter()
    y = run(model, x, tile_size=args.tile_size, backend=backend, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    return [{"arch": arch, "engine": backend, "size": args.rss_size, "out_mp": y.shape[1] * y.shape[2] / 1e6,
             "seconds": seconds, "peak_rss_mb": memory_mb()[0], "base_rss_mb": base,
             "image_arrays_mb": (x.nbytes + y.nbytes) >> 20}]


def run_child(args, mode, extra_env, archs, backends):
    """Re-run this script with ``--child mode`` and return its results."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, __file__, "--child", mode, "--json", str(out), "--archs", archs,
               "--backends", backends, "--threads", str(args.threads), "--tile-size", str(args.tile_size),
               "--batch-size", str(args.batch_size), "--repeat", str(args.repeat), "--image", str(args.image),
               "--crop", str(args.crop), "--model-dir", str(args.model_dir), "--rss-size", str(args.rss_size)]
        subprocess.run(cmd, env={**os.environ, **extra_env}, check=True)
        return json.loads(out.read_text())


# --- reporting -----------------------------------------------------------------------------
def report_times(results, header):
    if header:
        print("# max|diff|: first batch's output vs the first engine's (torch with --vs-torch)")
        print("# s/MP: sum over tiles of the best of the repetitions; CPU: the same for process CPU time")
        print(f"{'arch':9} {'engine':7} {'env':12} {'s/MP':>6} {'CPU s/MP':>8} {'each rep (s/MP)':22} "
              f"{'peak RSS':>9} {'base':>5} {'/torch':>6} {'/torch tuned':>12} {'max|diff|':>9}")
    for arch in dict.fromkeys(r["arch"] for r in results):
        rows = [r for r in results if r["arch"] == arch]
        torch_s = {r["env"]: r["s_per_mp"] for r in rows if r["engine"] == "torch"}
        for r in rows:
            ratios = [f"{r['s_per_mp'] / torch_s[e]:.2f}" if e in torch_s else "-"
                      for e in ("default", "malloc-tuned")]
            reps = " ".join(f"{t:.2f}" for t in r["times"])
            print(f"{arch:9} {r['engine']:7} {r['env']:12} {r['s_per_mp']:6.2f} {r['cpu_s_per_mp']:8.2f} "
                  f"{reps:22} {r['peak_rss_mb']:6d} MB {r['base_rss_mb']:5d} {ratios[0]:>6} {ratios[1]:>12} "
                  f"{r['max_abs_diff']:9.1e}")


def report_rss(results):
    print(f"{'arch':9} {'backend':7} {'size':>5} {'seconds':>8} {'peak RSS':>9} {'base':>6} {'image in+out':>12}")
    for r in results:
        print(f"{r['arch']:9} {r['engine']:7} {r['size']:5d} {r['seconds']:8.1f} {r['peak_rss_mb']:6d} MB "
              f"{r['base_rss_mb']:6d} {r['image_arrays_mb']:9d} MB")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["--backend", "cupy"]:
        # the GPU benchmark (tools/speed_gpu.py): `speed.py --backend cupy [--vs-torch] [--precision ...]`
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from speed_gpu import main as gpu_main
        return gpu_main(argv[2:])
    args = parse_args(argv)
    for var in THREAD_VARS:       # before NumPy / Numba / torch are imported
        os.environ[var] = str(args.threads)
    if args.child:
        if args.child == "rss":
            results = rss_child(args)
        else:
            import torch
            torch.set_num_threads(args.threads)
            results = time_engines(args, ["torch", *args.backends.split(",")], "malloc-tuned",
                                   args.archs.split(","))
        args.json.write_text(json.dumps(results))
        return 0
    import numpy as np
    import w2x
    print(f"# w2x from {Path(w2x.__file__).parent}")
    print(f"# {args.image.name}{f' crop {args.crop}' if args.crop else ''}, tile {args.tile_size}, "
          f"batch {args.batch_size}, {args.threads} threads, best of {args.repeat}; numpy {np.__version__}"
          + "".join(f", {k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE",) if k in os.environ))
    if args.rss_size:
        results = [r for arch in args.archs.split(",") for backend in args.backends.split(",")
                   for r in run_child(args, "rss", {}, arch, backend)]
        report_rss(results)
    else:
        engines = args.backends.split(",")
        if args.vs_torch:
            try:
                import torch
            except ImportError:
                raise SystemExit("--vs-torch needs PyTorch: pip install torch==2.13.0") from None
            torch.set_num_threads(args.threads)
            print(f"# torch {torch.__version__}")
            engines = ["torch", *engines]
        results = []
        for arch in args.archs.split(","):   # one table block per arch, printed as it is done
            rows = time_engines(args, engines, "default", [arch])
            if args.torch_malloc_tuned:
                rows += run_child(args, "time", MALLOC_TUNED, arch, "numba")
            report_times(rows, header=not results)
            sys.stdout.flush()
            results += rows
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
