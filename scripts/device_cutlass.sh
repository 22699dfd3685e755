#!/usr/bin/env bash
# One device call for the cutlass backend: build all configurations, SASS check, GPU tests, benchmark.
# Usage (on the GPU machine, repo root): OUT=/some/dir [SCHEDULES="persistent single"] [BENCH_CASES="flux_4k ..."] \
#   scripts/device_cutlass.sh
set -o pipefail
export PYTHONUNBUFFERED=1 GNA_KERNEL_CACHE=${GNA_KERNEL_CACHE:-/tmp/gna_kernel_cache}
OUT=${OUT:-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 -m gna_diffusers build-kernels --jobs 8 || exit 1
bash "$(dirname "$0")/sass_check.sh" "$GNA_KERNEL_CACHE"
timeout 300 python3 -m pytest -q --maxfail=5 -p no:cacheprovider tests/test_cutlass_gpu.py 2>&1 | tail -40
python3 scripts/bench_cutlass.py --out "$OUT/bench_cutlass.json" ${SCHEDULES:+--schedules $SCHEDULES} ${BENCH_CASES:+--cases $BENCH_CASES}
