"""Run dense cuDNN SDPA and the cutlass GNA kernel once each inside an NVTX range "measure", for Nsight Compute.

Under `ncu --nvtx --nvtx-include measure/` each kernel runs alone, so the two durations compare the kernels
without the clock drift a long benchmark brings (speed of light = dense duration x density / GNA duration).

    ncu --clock-control none --nvtx --nvtx-include measure/ --metrics gpu__time_duration.sum \\
        python scripts/profile_kernels.py --cases flux_4k hunyuan_video [--schedule persistent --max-ctas 66]
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import bench_attention  # noqa: E402  (the shared cases)

from gna_diffusers.backends import cutlass  # noqa: E402
from gna_diffusers.ops.inputs import make_inputs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [c.name for c in bench_attention.CASES]
    parser.add_argument("--cases", nargs="+", default=names, choices=names)
    parser.add_argument("--schedule", choices=list(cutlass.SCHEDULES),
                        help="the kernel build to profile (default: the backend's choice per case)")
    parser.add_argument("--max-ctas", type=int, help="cap on a persistent build's CTAs (default: one per SM)")
    args = parser.parse_args()
    cutlass.SCHEDULE, cutlass.MAX_CTAS = args.schedule, args.max_ctas
    for case in bench_attention.CASES:
        if case.name not in args.cases:
            continue
        n = math.prod(case.grid)
        dtype = getattr(torch, case.dtype or "bfloat16")
        q, k, v = (torch.randn(1, n, case.heads, case.head_dim or 128, device="cuda", dtype=dtype) for _ in range(3))
        dense, _ = bench_attention.dense_sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        p = case.params
        gna = cutlass.kernel_only(make_inputs(q, k, v, grid=p.grid, window=p.window, stride=p.stride,
                                              dilation=p.dilation, causal=p.causal))
        for fn in (dense, gna):  # warm-up (and the kernel build)
            fn()
        torch.cuda.synchronize()
        with torch.cuda.nvtx.range("measure"):
            dense()
            gna()
        torch.cuda.synchronize()
        print(f"{case.name}: profiled dense then gna", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
