"""Time GNA backends against dense cuDNN SDPA on the published configurations; print a table, write JSON records.

Every row carries the dense baseline measured in the same run, so `sol_fraction = dense_ms * density / kernel_ms` (1.0 =
exactly the dense kernel's speed on the work that remains) and `tile_sol = dense_ms / tile_bound / kernel_ms` (1.0 = the
dense kernel's speed per tile pair, counting the tile pairs the backend's own tile shapes visit, masked and padded keys
included); `tile_sol_call` is the same for the whole call (`ms`), what a model's layer pays. `ms` is the whole call,
token layout included (a permute in and out for flex; none for cutlass at dilation 1, whose kernel reads the model's
token order); `kernel_ms` is the attention alone, on pre-tiled tensors where the backend needs them. The dense baseline,
the call and the kernel are timed in alternation, so clock drift during the run cannot favour one of them. Cases with
text tokens (`*_text`) give every grid query `extra` extra keys of which the first `extra_valid` are valid (all without
a mask); their dense baseline is dense SDPA over the grid and the valid text keys. Causal and dilated cases keep the
same (non-causal, undilated) dense baseline; their density and tile bound count only what the causal/dilated
neighborhoods leave. A case may fix its own dtype and head_dim (the small and head_dim-64 cases); the others take
--dtype/--head-dim.

    python scripts/bench_attention.py --out bench/results/attention_h100.json [--backends flex cutlass] [--cases ...]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import gna_diffusers
from gna_diffusers.backends.registry import select_backend
from gna_diffusers.ops.inputs import make_inputs
from gna_diffusers.ops.params import BoolOrTuple, GNAParams, IntOrTuple
from gna_diffusers.ops.simulator import SimResult, simulate
from gna_diffusers.timing import environment, interleaved_time_ms


@dataclass(frozen=True)
class Case:
    name: str
    grid: tuple[int, ...]
    window: tuple[int, ...]
    stride: tuple[int, ...]
    heads: int
    extra: int = 0                       # extra (text) tokens every grid query sees
    extra_valid: Optional[int] = None    # of which the first ones are valid (a prefix mask); None: no mask
    dilation: IntOrTuple = 1
    causal: BoolOrTuple = False
    dtype: Optional[str] = None          # None: the run's --dtype
    head_dim: Optional[int] = None       # None: the run's --head-dim

    @property
    def params(self) -> GNAParams:
        """The validated configuration, one value per dimension."""
        return GNAParams.make(self.grid, self.window, self.stride, self.dilation, self.causal)


CASES = [
    Case("hunyuan_video", (30, 48, 80), (18, 24, 24), (16, 8, 8), 24),
    Case("hunyuan_video_text", (30, 48, 80), (18, 24, 24), (16, 8, 8), 24, extra=256, extra_valid=64),
    Case("flux_4k", (256, 256), (80, 80), (16, 16), 24),
    Case("flux_4k_text", (256, 256), (80, 80), (16, 16), 24, extra=512),
    Case("cosmos", (16, 44, 80), (8, 24, 24), (8, 8, 8), 32),
    Case("hunyuan_video_stride1", (30, 48, 80), (18, 24, 24), (1, 1, 1), 24),
    Case("flux_4k_stride1", (256, 256), (80, 80), (1, 1), 24),
    Case("hunyuan_video_dense", (30, 48, 80), (30, 48, 80), (1, 1, 1), 24),
    # off the recipes (#20): a 2D sliding window at 16K tokens in fp16 d64, a 3D window causal in time (32K tokens),
    # a dilated 3D window (55K tokens, the tiled layout), and small problems where host time could show
    Case("sliding2d_16k_d64_fp16", (128, 128), (32, 32), (1, 1), 24, dtype="float16", head_dim=64),
    Case("causal_time_32k", (16, 32, 64), (8, 16, 32), (1, 1, 1), 24, causal=(True, False, False)),
    Case("dilation2_3d_55k", (24, 48, 48), (8, 16, 16), (1, 1, 1), 24, dilation=2),
    Case("small2d_16k_d128", (128, 128), (64, 64), (16, 16), 24, dtype="bfloat16", head_dim=128),
    Case("small3d_16k_d64", (16, 32, 32), (8, 16, 16), (8, 8, 8), 24, dtype="bfloat16", head_dim=64),
    Case("small3d_8k_d64_fp16", (8, 32, 32), (4, 16, 16), (4, 8, 8), 24, dtype="float16", head_dim=64),
]


def dense_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[Callable[[], object], str]:
    """cuDNN SDPA (flash if cuDNN refuses) on [B, H, N, D], as a closure, and the backend's name."""
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION):
        def call(backend=backend):
            with sdpa_kernel(backend):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v)
        try:
            call()
            return call, backend.name
        except RuntimeError:
            continue
    raise RuntimeError("neither cuDNN nor flash SDPA can run these inputs")


