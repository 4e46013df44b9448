"""Loopback load test of ``w2x serve``: many concurrent requests, every answer checked.

    PYTHONPATH=. python3 tools/web_load.py [--requests 200] [--concurrency 16] [--workers 2]

Starts the server in this process on 127.0.0.1 (uvicorn, fast upconv_7/vgg_7 models by
default), sends a seeded mix of requests from ``--concurrency`` threads:

* valid conversions of miku_small.png crops of mixed sizes with mixed options, half through
  ``POST /api`` and half through the job API (submit, poll, fetch the result);
* invalid ones: a bad field (expect 400), a text file (415), a truncated PNG (400);
* cancelled ones: a job submitted and cancelled at once (expect "cancelled", or "done"
  with a correct image when it finished first).

A 503 (queue full) is retried after a pause, as the page does, and counted. Every image is
compared pixel for pixel with the command line's output for the same input
and options (computed first, with w2x.cli.main); a 503 (queue full) is an allowed answer.
Each valid request has its own crop, so an answer sent to the wrong request cannot pass.
Prints one JSON object: counts by outcome, failures, latency, and peak memory (VmHWM of
the process, which holds the server, the clients and the references).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "images" / "miku_small.png"
FAST_STYLES = {"art": "upconv_7/art", "photo": "upconv_7/photo"}
SIDES = (16, 24, 32, 48, 64, 96)          # crop sides: mixed sizes, all small for 2 cores
OPTION_SETS = [  # noise, scale, tta_level, format
    (1, 2, 1, "png"), (-1, 2, 1, "webp"), (2, -1, 1, "png"), (0, 1, 1, "png"),
    (3, 2, 2, "png"), (-1, 4, 1, "png"), (1, -1, 4, "webp"), (-1, 1, 0, "png"),
]
KINDS = ["api"] * 9 + ["job"] * 7 + ["cancel"] * 2 + ["bad_field", "not_image", "truncated"]
POLL_S = 0.05
BUSY_RETRIES = 30         # a 503 is retried after a pause, as the page does
BUSY_PAUSE_S = 0.5        # shorter than the server's Retry-After, to keep the load up


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def crop(img: Image.Image, rng: random.Random, side: int) -> bytes:
    w, h = side, max(8, int(side * rng.uniform(0.6, 1.0)))
    x, y = rng.randrange(img.width - w), rng.randrange(img.height - h)
    buf = io.BytesIO()
    img.crop((x, y, x + w, y + h)).save(buf, "PNG")
    return buf.getvalue()


def reference(tmp: Path, data: bytes, style_dir: str, noise: int, scale: int, tta: int,
              fmt: str, limits) -> np.ndarray:
    """The CLI's output for the same input and options (tta 0 resolved as the server does)."""
    from w2x.cli.main import main
    if tta == 0:
        with Image.open(io.BytesIO(data)) as im:
            tta = limits.auto_tta_level(im.width * im.height, scale)
    src = tmp / f"in_{abs(hash(data))}.png"
    dst = tmp / f"out_{abs(hash(data))}_{noise}_{scale}_{tta}.{fmt}"
    src.write_bytes(data)
    mode = ("noise_scale" if noise >= 0 else "scale") if scale > 0 else "noise"
    argv = ["-i", str(src), "-o", str(dst), "-m", mode, "--style", style_dir, "-s",
            {1: "1.6", 2: "2", 4: "4"}.get(scale, "1"), "--downscale-filter", "sinc",
            "--tta-level", str(tta), "--progress", "none", "-q"]
    if noise >= 0:
        argv += ["-n", str(noise)]
    if main(argv) != 0:
        raise RuntimeError(f"the CLI failed on {argv}")
    return np.asarray(Image.open(dst))


