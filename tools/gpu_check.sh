#!/usr/bin/env bash
# Tools: the one prepared GPU check of the cupy backend (w2x/nn/cuda.py, kernels/*.cu,
# w2x/nn/cuda_stream.py, w2x/nn/memory.py), for a machine with an NVIDIA GPU and no network; about 5-8 minutes
# on an H100.
#
#   bash tools/gpu_check.sh --stage   # here, with ../shared and PyPI: copies what the GPU tests and
#                                     # the benchmark read into build/gpu_shared (git-ignored, ~55 MB):
#                                     # fixtures, images, the models they name, and wheels of the
#                                     # pure-Python dependencies a GPU image may lack
#   bash tools/gpu_check.sh           # on the GPU machine, with build/gpu_shared carried there
#                                     # (device tool: carry ["build/gpu_shared"], timeout_s 560); steps:
#     1. environment: GPU, driver, Python, CuPy, PyTorch; wheels from build/gpu_shared/whl
#        (or .whl/, e.g. cupy-cuda12x) are installed to /tmp/site only for imports that fail;
#     2. pytest -m gpu: tests/test_cuda.py (every kernel vs ops.py, GEMM precisions, fixtures
#        in fp32/tf32/fp16, the streamer) and the parity suite on the cupy backend;
#     3. tools/speed_gpu.py: parity loss per precision, seconds per output megapixel of
#        vgg_7, upconv_7, upcunet, cunet in fp32/tf32/fp16, streamed and against PyTorch;
#     4. a summary: the pytest verdict, the tables, PASS/FAIL against the issue's bars.
# Logs and bench.json go to $OUT when set (the device tool brings it back), else build/gpu_check.
set -u
cd "$(dirname "$0")/.."
STAGE=build/gpu_shared
PY=${PYTHON:-python3}

if [ "${1:-}" = "--stage" ]; then
    SRC=${W2X_SHARED:-../shared}
    rm -rf "$STAGE" && mkdir -p "$STAGE/reference/original" "$STAGE/images" "$STAGE/whl" || exit 1
    "$PY" - "$SRC" "$STAGE" <<'EOF' || exit 1
import gzip, json, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
m = json.loads((src / "reference/manifest.json").read_text())
shutil.copy(src / "reference/manifest.json", dst / "reference")
models = {e["model"] for e in m["network"] + m["pipeline"]} | {"cunet/art/scale2.0x_model.json.gz"}
files = [f"reference/{e['file']}" for e in m["network"] + m["pipeline"]]
files += [f"images/{e['image']}" for e in m["pipeline"]] + ["images/miku_small.png"]
files += [str(p.relative_to(src)) for p in (src / "reference/original").iterdir()]
for rel in sorted(set(files)):
    shutil.copy(src / rel, dst / rel)
for rel in sorted(models):  # gzip the plain .json ones: load_model reads gzip by its magic bytes
    out = dst / "weights" / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = (src / "weights" / rel).read_bytes()
    out.write_bytes(raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, 6))
EOF
    "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$STAGE/whl" pypng platformdirs tqdm || exit 1
    du -sh "$STAGE"
    exit 0
fi

LOG=${OUT:-build/gpu_check}
mkdir -p "$LOG"
if [ -d ../shared/reference ]; then
    export W2X_SHARED=${W2X_SHARED:-$(cd ../shared && pwd)}
elif [ -d "$STAGE/reference" ]; then
    export W2X_SHARED=${W2X_SHARED:-$PWD/$STAGE}
else
    echo "no ../shared and no $STAGE: run 'bash tools/gpu_check.sh --stage' first and carry $STAGE"; exit 2
fi
export W2X_MODEL_DIR=${W2X_MODEL_DIR:-$W2X_SHARED/weights}
export PYTHONUNBUFFERED=1
unset CUPY_TF32   # fp32 must mean IEEE float32 GEMMs

echo "== 1. environment"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm --format=csv,noheader
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(m for m in ('png', 'platformdirs', 'tqdm', 'pytest', 'cupy', 'torch') if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
    wheels=$(ls "$STAGE"/whl/*.whl .whl/*.whl 2>/dev/null)
    echo "missing: $missing; installing $(echo "$wheels" | wc -w) carried wheel(s) to /tmp/site"
    [ -n "$wheels" ] && "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $wheels
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" - <<'EOF'
import sys
print("python", sys.version.split()[0])
for name in ("numpy", "cupy", "torch"):
    try:
        m = __import__(name)
        print(name, m.__version__)
    except ImportError as e:
        print(name, "MISSING:", e)
try:
    import cupy
    d = cupy.cuda.Device()
    rt = cupy.cuda.runtime
    print("cupy device", d.id, rt.getDeviceProperties(d.id)["name"].decode(), "cc", d.compute_capability,
          "free/total MiB", [v // 2**20 for v in rt.memGetInfo()], "CUDA runtime", rt.runtimeGetVersion())
except Exception as e:
    print("cupy device: NOT USABLE:", e)
EOF

echo "== 2. pytest -m gpu"
timeout 300 "$PY" -m pytest -m gpu -q -rfEs -p no:cacheprovider tests 2>&1 | tee "$LOG/pytest.log" | tail -40
pytest_rc=${PIPESTATUS[0]}

echo "== 3. benchmark"
timeout 240 "$PY" tools/speed_gpu.py --precision fp32 tf32 fp16 --vs-torch --stream --parity \
    --json "$LOG/bench.json" 2>&1 | tee "$LOG/bench.log" | tail -40
bench_rc=${PIPESTATUS[0]}

echo "== 4. summary"
if ! grep -q " passed" "$LOG/pytest.log"; then
    echo "NO GPU TEST RAN: CuPy or the device is not usable (see step 1)"; pytest_rc=1
fi
echo "pytest -m gpu: exit $pytest_rc ($(tail -1 "$LOG/pytest.log"))"
echo "speed_gpu:     exit $bench_rc"
grep -E "^(PASS|FAIL)" "$LOG/bench.log"
[ "$pytest_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
