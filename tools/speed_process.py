#!/usr/bin/env python3
"""Whole-process CPU benchmark (tooling, not inference): the ``w2x`` command against a PyTorch
CPU re-expression of the original, each a fresh process from interpreter start to the
written PNG, as a user sees them.

    python tools/speed_process.py                          # vgg_7, upconv_7, cunet; 3 pairs each
    python tools/speed_process.py --repeat 5 --json out.json
    python tools/speed_process.py --archs upconv_7 --no-startup

What runs: 2x of ``--image`` (lena.png) with ``<arch>/art``'s ``scale2.0x_model`` (for
cunet/art that is the 2x U-Net, upcunet), tile 256, ``--threads`` threads on both sides.

* w2x: ``python -m w2x -i IMAGE -o OUT -m scale --style ARCH/art -j THREADS -q`` (its numba
  backend; the parsed-weights and Numba caches as a user has them after a first run: one
  untimed run of each arch fills them).
* torch: ``python tools/speed_process.py --torch-child ...``: imports torch, loads the
  weights from a ``torch.save`` file (the original loads its binary ``.t7`` models, never the
  JSON), reads the PNG with Pillow, cuts the same tiles, runs them through the PyTorch graph
  of ``tools/speed.py`` (``TorchEngine``: ``F.conv2d`` / ``F.conv_transpose2d``, w2x's graph
  code), pastes, rounds as the original and writes the PNG with Pillow at w2x's zlib level
  (on one thread, as Pillow and libpng do; w2x deflates row bands on ``--threads`` threads,
  ``w2x/io/png_encode.py``: about 0.17 s of a 1 MP picture's 0.35 s, part of the ratio).
  It imports the graph modules (``w2x.nn``, ``w2x.tiling``) but not the rest of w2x.
* ``--torch-malloc-tuned`` adds the torch side again with glibc's malloc set as the ``w2x``
  command sets it for itself (``tools/speed.py`` ``MALLOC_TUNED``): the ratio to it is the
  one that credits w2x with no allocator setting PyTorch could not have too.

Pairs alternate (w2x then torch, torch then w2x, ...); each side's figure is the median
wall time, and the ratio is w2x / torch of the medians.  The outputs are compared (max
difference in 8-bit levels).  ``uptime``'s load average is printed with the table: on a
shared machine only the ratios of alternating pairs are worth comparing.

The start-up breakdown (``--no-startup`` skips it) times, as medians of fresh processes:
the bare interpreter; interpreter + ``import w2x.cli.main``; and, inside one w2x child,
the Numba backend's import, the model's load from its JSON (cache off) and from the
parsed-weights cache, the first tile (Numba's compiled kernels loaded from their cache)
and the next tile, with the count of Numba compilations in that process (0 when every
kernel came from the cache).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
SHARED = ROOT.parent / "shared"
ARCHS = ("vgg_7", "upconv_7", "cunet")
MODEL_FILE = "scale2.0x_model"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
TILE_SIZE = 256


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=",".join(ARCHS), help="comma list of <arch> (style <arch>/art)")
    p.add_argument("--repeat", type=int, default=3, help="alternating pairs per arch (median)")
    p.add_argument("--threads", type=int, default=2, help="threads for both sides")
    p.add_argument("--image", type=Path, default=SHARED / "images" / "lena.png")
    p.add_argument("--model-dir", type=Path,
                   default=Path(os.environ.get("W2X_MODEL_DIR", SHARED / "weights")),
                   help="root laid out as <arch>/<style>/<name>.json[.gz]")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up breakdown")
    p.add_argument("--startup-only", action="store_true", help="only the start-up breakdown")
    p.add_argument("--baseline", type=Path, metavar="ROOT",
                   help="also time the w2x of this source tree (e.g. `git archive` of an older "
                        "commit), in the same alternation: before/after figures in one run")
    p.add_argument("--torch-malloc-tuned", action="store_true",
                   help="also time the torch side with glibc's malloc set as the w2x command sets "
                        "it for itself (tools/speed.py MALLOC_TUNED)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--torch-child", nargs=3, metavar=("WEIGHTS", "IMAGE", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--startup-child", nargs=2, metavar=("MODEL", "IMAGE"), help=argparse.SUPPRESS)
    p.add_argument("--png-level", type=int, default=6, help=argparse.SUPPRESS)   # the torch child's
    return p.parse_args(argv)


# --- the children --------------------------------------------------------------------------
def _graph_only_w2x() -> None:
    """Make ``w2x`` importable without running ``w2x/__init__`` (the torch side needs only the
    graph modules, not w2x's command line, pipeline and their imports)."""
    import types
    pkg = types.ModuleType("w2x")
    pkg.__path__ = [str(ROOT / "w2x")]
    sys.modules["w2x"] = pkg


def torch_child(args) -> int:
    """The PyTorch re-expression as a whole process: weights file + PNG in, PNG out."""
    weights_file, image, out = args.torch_child
    import numpy as np
    import torch
    from PIL import Image
    torch.set_num_threads(args.threads)
    _graph_only_w2x()
    sys.path.insert(0, str(ROOT / "tools"))
    from speed import TorchEngine, tile_batches
    from w2x import tiling
    from w2x.nn.models import ModelWeights, model_from_weights
    saved = torch.load(weights_file, weights_only=True)
    pairs = tuple((w.numpy(), b.numpy()) for w, b in zip(saved["weights"], saved["biases"]))
    model = model_from_weights(ModelWeights(saved["arch"], int(saved["channels"]), pairs))
    engine = TorchEngine(model)
    x = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255  # (3, H, W)
    batches, _ = tile_batches(model, np.ascontiguousarray(x), TILE_SIZE, 1)
    prescale = 2 // model.config.scale_factor
    grid = tiling.tile_grid(x.shape[1] * prescale, x.shape[2] * prescale, model.config, TILE_SIZE)
    y = np.empty((3, grid.out_h, grid.out_w), np.float32)
    s = grid.scale_factor
    for i, batch in enumerate(batches):
        tile = engine.run(engine.prepare(batch))[:, 0]                      # (3, out_tile, out_tile)
        r, q = grid.corner(i)
        oh, ow = min(grid.out_tile, grid.out_h - r * s), min(grid.out_tile, grid.out_w - q * s)
        y[:, r * s:r * s + oh, q * s:q * s + ow] = tile[:, :oh, :ow]
    from w2x.color import quantize                 # the original's rounding, image_loader.lua:21-34
    hwc = np.ascontiguousarray(quantize(y, 8).transpose(1, 2, 0))          # (H, W, 3)
    Image.fromarray(hwc).save(out, compress_level=args.png_level)
    return 0


def startup_child(args) -> int:
    """Inside one w2x process: the backend's import, the model's loads, the first tiles."""
    t = time.perf_counter()
    marks = {}

    def mark(name):
        nonlocal t
        now = time.perf_counter()
        marks[name] = now - t
        t = now

    import w2x.cli.main  # noqa: F401  (what the command imports before it starts)
    mark("import w2x.cli.main")
    from w2x.nn.backend import get_backend
    be = get_backend("numba")
    mark("numba backend import")
    from w2x.cli import machine
    machine.start_numba(be.name)                   # as the command does, before its first tile
    mark("numba target start")
    from w2x import weight_cache
    from w2x.nn import models
    model_path, image = args.startup_child
    models.load_model(model_path)
    mark("model load, JSON")
    model = weight_cache.load_model(model_path)
    mark("model load, cached")
    import numpy as np
    from PIL import Image
    from w2x import tiling
    from w2x.reconstruct import gather_tile
    x = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
    prescale = 2 // model.config.scale_factor
    grid = tiling.tile_grid(x.shape[1] * prescale, x.shape[2] * prescale, model.config, TILE_SIZE)
    net = model.on(be)
    for name, (r, q) in zip(("first tile", "next tile"), list(grid.tiles())[:2]):
        tile = be.to_device(np.ascontiguousarray(gather_tile(x, grid, r, q, prescale)[:, None]))
        net.config.arch.forward(net.layers, tile, be)
        mark(name)
    kernels = sys.modules["w2x.kernels.cpu_numba"]
    stats = [d.stats for d in vars(kernels).values() if hasattr(d, "stats") and hasattr(d, "py_func")]
    marks["numba compilations"] = sum(sum(s.cache_misses.values()) for s in stats)
    marks["numba cache loads"] = sum(sum(s.cache_hits.values()) for s in stats)
    print(json.dumps(marks))
    return 0


# --- the parent ----------------------------------------------------------------------------
def child_env(args, cache_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "W2X_MODEL_DIR": str(args.model_dir),
           "W2X_CACHE_DIR": str(cache_dir)}
    env.update({var: str(args.threads) for var in THREAD_VARS})
    return env


def find_model(args, arch: str) -> Path:
    for suffix in (".json", ".json.gz"):
        path = args.model_dir / arch / "art" / (MODEL_FILE + suffix)
        if path.is_file():
            return path
    raise SystemExit(f"no {arch}/art/{MODEL_FILE}.json[.gz] under {args.model_dir}; pass --model-dir")


def save_torch_weights(model_path: Path, dest: Path) -> None:
    """The model's numbers as a ``torch.save`` file (done once, outside the timing)."""
    import torch
    from w2x.nn import models
    weights = models.parse_model_json(model_path.read_bytes(), model_path)
    torch.save({"arch": weights.arch_name, "channels": weights.channels,
                "weights": [torch.from_numpy(w) for w, _ in weights.arrays],
                "biases": [torch.from_numpy(b) for _, b in weights.arrays]}, dest)


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all its threads) of one process, run to its end."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        # cwd: not a checkout, whose w2x/ would come first on sys.path whatever PYTHONPATH says
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=tempfile.gettempdir())
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.read()[-2000:].decode()}")
    return seconds, usage.ru_utime + usage.ru_stime


