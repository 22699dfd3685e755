"""Time the cutlass backend's build-time schedules against dense cuDNN SDPA (same records as bench_attention.py).

Each schedule's rows carry backend "cutlass" and a "schedule" key; the table shows SOL per schedule so the default
(`gna_diffusers.backends.cutlass.schedule_for`) can be chosen by measurement.

    python scripts/bench_cutlass.py --schedules persistent single --cases flux_4k --out bench/results/cutlass.json
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import bench_attention  # noqa: E402  (the shared cases and row builder)

from gna_diffusers import gna_attention  # noqa: E402
from gna_diffusers.backends import cutlass  # noqa: E402


CHECKS = [  # (grid, window, stride, causal): padding + partial tiles, and a fully block-sparse problem
    ((20, 36, 44), (9, 11, 13), (1, 2, 1), (False, True, False)),
    ((32, 64), (16, 32), (16, 16), (False, False)),
]


def check_schedules(schedules: list[str], dtype: torch.dtype, head_dim: int) -> dict[str, float]:
    """Worst relative error against the float32 reference per schedule (a schedule must compute the same thing)."""
    worst = {}
    for grid, window, stride, causal in CHECKS:
        n = 1
        for v in grid:
            n *= v
        q, k, v = (torch.randn(2, n, 3, head_dim, device="cuda", dtype=dtype) for _ in range(3))
        kwargs = dict(grid=grid, window=window, stride=stride, causal=causal)
        ref = gna_attention(q, k, v, backend="reference", **kwargs).float()
        for schedule in schedules:
            cutlass.SCHEDULE = schedule
            out = gna_attention(q, k, v, backend="cutlass", **kwargs).float()
            err = ((out - ref).norm() / ref.norm()).item()
            worst[schedule] = max(worst.get(schedule, 0.0), err if err == err else float("inf"))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", nargs="+", default=list(cutlass.SCHEDULES), choices=list(cutlass.SCHEDULES))
    names = [c.name for c in bench_attention.CASES]
    parser.add_argument("--cases", nargs="+", default=names, choices=names)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--head-dim", type=int, default=128, choices=[64, 128])
    parser.add_argument("--out", default="bench/results/cutlass.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_cutlass needs a CUDA GPU", file=sys.stderr)
        return 2
    arch = cutlass.arch_of(torch.device("cuda"))
    if arch is None:
        print(f"bench_cutlass needs a GPU the kernels are built for ({', '.join(cutlass.ARCHS)})", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(max_workers=len(args.schedules)) as pool:  # compile the schedules in parallel
        list(pool.map(lambda s: cutlass.build_extension(args.dtype, args.head_dim, schedule=s, arch=arch),
                      args.schedules))
    errors = check_schedules(args.schedules, getattr(torch, args.dtype), args.head_dim)
    print("relative error vs reference per schedule:", {k: f"{v:.2e}" for k, v in errors.items()})
    rows = []
    for case in bench_attention.CASES:
        if case.name not in args.cases:
            continue
        for schedule in args.schedules:
            cutlass.SCHEDULE = schedule
            for row in bench_attention.run_case(case, ["cutlass"], getattr(torch, args.dtype), args.head_dim):
                rows.append({**row, "schedule": schedule, "schedule_check_error": errors[schedule]})
        print(f"done {case.name}", file=sys.stderr, flush=True)
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "records": rows}, f, indent=1)
    print(f"{'case':24} {'schedule':18} {'ms':>8} {'kernel':>8} {'dense':>8} {'density':>7} {'SOL':>5} "
          f"{'tile SOL':>8} {'TFLOP/s':>8} {'layout':>6}")
    for r in rows:
        print(f"{r['case']:24} {r['schedule']:18} {r['ms']:8.2f} {r['kernel_ms']:8.2f} {r['dense_ms']:8.2f} "
              f"{r['density']:7.3f} {r['sol_fraction']:5.2f} {r['tile_sol']:8.3f} {r['effective_tflops']:8.1f} "
              f"{r['layout_ratio']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
