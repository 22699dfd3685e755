"""Which exact kernel should a dense step use? Times one attention call of each model's dense step three ways, in
alternation, on the GPU, and writes JSON:

- `stock`: what diffusers runs: SDPA with PyTorch's default kernel choice and the model's key mask (HunyuanVideo
  masks padded text);
- `fast`: our dense path: the valid keys only, unmasked, cuDNN first (gna_diffusers.models.common.dense_attention);
- `cutlass`: `dense_path: kernel`: our GNA kernel with the window equal to the grid for the grid queries, the valid
  text as its extra tokens, and the text queries on the fast path, concatenated as the processors do.

    python scripts/bench_dense_path.py --out bench/results/dense_path_h200.json
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F

import gna_diffusers
from gna_diffusers.models.common import dense_attention
from gna_diffusers.timing import environment, interleaved_time_ms

# (name, grid, heads, text tokens, valid text tokens)
CASES = [
    ("hunyuan_video", (30, 48, 80), 24, 256, 64),
    ("flux_4k", (256, 256), 24, 512, 512),
    ("cosmos", (16, 44, 80), 32, 0, 0),
    # Qwen-Image 4K at batch 1: the pipeline drops an all-true text mask, so stock and fast both run unmasked; its
    # whole-pipeline fast dense step measured slower than stock (bench/results/whole_pipeline_all_models_h200_*.json)
    ("qwen_image", (256, 256), 24, 194, 194),
    ("wan", (21, 45, 80), 40, 0, 0),
    ("hunyuan_video_129f", (33, 45, 80), 24, 256, 64),
    ("qwen_image_1328", (83, 83), 24, 194, 194),
    ("flux2_4k", (256, 256), 48, 512, 512),
]


def eligible_kernels(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask) -> list[str]:
    """The SDPA kernels PyTorch finds eligible for the stock call (a kernel that declines shows why: a fast path
    that is slower than stock may be running another kernel)."""
    from torch.backends import cuda
    params = cuda.SDPAParams(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, 0.0, False, False)
    checks = {"cudnn": cuda.can_use_cudnn_attention, "flash": cuda.can_use_flash_attention,
              "efficient": cuda.can_use_efficient_attention}
    return [name for name, check in checks.items() if check(params, False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = []
    for name, grid, heads, text, valid in CASES:
        tokens = math.prod(grid)
        q, k, v = (torch.randn(1, tokens + text, heads, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        mask = torch.zeros(1, tokens + text, dtype=torch.bool, device="cuda")
        mask[:, :tokens + valid] = True
        key_mask = mask[:, None, None, :] if valid < text else None

        def stock():
            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  attn_mask=key_mask)

        def fast():
            return dense_attention(q, k, v, valid_keys=[tokens + valid])

        extra = dict(extra_key=k[:, tokens:], extra_value=v[:, tokens:],
                     extra_mask=mask[:, tokens:]) if text else {}

        def cutlass():
            grid_out = gna_diffusers.gna_attention(q[:, :tokens], k[:, :tokens], v[:, :tokens], grid=grid,
                                                   window=grid, backend="cutlass", **extra)
            if not text:
                return grid_out
            return torch.cat([grid_out, dense_attention(q[:, tokens:], k, v, valid_keys=[tokens + valid])], dim=1)

        kernels = eligible_kernels(q, k, v, key_mask)
        reference = stock().transpose(1, 2).float()
        error = ((fast().float() - reference).norm() / reference.norm()).item()
        kernel_error = ((cutlass().float() - reference).norm() / reference.norm()).item()
        times = interleaved_time_ms({"stock": stock, "fast": fast, "cutlass": cutlass}, rounds=9)
        flops = 4 * heads * 128 * (tokens + text) * (tokens + valid)
        row = {"case": name, "grid": list(grid), "heads": heads, "text": text, "valid_text": valid,
               **{f"{k_}_ms": t for k_, t in times.items()},
               **{f"{k_}_tflops": flops / t / 1e9 for k_, t in times.items()},
               "fast_vs_stock": times["stock"] / times["fast"], "fast_rel_error": error,
               "cutlass_vs_fast": times["fast"] / times["cutlass"], "cutlass_rel_error": kernel_error,
               "stock_eligible_kernels": kernels, **environment()}
        rows.append(row)
        print(f"{name:14} stock {times['stock']:7.2f} ms  fast {times['fast']:7.2f} ms  cutlass {times['cutlass']:7.2f}"
              f" ms  fast/stock {row['fast_vs_stock']:.2f}x  cutlass/fast {row['cutlass_vs_fast']:.2f}x  rel.err fast"
              f" {error:.1e} cutlass {kernel_error:.1e}  stock may use {kernels}", flush=True)
    with open(args.out, "w") as f:
        json.dump({"command": "python scripts/bench_dense_path.py", "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