def kernel_only(backend_name: str, inputs):
    """A closure running the backend's kernel alone (inputs pre-tiled where it needs a tiled layout), or None."""
    if backend_name == "flex" and inputs.extra_key is None:  # flex runs extra tokens as a second pass
        from gna_diffusers.backends.flex import TILE_VOLUME, flex_gna_tiled, gna_block_mask
        from gna_diffusers.ops.tiles import choose_tile
        tile = choose_tile(inputs.params, TILE_VOLUME)
        mask, q_layout, kv_layout = gna_block_mask(inputs.params, tile, tile, inputs.device)
        q, k, v = (q_layout.to_tiled(inputs.query), kv_layout.to_tiled(inputs.key), kv_layout.to_tiled(inputs.value))
        return lambda: flex_gna_tiled(q, k, v, mask, inputs.scale)
    if backend_name == "cutlass":
        from gna_diffusers.backends import cutlass
        return cutlass.kernel_only(inputs)
    return None


def kernel_tiles(backend_name: str, params: GNAParams) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The Q and KV tile shapes the backend runs this problem with."""
    if backend_name == "cutlass":
        from gna_diffusers.backends import cutlass
        plan = cutlass._plan(params)
        return plan.q_layout.tile, plan.kv_layout.tile
    from gna_diffusers.backends.flex import TILE_VOLUME
    from gna_diffusers.ops.tiles import choose_tile
    tile = choose_tile(params, TILE_VOLUME)
    return tile, tile


def tile_bound(sim: SimResult, extra_valid: int, tile_volume: int = 128) -> float:
    """Dense tile pairs over visited ones, the valid extra keys counted as ceil(valid / 128) more KV tiles per Q tile
    (as the cutlass kernel visits them) and as keys of the dense problem."""
    n = sim.tokens
    extra_tiles = -(-extra_valid // tile_volume)
    dense = -(-n // tile_volume) * -(-(n + extra_valid) // tile_volume)
    return dense / (sim.visited_tiles + sim.q_tiles * extra_tiles)


def case_tile_bound(case: Case, backend_name: str) -> tuple[float, SimResult]:
    """The tile bound of the tile shapes the backend runs the case with (causal and dilation included), and the
    simulation it comes from."""
    p = case.params
    q_tile, kv_tile = kernel_tiles(backend_name, p)
    sim = simulate(p.grid, p.window, p.stride, p.dilation, p.causal, q_tile=q_tile, kv_tile=kv_tile)
    valid = case.extra if case.extra_valid is None else case.extra_valid
    return tile_bound(sim, valid), sim


def run_case(case: Case, backends: list[str], dtype: torch.dtype, head_dim: int) -> list[dict]:
    dtype = getattr(torch, case.dtype) if case.dtype is not None else dtype
    head_dim = case.head_dim or head_dim
    p = case.params
    n = math.prod(case.grid)
    q, k, v = (torch.randn(1, n, case.heads, head_dim, device="cuda", dtype=dtype) for _ in range(3))
    extra = {}
    valid = case.extra if case.extra_valid is None else case.extra_valid
    if case.extra:
        ek, ev = (torch.randn(1, case.extra, case.heads, head_dim, device="cuda", dtype=dtype) for _ in range(2))
        extra = dict(extra_key=ek, extra_value=ev)
        if case.extra_valid is not None:
            extra["extra_mask"] = (torch.arange(case.extra, device="cuda") < valid)[None, :]
        dense_k, dense_v = torch.cat([k, ek[:, :valid]], dim=1), torch.cat([v, ev[:, :valid]], dim=1)
    else:
        dense_k, dense_v = k, v
    dense_call, base_name = dense_sdpa(q.transpose(1, 2), dense_k.transpose(1, 2), dense_v.transpose(1, 2))
    sim = simulate(p.grid, p.window, p.stride, p.dilation, p.causal)
    # attended (query, key) pairs over the dense problem's: the grid's neighborhoods plus every valid text key
    density = (sim.density * n + valid) / (n + valid)
    shape = dict(grid=p.grid, window=p.window, stride=p.stride, dilation=p.dilation, causal=p.causal)
    rows = []
    for name in backends:
        inputs = make_inputs(q, k, v, **shape, **extra)
        try:
            select_backend(name, inputs)
        except ValueError as err:
            print(f"[{case.name}] skip {name}: {err}", file=sys.stderr)
            continue
        call = lambda: gna_diffusers.gna_attention(q, k, v, backend=name, **shape, **extra)  # noqa: E731
        fns = {"dense": dense_call, "total": call}
        kernel_fn = kernel_only(name, inputs)
        if kernel_fn is not None:
            fns["kernel"] = kernel_fn
        ms = interleaved_time_ms(fns)
        base_ms, total, kernel = ms["dense"], ms["total"], ms.get("kernel", ms["total"])
        bound, kernel_sim = case_tile_bound(case, name)
        order = None  # cutlass: the model's token order in place, or the tiled layout (gathered in and out)
        if name == "cutlass":
            from gna_diffusers.backends import cutlass
            order = "natural" if cutlass._natural(p, cutlass.arch_of(q.device)) else "tiled"
        q_tile, kv_tile = kernel_sim.q_tile, kernel_sim.kv_tile
        dense_flops = 4 * case.heads * head_dim * n * (n + valid)
        rows.append({
            "case": case.name, "backend": name, "grid": list(p.grid), "window": list(p.window),
            "stride": list(p.stride), "dilation": list(p.dilation), "causal": list(p.causal), "heads": case.heads,
            "head_dim": head_dim, "extra_tokens": case.extra, "extra_valid": valid,
            "dtype": str(dtype).replace("torch.", ""), "ms": total, "kernel_ms": kernel, "dense_ms": base_ms,
            "dense_backend": base_name, "density": density,
            "fully_block_sparse": kernel_sim.fully_block_sparse, "q_tile": list(q_tile), "kv_tile": list(kv_tile),
            "tile_bound": bound, "sol_fraction": base_ms * density / kernel, "tile_sol": base_ms / bound / kernel,
            "tile_sol_call": base_ms / bound / total,
            "effective_tflops": dense_flops * density / kernel / 1e9, "dense_tflops": dense_flops / base_ms / 1e9,
            "layout_ratio": total / kernel, "token_order": order, **environment(),
        })
    del q, k, v, extra, dense_k, dense_v
    torch.cuda.empty_cache()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["flex", "cutlass"])
    parser.add_argument("--cases", nargs="+", default=[c.name for c in CASES], choices=[c.name for c in CASES])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"],
                        help="for the cases that do not fix their own")
    parser.add_argument("--head-dim", type=int, default=128, help="for the cases that do not fix their own")
    parser.add_argument("--runs", type=int, default=1,
                        help="run every case this many times (fresh inputs each time) and report each case's spread: "
                             "the issue's bar is the lowest of 3")
    parser.add_argument("--out", default="bench/results/attention.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_attention needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = []
    for run in range(args.runs):
        for case in CASES:
            if case.name in args.cases:
                rows += [{**row, "run": run} for row in run_case(case, args.backends, getattr(torch, args.dtype),
                                                                 args.head_dim)]
                print(f"done {case.name} (run {run + 1} of {args.runs})", file=sys.stderr, flush=True)
    spread = spread_rows(rows)
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "records": rows, "spread": spread}, f, indent=1)
    header = (f"{'case':24} {'backend':8} {'dtype':>8} {'ms':>8} {'kernel':>8} {'dense':>8} {'density':>7} "
              f"{'SOL':>5} {'tileSOL':>7} {'TFLOP/s':>8} {'layout':>6}")
    print(header)
    for r in rows:
        dtype = {"bfloat16": "bf16", "float16": "fp16"}[r["dtype"]] + f"/d{r['head_dim']}"
        print(f"{r['case']:24} {r['backend']:8} {dtype:>8} {r['ms']:8.2f} {r['kernel_ms']:8.2f} {r['dense_ms']:8.2f} "
              f"{r['density']:7.3f} {r['sol_fraction']:5.2f} {r['tile_sol']:7.2f} {r['effective_tflops']:8.1f} "
              f"{r['layout_ratio']:6.2f}")
    if args.runs > 1:
        print(f"\n{'case':24} {'backend':8} {'runs':>4} {'SOL min':>7} {'median':>6} {'max':>5} {'tileSOL min':>11} "
              f"{'call':>5}")
        for r in spread:
            print(f"{r['case']:24} {r['backend']:8} {r['runs']:4d} {r['sol_min']:7.3f} {r['sol_median']:6.3f} "
                  f"{r['sol_max']:5.3f} {r['tile_sol_min']:11.3f} {r['tile_sol_call_min']:5.3f}")
    return 0


def spread_rows(rows: list[dict]) -> list[dict]:
    """Per case and backend over the runs: lowest, median and highest speed of light, and the lowest tile SOL."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["case"], row["backend"]), []).append(row)
    return [{"case": case, "backend": backend, "runs": len(group),
             "sol_min": min(r["sol_fraction"] for r in group),
             "sol_median": statistics.median(r["sol_fraction"] for r in group),
             "sol_max": max(r["sol_fraction"] for r in group),
             "tile_sol_min": min(r["tile_sol"] for r in group),
             "tile_sol_call_min": min(r["tile_sol_call"] for r in group),
             "kernel_ms": [r["kernel_ms"] for r in group], "dense_ms": [r["dense_ms"] for r in group]}
            for (case, backend), group in groups.items()]


if __name__ == "__main__":
    sys.exit(main())
