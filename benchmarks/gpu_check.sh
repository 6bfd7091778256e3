#!/usr/bin/env bash
# The GPU side of the engine in one call: GPU tests, the pipeline study with pinned and
# pageable host memory, two instances sharing the GPU, and a profile of the 3-way pipeline.
#
#   benchmarks/gpu_check.sh wheels   # here, once: the wheels the device image lacks, into .whl/
#   benchmarks/gpu_check.sh          # on the GPU machine: everything, files under $OUT
#
# The device image has python3 (3.12) with torch+CUDA, numpy, grpcio, rich, pytest, onnxruntime
# but not tritonclient (headrace reads Triton's ModelConfig from it) nor python-rapidjson, and
# its protobuf/grpcio may be older than tritonclient's generated code needs: those travel as
# wheels in .whl/ (ignored by git; name it in the run tool's carry). headrace itself runs from
# src/ via PYTHONPATH (nothing to build). See benchmarks/README.md for the run command.
#
# Knobs (environment): BATCH (8192), FEATURES (2048: input shape [FEATURES] per item),
# DEPTH (auto: matmuls per batch chosen so compute ~ H2D + D2H; or a number), ITERS (200),
# REPEATS (3), BUFFERS (1,2,3,4), CPU_DELAYS (0), PYTHON (python3), SKIP_TESTS (0),
# DEVICE (cuda:0; "cpu" with a numeric DEPTH smoke-tests this script on a machine without GPU).
# Files written (at most 8, as the run tool brings back): gpu_check.log (everything, ending
# with a markdown summary), gpu_tests.txt, pipeline_gpu_pinned.json/.png,
# pipeline_gpu_pageable.json, pipeline_scaleout_gpu.json, profile.txt (nsys stats, or
# torch.profiler's table when nsys is missing) and profile.nsys-rep / profile_trace.json.gz.
set -u -o pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "wheels" ]; then
    # Versions pinned to what this checkout is tested with (pip list of the dev machine).
    mkdir -p .whl
    for spec in tritonclient==2.73.0 python-rapidjson==1.25 protobuf==6.33.6 grpcio==1.85.1; do
        "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d .whl "$spec" || exit 1
    done
    ls -l .whl
    du -sh .whl
    exit 0
fi

OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
small() {  # copy $1 to $2 when it fits what the run tool brings back (16 MiB a file)
    if [ -f "$1" ] && [ "$(stat -c %s "$1")" -lt 15000000 ]; then cp "$1" "$2"
    else echo "not kept: $1 (missing or over 15 MB)"; fi
}