def max_level_difference(a: Path, b: Path) -> int:
    import numpy as np
    from PIL import Image
    x, y = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (a, b))
    return int(abs(x - y).max()) if x.shape == y.shape else -1


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def run_pairs(args, arch: str, tmp: Path, env: dict) -> dict:
    """Every side once per repetition, the order rotating; medians and ratios to torch."""
    from w2x.io.png_encode import PNG_COMPRESS_LEVEL
    model_path = find_model(args, arch)
    weights = tmp / f"{arch}.pt"
    save_torch_weights(model_path, weights)
    outs = {side: tmp / f"{arch}_{side}.png" for side in ("w2x", "baseline", "torch", "torch-tuned")}

    def w2x(side):
        return [sys.executable, "-m", "w2x", "-i", str(args.image), "-o", str(outs[side]), "-m", "scale",
                "--style", f"{arch}/art", "-j", str(args.threads), "-q", "--backend", "numba"]
    sides = {"w2x": (w2x("w2x"), env),
             "torch": ([sys.executable, str(SCRIPT), "--threads", str(args.threads), "--png-level",
                        str(PNG_COMPRESS_LEVEL), "--torch-child", str(weights), str(args.image),
                        str(outs["torch"])], env)}
    if args.baseline:
        sides["baseline"] = (w2x("baseline"), {**env, "PYTHONPATH": str(args.baseline.resolve()),
                                                "W2X_CACHE_DIR": str(tmp / "baseline-cache")})
    if args.torch_malloc_tuned:
        sys.path.insert(0, str(ROOT / "tools"))
        from speed import MALLOC_TUNED
        cmd = sides["torch"][0][:-1] + [str(outs["torch-tuned"])]
        sides["torch-tuned"] = (cmd, {**env, **MALLOC_TUNED})
    for side in sides:
        if not side.startswith("torch"):
            timed(*sides[side])                        # fills the weight and Numba caches, untimed
    names = list(sides)
    times = {side: [] for side in names}
    cpu = {side: [] for side in names}
    loads = []
    for rep in range(args.repeat):
        for side in names[rep % len(names):] + names[:rep % len(names)]:
            loads.append(load_average())
            wall, used = timed(*sides[side])
            times[side].append(wall)
            cpu[side].append(used)
    med = {side: statistics.median(t) for side, t in times.items()}
    med_cpu = {side: statistics.median(t) for side, t in cpu.items()}
    return {"arch": arch, "seconds": med, "runs": times, "cpu_seconds": med_cpu, "cpu_runs": cpu,
            "load": loads, "ratio": {side: med[side] / med["torch"] for side in names if side != "torch"},
            "ratio_tuned": {side: med[side] / med["torch-tuned"] for side in names
                            if "torch-tuned" in med and not side.startswith("torch")},
            "cpu_ratio": {side: med_cpu[side] / med_cpu["torch"] for side in names if side != "torch"},
            "max_level_diff": {side: max_level_difference(outs[side], outs["torch"])
                               for side in names if side != "torch"}}


