#!/usr/bin/env python3
"""CPU profile of the numba backend (tooling, not inference): where a forward pass spends its
time, per kind of work, and how far that is from what the GEMM rate allows.

    python tools/layer_profile.py                          # vgg_7, upconv_7, upcunet on lena.png 2x
    python tools/layer_profile.py --archs cunet --repeat 3

For each arch, on the tiles ``w2x.reconstruct.run_net`` cuts (as ``tools/speed.py`` times them):

* start-up: importing the backend (Numba and the kernel module), parsing the JSON model,
  ``model.on(be)`` (Winograd weight forms), and the first forward's extra time over a later
  one (Numba loading its cached kernels, or compiling them on a cold cache);
* a forward at ONE thread split by kind, in seconds per output megapixel: every backend
  primitive and the pieces inside ``cpu_numba.winograd_conv3x3`` are timed (self time: a
  primitive's time excludes the timed calls inside it); "numpy glue" is the rest of the
  forward (kn2row's shifted adds, the SE sigmoid, clip, reshapes and copies).  At one thread
  the kinds add up to the wall time, which they would not with worker threads overlapping;
* the distance to the limit: the single-thread and 2-thread GEMM rates measured here
  (GFLOPS on a 128x128 @ 128x4096 float32 product, the shape of a Winograd block), times
  the multiplications the forward's algorithms need (Winograd F(m x m): (m+2)^2 per m^2
  outputs per channel pair; kn2row, im2col, transposed: k^2), give the lower bound in s/MP;
  beside it the uninstrumented wall time at 1 and ``--threads`` threads.  The dense count
  (9 products per output per channel pair for a 3x3 layer) is printed for scale.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import speed  # noqa: E402  (tools/speed.py: ARCH_MODELS, load_image, tile_batches; adds the checkout to sys.path)

KINDS = ("gemm", "winograd input transform", "winograd output transform + bias + LReLU",
         "winograd blocks (scratch, threads)", "transposed-conv gather + bias + LReLU",
         "transposed-conv blocks", "im2col", "col2im", "elementwise", "numpy glue")
# backend primitive -> kind
PRIMITIVE_KINDS = {"matmul": "gemm", "im2col": "im2col", "col2im": "col2im",
                   "bias_leaky_relu": "elementwise", "channel_mean": "elementwise",
                   "se_scale": "elementwise", "crop_add": "elementwise",
                   "winograd_conv3x3": "winograd blocks (scratch, threads)",
                   "conv_transpose": "transposed-conv blocks",
                   "space_to_depth": "im2col", "depth_to_space": "transposed-conv gather + bias + LReLU"}
# cpu_numba module function -> kind (looked up by name at call time, so patching times them)
KERNEL_KINDS = {"_gemm": "gemm", "_panel_gemm": "gemm", "_deconv_gather": "transposed-conv gather + bias + LReLU",
                **dict.fromkeys(["_winograd_input", "_winograd4_input", "_winograd4_input_cl",
                                 "_winograd6_input_cl"], "winograd input transform"),
                **dict.fromkeys(["_winograd_output", "_winograd4_output_cl", "_winograd6_output_cl"],
                                "winograd output transform + bias + LReLU")}
GEMM_SHAPE = (128, 128, 4096)   # (M, K, N) of the rate measurement


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="vgg_7,upconv_7,upcunet", help="comma list of tools/speed.py archs")
    p.add_argument("--threads", type=int, default=2, help="threads of the uninstrumented wall time")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=2, help="forwards per measurement; best is kept")
    p.add_argument("--image", type=Path, default=speed.ROOT.parent / "shared" / "images" / "lena.png")
    p.add_argument("--crop", type=int, default=0, help="profile a centred CROP x CROP part only")
    p.add_argument("--model-dir", type=Path,
                   default=Path(os.environ.get("W2X_MODEL_DIR", speed.ROOT.parent / "shared" / "weights")))
    return p.parse_args(argv)


class SelfTimer:
    """Self time per kind: a timed call's elapsed time minus that of the timed calls inside it."""

    def __init__(self):
        self.seconds = dict.fromkeys(KINDS, 0.0)
        self._stack = threading.local()

    def wrap(self, kind: str, fn):
        def timed(*args, **kwargs):
            stack = self._stack.__dict__.setdefault("frames", [])
            stack.append(0.0)                   # children's time, added to by inner calls
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                children = stack.pop()
                self.seconds[kind] += elapsed - children
                if stack:
                    stack[-1] += elapsed
        return timed


