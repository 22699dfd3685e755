"""Step time of a full-size transformer (random weights) on 1 vs N GPUs, dense and GNA, under Ulysses context
parallelism; also checks that the N-GPU output equals the 1-GPU output.

    python scripts/bench_parallel.py --gpus 2 --model hunyuan_video --out bench/results/parallel.json

`--head-chunks 1 2` times GNA on N GPUs once per head-chunk count; `--profile` adds, after all timing, the top CUDA
kernels of one GNA transformer call on rank 0 for each run.

The script runs itself under torchrun twice (1 process, then N) and combines what the workers wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

PROFILE_KERNELS = 20        # kernels listed per profile
KERNEL_NAME_CHARS = 80


def top_kernels(fn: Callable[[], object], count: int = PROFILE_KERNELS) -> list[dict]:
    """The `count` CUDA kernels with the most total time in one call of `fn` (name, total ms, launches): where a
    step's time goes, the all-to-alls and copies included."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
    ranked = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:count]
    return [{"kernel": e.key[:KERNEL_NAME_CHARS], "total_ms": e.self_device_time_total / 1000, "calls": e.count}
            for e in ranked]


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from gna_diffusers import disable_gna, enable_gna, gna_state, load_recipe
    from gna_diffusers.full_size import FULL_SIZE, build_random
    from gna_diffusers.parallel import enable_context_parallel, init_from_env
    from gna_diffusers.timing import cuda_time_ms, environment

    rank, world, device = init_from_env()
    spec = FULL_SIZE[args.model]
    torch.manual_seed(0)                                  # identical weights and inputs on every rank
    transformer = build_random(args.model, device)
    inputs = spec.make_inputs(1.0, device, torch.bfloat16, 1)
    if world > 1:
        enable_context_parallel(transformer, world)
    recipe = load_recipe(spec.recipe)
    rows, outputs = [], {}
    with torch.no_grad():
        # GNA on N GPUs once per head-chunk count asked for (one GPU has no all-to-alls to overlap)
        runs = [("dense", 1)] + [("gna", chunks) for chunks in (args.head_chunks if world > 1 else [1])]
        for mode, chunks in runs:
            if mode == "gna":
                state = gna_state(transformer) or enable_gna(transformer, {
                    "model": recipe.model, "grid": list(recipe.grid), "dense_steps": 0, "backend": args.backend,
                    "layers": [{"blocks": g.blocks, "window": list(g.window), "stride": list(g.stride)}
                               for g in recipe.layers]})
                state.head_chunks = chunks
            outputs[mode, chunks] = transformer(**inputs)[0].float().cpu()
            dist.barrier()
            ms = cuda_time_ms(lambda: transformer(**inputs), warmup=1, reps=args.reps, max_seconds=100)
            rows.append({"model": args.model, "gpus": world, "mode": mode, "head_chunks": chunks,
                         "backend": args.backend, "step_s": ms * spec.calls_per_step / 1000, **environment()})
        # profiles last, after every timing: the profiler cannot change what was timed
        for row in rows if args.profile else []:
            if row["mode"] == "gna":
                gna_state(transformer).head_chunks = row["head_chunks"]
                dist.barrier()
                if rank == 0:
                    row["profile_top"] = top_kernels(lambda: transformer(**inputs))
                else:
                    transformer(**inputs)          # the other ranks take part in the all-to-alls
        disable_gna(transformer)
    if rank == 0:
        torch.save({"rows": rows, "outputs": outputs}, args.result)
    dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--model", default="hunyuan_video", choices=["hunyuan_video", "cosmos", "flux", "wan"])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", default="bench/results/parallel.json")
    parser.add_argument("--profile", action="store_true",
                        help=f"GNA mode: also profile one transformer call on rank 0 (after timing) and record its top "
                             f"{PROFILE_KERNELS} CUDA kernels by total time")
    parser.add_argument("--head-chunks", type=int, nargs="+", default=[1],
                        help="GNA on N GPUs: time once per value; each rank attends its heads in that many chunks so "
                             "that all-to-alls overlap attention (1 = no chunks)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any(chunks < 1 for chunks in args.head_chunks):
        parser.error(f"--head-chunks {args.head_chunks}: every value must be a positive integer")
    if args.worker:
        worker(args)
        return 0
    from gna_diffusers.parallel import MULTICAST_OFF
    import subprocess
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for gpus in (1, args.gpus):
            result = os.path.join(tmp, f"{gpus}.pt")
            code = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    f"--nproc-per-node={gpus}", __file__, "--worker", "--result", result,
                                    "--model", args.model, "--backend", args.backend, "--reps", str(args.reps),
                                    "--head-chunks", *map(str, args.head_chunks),
                                    *(["--profile"] if args.profile else [])],
                                   env={**os.environ, **MULTICAST_OFF})
            if code:
                return code
            results[gpus] = torch.load(result)
    single, multi = results[1], results[args.gpus]
    records = []
    single_rows = {row["mode"]: row for row in single["rows"]}
    for many in multi["rows"]:
        one = single_rows[many["mode"]]
        ref = single["outputs"][one["mode"], one["head_chunks"]]
        out = multi["outputs"][many["mode"], many["head_chunks"]]
        rel = ((out - ref).norm() / ref.norm()).item()
        records.append({**many, "step_s_1gpu": one["step_s"], "scaling": one["step_s"] / many["step_s"],
                        "rel_err_vs_1gpu": rel, "outputs_finite": bool(torch.isfinite(out).all()),
                        **({"profile_top_1gpu": one["profile_top"]} if "profile_top" in one else {})})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "records": records}, indent=1))
    print(f"{'model':14} {'mode':6} {'gpus':>4} {'chunks':>6} {'step_s':>8} {'1gpu_s':>8} {'scaling':>7} "
          f"{'rel_err':>9}")
    for r in records:
        print(f"{r['model']:14} {r['mode']:6} {r['gpus']:4d} {r['head_chunks']:6d} {r['step_s']:8.2f} "
              f"{r['step_s_1gpu']:8.2f} {r['scaling']:7.2f} {r['rel_err_vs_1gpu']:9.2e}")
    profiles = [("1 GPU", r["profile_top_1gpu"]) for r in records if "profile_top_1gpu" in r][:1]   # one 1-GPU run
    profiles += [(f"{r['gpus']} GPUs, {r['head_chunks']} head chunk(s)", r["profile_top"]) for r in records
                 if "profile_top" in r]
    for title, kernels in profiles:
        print(f"\ntop CUDA kernels, GNA, {title}, rank 0, one transformer call:\n{'total_ms':>9} {'calls':>6}  kernel")
        for k in kernels:
            print(f"{k['total_ms']:9.2f} {k['calls']:6d}  {k['kernel']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