def startup(args, env: dict) -> dict:
    """Medians over ``--repeat`` fresh processes of each start-up step."""
    model_path = find_model(args, "cunet" if "cunet" in args.archs else args.archs.split(",")[0])
    bare = [timed([sys.executable, "-c", "pass"], env)[0] for _ in range(args.repeat)]
    imports = [timed([sys.executable, "-c", "import w2x.cli.main"], env)[0] for _ in range(args.repeat)]
    inside = []
    for _ in range(args.repeat):
        run = subprocess.run([sys.executable, str(SCRIPT), "--threads", str(args.threads), "--startup-child",
                              str(model_path), str(args.image)], env=env, capture_output=True, text=True,
                             cwd=tempfile.gettempdir())
        if run.returncode != 0:
            raise SystemExit(f"start-up child failed:\n{run.stderr[-2000:]}")
        inside.append(json.loads(run.stdout.splitlines()[-1]))
    rows = {"python (bare interpreter)": statistics.median(bare),
            "python + import w2x.cli.main": statistics.median(imports)}
    for key in inside[0]:
        rows[key] = statistics.median(r[key] for r in inside)
    return {"model": str(model_path.relative_to(args.model_dir)), "steps": rows, "load": load_average()}


def report(pairs: list[dict], start: dict | None, args) -> None:
    if pairs:
        report_pairs(pairs, args)
    if start:
        report_startup(start, args)


