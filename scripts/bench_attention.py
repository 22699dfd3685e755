"""Time GNA backends against dense cuDNN SDPA on the published configurations; print a table, write JSON records.

Every row carries the dense baseline measured in the same run, so `sol_fraction = dense_ms * density / kernel_ms`
(1.0 = exactly the dense kernel's speed on the work that remains). `ms` is the whole call, token layout included
(a permute in and out for flex; none for cutlass at dilation 1, whose kernel reads the model's token order);
`kernel_ms` is the attention alone, on pre-tiled tensors where the backend needs them. The dense baseline, the call
and the kernel are timed in alternation, so clock drift during the run cannot favour one of them.

    python scripts/bench_attention.py --out bench/results/attention_h100.json [--backends flex cutlass] [--cases ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import gna_diffusers
from gna_diffusers.backends.registry import select_backend
from gna_diffusers.ops.inputs import make_inputs
from gna_diffusers.ops.simulator import simulate
from gna_diffusers.timing import environment, interleaved_time_ms


@dataclass(frozen=True)
class Case:
    name: str
    grid: tuple[int, ...]
    window: tuple[int, ...]
    stride: tuple[int, ...]
    heads: int


CASES = [
    Case("hunyuan_video", (30, 48, 80), (18, 24, 24), (16, 8, 8), 24),
    Case("flux_4k", (256, 256), (80, 80), (16, 16), 24),
    Case("cosmos", (16, 44, 80), (8, 24, 24), (8, 8, 8), 32),
    Case("hunyuan_video_stride1", (30, 48, 80), (18, 24, 24), (1, 1, 1), 24),
    Case("flux_4k_stride1", (256, 256), (80, 80), (1, 1), 24),
    Case("hunyuan_video_dense", (30, 48, 80), (30, 48, 80), (1, 1, 1), 24),
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
    if backend_name == "flex":
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


def run_case(case: Case, backends: list[str], dtype: torch.dtype, head_dim: int) -> list[dict]:
    n = math.prod(case.grid)
    q, k, v = (torch.randn(1, n, case.heads, head_dim, device="cuda", dtype=dtype) for _ in range(3))
    dense_call, base_name = dense_sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    sim = simulate(case.grid, case.window, case.stride)
    rows = []
    for name in backends:
        inputs = make_inputs(q, k, v, grid=case.grid, window=case.window, stride=case.stride)
        try:
            select_backend(name, inputs)
        except ValueError as err:
            print(f"[{case.name}] skip {name}: {err}", file=sys.stderr)
            continue
        call = lambda: gna_diffusers.gna_attention(q, k, v, grid=case.grid, window=case.window,  # noqa: E731
                                                   stride=case.stride, backend=name)
        fns = {"dense": dense_call, "total": call}
        kernel_fn = kernel_only(name, inputs)
        if kernel_fn is not None:
            fns["kernel"] = kernel_fn
        ms = interleaved_time_ms(fns)
        base_ms, total, kernel = ms["dense"], ms["total"], ms.get("kernel", ms["total"])
        flops = 4 * case.heads * head_dim * n * n * sim.density
        rows.append({
            "case": case.name, "backend": name, "grid": list(case.grid), "window": list(case.window),
            "stride": list(case.stride), "heads": case.heads, "head_dim": head_dim,
            "dtype": str(dtype).replace("torch.", ""), "ms": total, "kernel_ms": kernel, "dense_ms": base_ms,
            "dense_backend": base_name, "density": sim.density, "fully_block_sparse": sim.fully_block_sparse,
            "sol_fraction": base_ms * sim.density / kernel, "effective_tflops": flops / kernel / 1e9,
            "dense_tflops": 4 * case.heads * head_dim * n * n / base_ms / 1e9, "layout_ratio": total / kernel,
            **environment(),
        })
    del q, k, v
    torch.cuda.empty_cache()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["flex", "cutlass"])
    parser.add_argument("--cases", nargs="+", default=[c.name for c in CASES], choices=[c.name for c in CASES])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--out", default="bench/results/attention.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_attention needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = []
    for case in CASES:
        if case.name in args.cases:
            rows += run_case(case, args.backends, getattr(torch, args.dtype), args.head_dim)
            print(f"done {case.name}", file=sys.stderr, flush=True)
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "records": rows}, f, indent=1)
    header = (f"{'case':24} {'backend':8} {'ms':>8} {'kernel':>8} {'dense':>8} {'density':>7} {'SOL':>5} "
              f"{'TFLOP/s':>8} {'layout':>6}")
    print(header)
    for r in rows:
        print(f"{r['case']:24} {r['backend']:8} {r['ms']:8.2f} {r['kernel_ms']:8.2f} {r['dense_ms']:8.2f} "
              f"{r['density']:7.3f} {r['sol_fraction']:5.2f} {r['effective_tflops']:8.1f} {r['layout_ratio']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