if ls .whl/*.whl >/dev/null 2>&1; then
    step "installing carried wheels into /tmp/site"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi

DEVICE=${DEVICE:-cuda:0}
step "machine"
nvidia-smi || true
"$PYTHON" - "$DEVICE" <<'EOF' || exit 1
import json, sys, torch
from headrace.bench.machine import machine_info
print(json.dumps(machine_info(), indent=1))
assert torch.cuda.is_available() or sys.argv[1] == "cpu", "torch sees no GPU"
EOF

BATCH=${BATCH:-8192}
FEATURES=${FEATURES:-2048}
ITERS=${ITERS:-200}
REPEATS=${REPEATS:-3}
BUFFERS=${BUFFERS:-1,2,3,4}
CPU_DELAYS=${CPU_DELAYS:-0}
DEPTH=${DEPTH:-auto}

if [ "$DEPTH" = "auto" ]; then
    step "calibrating depth: one matmul layer vs H2D + D2H of a [$BATCH, $FEATURES] FP32 batch"
    DEPTH=$("$PYTHON" - "$BATCH" "$FEATURES" <<'EOF'
import sys, torch
batch, features = int(sys.argv[1]), int(sys.argv[2])
host = torch.randn(batch, features).pin_memory()
back = torch.empty_like(host).pin_memory()
weight = torch.randn(features, features, device="cuda") / features**0.5
device = host.to("cuda")

def timed(work, repeats=20):
    for _ in range(3):
        work()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        work()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats

h2d = timed(lambda: device.copy_(host, non_blocking=True))
d2h = timed(lambda: back.copy_(device, non_blocking=True))
layer = timed(lambda: torch.tanh(device @ weight))
gb = host.numel() * 4 / 1e9
print(f"H2D {h2d:.3f} ms ({gb / h2d * 1e3:.1f} GB/s), D2H {d2h:.3f} ms "
      f"({gb / d2h * 1e3:.1f} GB/s), one layer {layer:.3f} ms", file=sys.stderr)
print(max(1, round((h2d + d2h) / layer)))
EOF
    ) || exit 1
fi
echo "workload: batch $BATCH, input [$FEATURES], depth $DEPTH, $ITERS batches, $REPEATS repeats"
STUDY=(--device "$DEVICE" --batch-size "$BATCH" --input-shape "$FEATURES" --depth "$DEPTH"
    --num-iterations "$ITERS" --repeats "$REPEATS" --cpu-delay-ms "$CPU_DELAYS")
HEADRACE=("$PYTHON" -m headrace.cli)

if [ "${SKIP_TESTS:-0}" != "1" ]; then
    step "pytest -m gpu"
    timeout 150 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors tests 2>&1 \
        | tee "$OUT/gpu_tests.txt"
    echo "pytest exit: $?"
fi

step "pipeline study, pinned host memory"
timeout 120 "${HEADRACE[@]}" bench pipeline "${STUDY[@]}" --num-buffers "$BUFFERS" \
    --out "$OUT/pipeline_gpu_pinned.json"
step "pipeline study, pageable host memory"
timeout 100 "${HEADRACE[@]}" bench pipeline "${STUDY[@]}" --num-buffers "$BUFFERS" --no-pin-memory \
    --no-plot --out "$OUT/pipeline_gpu_pageable.json"

NGPU=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 1 ] && "$PYTHON" -c "import ray" 2>/dev/null; then
    step "scale-out: $NGPU Ray actors with one GPU each"
    SCALE=(--gpus "$NGPU")
else
    step "scale-out: 1 and 2 instances on threads, sharing the device (no ray here, or no GPU)"
    SCALE=(--scaleout --num-workers 2)
fi
timeout 80 "${HEADRACE[@]}" bench pipeline "${STUDY[@]}" "${SCALE[@]}" --num-buffers 1,3 \
    --repeats 1 --no-plot --out "$OUT/pipeline_scaleout_gpu.json"

step "profile of the 3-way pipeline (NVTX ranges H2D/Compute/D2H[buf=i])"
PROFILE_RUN=(-m headrace.cli bench pipeline "${STUDY[@]}" --num-buffers 3 --num-iterations 30
    --repeats 1 --warmup-iterations 5 --no-plot --out /tmp/pipeline_profiled.json)
if command -v nsys >/dev/null 2>&1; then
    timeout 80 nsys profile -t cuda,nvtx -o /tmp/pipeline3 --force-overwrite true \
        "$PYTHON" "${PROFILE_RUN[@]}" \
        && nsys stats -r nvtx_sum,cuda_gpu_trace -f column /tmp/pipeline3.nsys-rep \
            >"$OUT/profile.txt" 2>&1
    echo "nsys exit: $?"
    small /tmp/pipeline3.nsys-rep "$OUT/profile.nsys-rep"
else
    echo "nsys is not on the PATH: torch.profiler instead (kernel and copy times per stream)"
    timeout 80 "$PYTHON" - "${PROFILE_RUN[@]:2}" >"$OUT/profile.txt" 2>&1 <<'EOF'
import sys
from torch.profiler import ProfilerActivity, profile
from headrace.cli import main

with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    main(sys.argv[1:])
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
prof.export_chrome_trace("/tmp/pipeline3_trace.json")  # streams as rows in chrome://tracing
EOF
    echo "torch.profiler exit: $?"
    gzip -f /tmp/pipeline3_trace.json && small /tmp/pipeline3_trace.json.gz "$OUT/profile_trace.json.gz"
fi

step "summary"
"$PYTHON" - "$OUT" <<'EOF'  # into gpu_check.log: the run tool brings back 8 files at most
import json, os, sys
out = sys.argv[1]
print("| host memory | buffers | batches/s | speedup | ideal | % of ideal |")
print("| --- | --- | --- | --- | --- | --- |")
for kind in ("pinned", "pageable"):
    path = os.path.join(out, f"pipeline_gpu_{kind}.json")
    if not os.path.exists(path):
        continue
    for r in json.load(open(path))["results"]:
        share = r["batches_per_s"] / r["ideal_batches_per_s"] if r["ideal_batches_per_s"] else 0
        print(f"| {kind} | {r['num_buffers']} | {r['batches_per_s']:.1f} | "
              f"{r['speedup']:.2f}x | {r['ideal_batches_per_s']:.1f} | {100 * share:.0f}% |")
path = os.path.join(out, "pipeline_scaleout_gpu.json")
if os.path.exists(path) and json.load(open(path))["study"] == "pipeline_scaleout":
    print("\n| workers | buffers | batches/s | efficiency |\n| --- | --- | --- | --- |")
    for r in json.load(open(path))["results"]:
        print(f"| {r['workers']} | {r['num_buffers']} | {r['batches_per_s']:.1f} | "
              f"{100 * r['scaling_efficiency']:.0f}% |")
EOF
ls -l "$OUT"