def report_pairs(pairs: list[dict], args) -> None:
    print(f"# whole processes, 2x of {args.image.name}, {args.threads} threads, median of {args.repeat} "
          f"alternating runs: wall and CPU (all threads) seconds; max|diff| in 8-bit levels against "
          f"torch's PNG; load averages in [ ]")
    print(f"{'arch':9} {'side':9} {'wall s':>7} {'/torch':>7} {'CPU s':>7} {'/torch':>7} {'max|diff|':>9}  wall runs")
    for r in pairs:
        for side, seconds in r["seconds"].items():
            ratio = f"{r['ratio'][side]:7.2f}" if side in r["ratio"] else f"{'-':>7}"
            cpu_ratio = f"{r['cpu_ratio'][side]:7.2f}" if side in r["cpu_ratio"] else f"{'-':>7}"
            diff = f"{r['max_level_diff'][side]:9d}" if side in r["max_level_diff"] else f"{'-':>9}"
            runs = " ".join(f"{t:.2f}" for t in r["runs"][side])
            print(f"{r['arch']:9} {side:9} {seconds:7.2f} {ratio} {r['cpu_seconds'][side]:7.2f} {cpu_ratio} "
                  f"{diff}  {runs}")
        for side, ratio in r.get("ratio_tuned", {}).items():
            print(f"{'':9} {side} / torch-tuned (both with glibc's malloc as w2x sets it): {ratio:.2f}")
        print(f"{'':9} load [{' '.join(r['load'])}]")


def report_startup(start: dict, args) -> None:
    print(f"\n# start-up ({start['model']}), medians of {args.repeat} processes [load {start['load']}]")
    for key, value in start["steps"].items():
        print(f"{key:32} {value:8.3f} s" if "numba c" not in key else f"{key:32} {value:8.0f}")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)
    if args.torch_child:
        return torch_child(args)
    if args.startup_child:
        return startup_child(args)
    sys.path.insert(0, str(ROOT))
    args.image, args.model_dir = args.image.resolve(), args.model_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="w2x-speed-process-") as tmp:
        tmp = Path(tmp)
        env = child_env(args, tmp / "cache")
        pairs = []
        for arch in [] if args.startup_only else args.archs.split(","):
            pairs.append(run_pairs(args, arch, tmp, env))
            print(f"# {arch} done", file=sys.stderr)
        start = None if args.no_startup else startup(args, env)
    report(pairs, start, args)
    if args.json:
        args.json.write_text(json.dumps({"pairs": pairs, "startup": start, "threads": args.threads,
                                         "image": str(args.image), "repeat": args.repeat}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
