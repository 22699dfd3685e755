"""Step time of a full-size transformer (random weights) on 1 vs N GPUs, dense and GNA, under Ulysses context
parallelism; also checks that the N-GPU output equals the 1-GPU output.

    python scripts/bench_parallel.py --gpus 2 --model hunyuan_video --out bench/results/parallel.json

The script runs itself under torchrun twice (1 process, then N) and combines what the workers wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from gna_diffusers import disable_gna, enable_gna, load_recipe
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
        for mode in ("dense", "gna"):
            if mode == "gna":
                enable_gna(transformer, {"model": recipe.model, "grid": list(recipe.grid), "dense_steps": 0,
                                         "backend": args.backend, "layers": [
                                             {"blocks": g.blocks, "window": list(g.window), "stride": list(g.stride)}
                                             for g in recipe.layers]})
            outputs[mode] = transformer(**inputs)[0].float().cpu()
            dist.barrier()
            ms = cuda_time_ms(lambda: transformer(**inputs), warmup=1, reps=args.reps, max_seconds=100)
            rows.append({"model": args.model, "gpus": world, "mode": mode, "backend": args.backend,
                         "step_s": ms * spec.calls_per_step / 1000, **environment()})
        disable_gna(transformer)
    if rank == 0:
        torch.save({"rows": rows, "outputs": outputs}, args.result)
    dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--model", default="hunyuan_video", choices=["hunyuan_video", "cosmos", "flux"])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", default="bench/results/parallel.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
                                    "--model", args.model, "--backend", args.backend, "--reps", str(args.reps)],
                                   env={**os.environ, **MULTICAST_OFF})
            if code:
                return code
            results[gpus] = torch.load(result)
    single, multi = results[1], results[args.gpus]
    records = []
    for one, many in zip(single["rows"], multi["rows"]):
        ref, out = single["outputs"][one["mode"]], multi["outputs"][one["mode"]]
        rel = ((out - ref).norm() / ref.norm()).item()
        records.append({**many, "step_s_1gpu": one["step_s"], "scaling": one["step_s"] / many["step_s"],
                        "rel_err_vs_1gpu": rel, "outputs_finite": bool(torch.isfinite(out).all())})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "records": records}, indent=1))
    print(f"{'model':14} {'mode':6} {'gpus':>4} {'step_s':>8} {'1gpu_s':>8} {'scaling':>7} {'rel_err':>9}")
    for r in records:
        print(f"{r['model']:14} {r['mode']:6} {r['gpus']:4d} {r['step_s']:8.2f} {r['step_s_1gpu']:8.2f} "
              f"{r['scaling']:7.2f} {r['rel_err_vs_1gpu']:9.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