def plan(n: int, seed: int, image: Path):
    rng = random.Random(seed)
    img = Image.open(image).convert("RGB")
    reqs = []
    for i in range(n):
        kind = rng.choice(KINDS)
        style = rng.choice(("art", "photo"))
        noise, scale, tta, fmt = rng.choice(OPTION_SETS)
        data = crop(img, rng, rng.choice(SIDES))
        fields = {"style": style, "noise": noise, "scale": scale, "tta_level": tta, "format": fmt}
        if kind == "bad_field":
            fields["noise"] = 7
        elif kind == "not_image":
            data = b"not an image\n" * 20
        elif kind == "truncated":
            data = data[: len(data) // 2]
        reqs.append({"i": i, "kind": kind, "data": data, "fields": fields})
    return reqs


def send(client, req, busy_seen: list) -> tuple[str, str]:
    """Send one request, retrying 503s; the outcome of its last answer."""
    for _ in range(BUSY_RETRIES):
        outcome, detail = send_once(client, req)
        if outcome != "busy":
            return outcome, detail
        busy_seen.append(req["i"])
        time.sleep(BUSY_PAUSE_S)
    return outcome, detail


def send_once(client, req) -> tuple[str, str]:
    """(outcome, detail): outcome ok | busy | expected_error | cancelled | wrong."""
    files = {"file": (f"r{req['i']}.png", req["data"], "image/png")}
    data = {k: str(v) for k, v in req["fields"].items()}
    kind = req["kind"]
    if kind in ("api", "bad_field", "not_image", "truncated"):
        r = client.post("/api", files=files, data=data)
        if r.status_code == 503:
            return "busy", ""
        if kind != "api":
            want = {"bad_field": 400, "not_image": 415, "truncated": 400}[kind]
            ok = r.status_code == want and "error" in r.json()
            return ("expected_error", "") if ok else ("wrong", f"{kind}: {r.status_code} {r.text[:120]}")
        return check(req, r)
    r = client.post("/api/jobs", files=files, data=data)
    if r.status_code == 503:
        return "busy", ""
    job = r.json()
    if kind == "cancel":
        client.delete(f"/api/jobs/{job['id']}")
    while job["state"] not in ("done", "failed", "cancelled"):
        time.sleep(POLL_S)
        job = client.get(f"/api/jobs/{job['id']}").json()
    if job["state"] == "cancelled":
        return ("cancelled", "") if kind == "cancel" else ("wrong", "cancelled without asking")
    if job["state"] == "failed":
        return "wrong", f"job failed: {job['error']}"
    return check(req, client.get(job["result"]["url"]))


def check(req, r) -> tuple[str, str]:
    if r.status_code != 200:
        return "wrong", f"{req['kind']} #{req['i']}: HTTP {r.status_code} {r.text[:120]}"
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    want = req["want"]
    if got.shape != want.shape or not np.array_equal(got, want):
        return "wrong", f"#{req['i']}: image differs from the CLI's ({got.shape} vs {want.shape})"
    return "ok", ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="server worker threads")
    p.add_argument("--queue", type=int, default=8, help="server queue beyond the workers")
    p.add_argument("--cache-mb", type=int, default=0, help="result cache (default off: every "
                   "request converts)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    p.add_argument("--model-dir", help="model root (default $W2X_MODEL_DIR or ../shared/weights)")
    args = p.parse_args(argv)

    import os
    os.environ.setdefault("W2X_MODEL_DIR", args.model_dir or str(ROOT.parent / "shared" / "weights"))
    import httpx
    import uvicorn
    from w2x.web.app import ServerConfig, create_app
    from w2x.web.limits import MIB, Limits

    limits = Limits()
    reqs = plan(args.requests, args.seed, args.image)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in reqs:
            if r["kind"] in ("api", "job", "cancel"):
                f = r["fields"]
                r["want"] = reference(Path(tmp), r["data"], FAST_STYLES[f["style"]], f["noise"],
                                      f["scale"], f["tta_level"], f["format"], limits)
    t_ref = time.perf_counter() - t0
    rss_before = vm_kib("VmRSS")

    app = create_app(ServerConfig(limits=limits, styles=FAST_STYLES, workers=args.workers,
                                  max_queued=args.queue, cache_bytes=args.cache_mb * MIB))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    peak = [vm_kib("VmRSS")]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], vm_kib("VmRSS"))

    threading.Thread(target=sample, daemon=True).start()
    local = threading.local()
    busy_seen: list[int] = []

    def one(req):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        t = time.perf_counter()
        outcome, detail = send(local.client, req, busy_seen)
        return outcome, detail, time.perf_counter() - t

    t1 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(one, reqs))
    wall = time.perf_counter() - t1
    stop.set()
    server.should_exit = True
    thread.join(30)

    counts: dict[str, int] = {}
    for outcome, _, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    lat = sorted(s for o, _, s in results if o == "ok")
    report = {
        "requests": len(reqs), "concurrency": args.concurrency, "server_workers": args.workers,
        "server_queue": args.queue, "cache_mb": args.cache_mb, "outcomes": counts,
        "answers_503": len(busy_seen), "requests_that_saw_503": len(set(busy_seen)),
        "failures": [d for o, d, _ in results if o == "wrong"][:10],
        "wall_s": round(wall, 2), "references_s": round(t_ref, 2),
        "latency_ok_s": {"p50": round(lat[len(lat) // 2], 3) if lat else None,
                         "p95": round(lat[int(len(lat) * 0.95)], 3) if lat else None,
                         "max": round(lat[-1], 3) if lat else None},
        "rss_mib": {"before_server": round(rss_before / 1024, 1),
                    "peak_during_load": round(peak[0] / 1024, 1),
                    "process_high_water": round(vm_kib("VmHWM") / 1024, 1)},
    }
    print(json.dumps(report, indent=1))
    return 0 if not counts.get("wrong") else 1


if __name__ == "__main__":
    sys.exit(main())