def counting_layers(layers: dict) -> tuple[dict, list]:
    """``layers`` wrapped to count, from every layer's input shape as the graph calls it, the
    products its algorithm does and those of dense convolution: (wrapped layers, [done, dense])."""
    from w2x.nn.layers import Conv2d
    from w2x.nn.ops import WINOGRAD_TILES, out_size
    counts = [0.0, 0.0]

    def counting(layer):
        def call(x, be, slope):
            c, n, h, w = x.shape
            k = layer.k
            if isinstance(layer, Conv2d):
                oc = layer.out_channels
                oh, ow = out_size(h, k, layer.stride), out_size(w, k, layer.stride)
                dense = oc * c * k * k * n * oh * ow
                if layer.winograd_u is not None:
                    m = WINOGRAD_TILES[layer.winograd_u.shape[0]]
                    done = (m + 2) ** 2 * oc * c * n * -(-oh // m) * -(-ow // m)
                elif layer.kn2row_w is not None:
                    done = oc * k * k * c * n * h * w
                else:
                    done = dense
            else:                                                   # transposed: GEMM on the input
                done = dense = layer.out_channels * k * k * c * n * h * w
            counts[0] += done
            counts[1] += dense
            return layer(x, be, slope)
        return call

    counted = {name: counting(layer) for name, layer in layers.items()}
    return counted, counts


def gemm_rates(k) -> tuple[float, float]:
    """Single-thread and worker-pool (Numba's thread count) GFLOPS of ``cpu_numba.matmul``
    style GEMMs on ``GEMM_SHAPE``; best of a few runs."""
    import numba
    import numpy as np
    m, kk, n = GEMM_SHAPE
    rng = np.random.default_rng(0)
    a, b = rng.random((m, kk), dtype=np.float32), rng.random((kk, n), dtype=np.float32)
    flops = 2.0 * m * kk * n
    threads = numba.get_num_threads()
    rates = []
    for t in (1, threads):
        numba.set_num_threads(t)
        # matmul splits only above MATMUL_SPLIT_MIN_COLUMNS columns: give it 4 workers' worth
        bb = np.tile(b, (1, max(1, (t * k.MATMUL_SPLIT_MIN_COLUMNS) // n + 1))) if t > 1 else b
        best = min(_seconds(lambda: k.matmul(a, bb)) for _ in range(10))
        rates.append(flops * bb.shape[1] / n / best / 1e9)
    numba.set_num_threads(threads)
    return rates[0], rates[1]


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def profile_arch(args, arch, be, k, rates, startup_import):
    import numba
    from w2x import load_model
    t0 = time.perf_counter()
    model = load_model(args.model_dir / speed.ARCH_MODELS[arch][0])
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    net = model.on(be)
    t_on = time.perf_counter() - t0
    batches, out_mp = speed.tile_batches(model, speed.load_image(args), args.tile_size, 1)
    forward = net.config.arch.forward

    def run_all(layers, backend):
        return sum(_seconds(lambda: forward(layers, x, backend)) for x in batches)

    t_first_tile = _seconds(lambda: forward(net.layers, batches[0], be))
    t_later_tile = min(_seconds(lambda: forward(net.layers, batches[0], be)) for _ in range(2))
    threads = numba.get_num_threads()
    wall = {}
    for t in (1, threads):
        numba.set_num_threads(t)
        wall[t] = min(run_all(net.layers, be) for _ in range(args.repeat)) / out_mp

    # the instrumented forward, one thread
    numba.set_num_threads(1)
    timer = SelfTimer()
    saved = {name: getattr(k, name) for name in KERNEL_KINDS}
    timed_be = dataclasses.replace(be, **{name: timer.wrap(kind, getattr(be, name))
                                          for name, kind in PRIMITIVE_KINDS.items()})
    timed_layers, counts = counting_layers(model.on(timed_be).layers)
    try:
        for name, kind in KERNEL_KINDS.items():
            setattr(k, name, timer.wrap(kind, saved[name]))
        best = None
        for _ in range(args.repeat):
            timer.seconds = dict.fromkeys(KINDS, 0.0)
            counts[:] = [0.0, 0.0]
            total = run_all(timed_layers, timed_be)
            if best is None or total < best[0]:
                best = (total, dict(timer.seconds), list(counts))
    finally:
        for name in KERNEL_KINDS:
            setattr(k, name, saved[name])
        numba.set_num_threads(threads)
    total, seconds, (done, dense) = best
    seconds["numpy glue"] = total - sum(seconds.values())

    print(f"\n## {arch} ({speed.ARCH_MODELS[arch][0]}), {len(batches)} tiles of {batches[0].shape[-1]} "
          f"(--tile-size {args.tile_size}), {out_mp:.3f} output MP")
    print(f"start-up: import backend {startup_import:.2f} s, parse model {t_load:.2f} s, "
          f"model.on {t_on:.2f} s, first forward +{t_first_tile - t_later_tile:.2f} s (kernels load)")
    print("| kind (1 thread) | s/MP | share |\n|---|---|---|")
    for kind in KINDS:
        print(f"| {kind} | {seconds[kind] / out_mp:.3f} | {100 * seconds[kind] / total:.1f}% |")
    print(f"| total (instrumented) | {total / out_mp:.3f} | 100% |")
    mults = done / out_mp / 1e6
    print(f"multiplications per output pixel: {mults / 1e6:.3f} M as run "
          f"(dense convolution: {dense / out_mp / 1e12:.3f} M, {dense / done:.2f}x more)")
    print("| threads | GEMM GFLOPS | lower bound s/MP | w2x s/MP | w2x / bound |\n|---|---|---|---|---|")
    for t, rate in ((1, rates[0]), (threads, rates[1])):
        bound = 2 * mults * 1e6 / (rate * 1e9)
        print(f"| {t} | {rate:.1f} | {bound:.3f} | {wall[t]:.3f} | {wall[t] / bound:.2f} |")
    sys.stdout.flush()


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for var in speed.THREAD_VARS:             # before NumPy / Numba load
        os.environ[var] = str(args.threads)
    t0 = time.perf_counter()
    from w2x.nn import kernel_files
    from w2x.nn.backend import get_backend
    be = get_backend("numba")
    k = kernel_files.module("cpu_numba")
    startup_import = time.perf_counter() - t0
    import numpy as np
    print(f"# {args.image.name}, tile {args.tile_size}, best of {args.repeat}, numpy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    rates = gemm_rates(k)
    print(f"# GEMM {GEMM_SHAPE[0]}x{GEMM_SHAPE[1]} @ {GEMM_SHAPE[1]}x{GEMM_SHAPE[2]} float32: "
          f"{rates[0]:.1f} GFLOPS on 1 thread, {rates[1]:.1f} on {args.threads}")
    for arch in args.archs.split(","):
        profile_arch(args, arch, be, k, rates, startup_import)
    print(f"\n# load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
