#!/usr/bin/env bash
# Compare the kernels of several git refs on one GPU in one run (same card, same clocks), e.g. a branch and main.
#   here:            scripts/bench_kernel_variants.sh export main=main fastdiv=fastdiv   (-> .kwork/<name>/)
#   on the device:   OUT=$OUT scripts/bench_kernel_variants.sh run main fastdiv           (carry .kwork and .whl)
# Each ref's kernels, package and scripts are exported together (a kernel's parameters follow its package's planner).
# `run` builds DTYPE (default bfloat16) and HEAD_DIM (default 128) of each (the schedules that have cases, in
# parallel), counts HGMMA and local-memory ops in the SASS, then times each with its own scripts/bench_cutlass.py (its
# schedule check against the reference included): the block-sparse recipes on the persistent schedule and the
# stride-1 grids on the single one, the schedules the backend picks. PERSISTENT_CASES and SINGLE_CASES replace those
# case lists (an empty one skips that schedule). It writes a build log per ref and a JSON per ref and schedule under
# $OUT: more than the device returns for several refs, so tar them into one file there.
set -o pipefail
mode=$1
shift
case "$mode" in
  export)
    for pair in "$@"; do
      name=${pair%%=*} ref=${pair#*=}
      rm -rf ".kwork/$name" && mkdir -p ".kwork/$name" || exit 1
      git archive "$ref" kernels gna_diffusers recipes scripts | tar -x -C ".kwork/$name" || exit 1
      echo "$name: $(git rev-parse --short "$ref")" | tee ".kwork/$name/ref.txt"
    done ;;
  run)
    DTYPE=${DTYPE:-bfloat16} HEAD_DIM=${HEAD_DIM:-128}
    PERSISTENT_CASES=${PERSISTENT_CASES-cosmos flux_4k hunyuan_video}
    SINGLE_CASES=${SINGLE_CASES-hunyuan_video_stride1 flux_4k_stride1}
    export PYTHONUNBUFFERED=1 GNA_KERNEL_CACHE=${GNA_KERNEL_CACHE:-/tmp/gna_kernel_cache}
    OUT=$(realpath -m "${OUT:-out}")
    mkdir -p "$OUT"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
    schedules=$([ -n "$PERSISTENT_CASES" ] && echo persistent; [ -n "$SINGLE_CASES" ] && echo single)
    for name in "$@"; do
      (cd ".kwork/$name" && PYTHONPATH=$PWD:$PYTHONPATH timeout 300 python3 -m gna_diffusers build-kernels \
         --dtypes "$DTYPE" --head-dims "$HEAD_DIM" --schedules $schedules --jobs 2 > "$OUT/build_$name.log" 2>&1
       echo "build $name: rc $?") &
    done
    wait
    bash "$(dirname "$0")/sass_check.sh" "$GNA_KERNEL_CACHE"
    bench() {  # name schedule case...
      local name=$1 schedule=$2
      shift 2
      (cd ".kwork/$name" && PYTHONPATH=$PWD:$PYTHONPATH timeout 150 python3 scripts/bench_cutlass.py \
        --schedules "$schedule" --dtype "$DTYPE" --head-dim "$HEAD_DIM" --cases "$@" \
        --out "$OUT/bench_${name}_${schedule}_${DTYPE}_d$HEAD_DIM.json" 2>&1) \
        | grep -E "^(relative|$(tr ' ' '|' <<< "$*"))"
    }
    for name in "$@"; do
      echo "== $name $(cat ".kwork/$name/ref.txt" 2>/dev/null)"
      [ -n "$PERSISTENT_CASES" ] && bench "$name" persistent $PERSISTENT_CASES
      [ -n "$SINGLE_CASES" ] && bench "$name" single $SINGLE_CASES
    done ;;
  *)
    echo "usage: $0 export NAME=REF... | run NAME..." >&2
    exit 2 ;;
esac
