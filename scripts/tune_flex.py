"""Sweep FlexAttention kernel options on the fully block-sparse cases; prints kernel ms per option set.

    python scripts/tune_flex.py --out bench/results/flex_tuning.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
from triton.testing import do_bench

from gna_diffusers.backends import flex
from gna_diffusers.ops.params import GNAParams
from gna_diffusers.ops.tiles import choose_tile
from gna_diffusers.timing import environment

CASES = [("hunyuan_video", (30, 48, 80), (18, 24, 24), (16, 8, 8), 24),
         ("flux_4k", (256, 256), (80, 80), (16, 16), 24),
         ("cosmos", (16, 44, 80), (8, 24, 24), (8, 8, 8), 32)]
OPTIONS = [
    {},
    {"USE_TMA": True},
    {"USE_TMA": True, "BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
    {"USE_TMA": True, "BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/results/flex_tuning.json")
    args = parser.parse_args()
    rows = []
    for name, grid, window, stride, heads in CASES:
        params = GNAParams.make(grid, window, stride)
        tile = choose_tile(params, flex.TILE_VOLUME)
        mask, q_layout, kv_layout = flex.gna_block_mask(params, tile, tile, torch.device("cuda"))
        q, k, v = (torch.randn(1, q_layout.tiled_tokens, heads, 128, device="cuda", dtype=torch.bfloat16)
                   for _ in range(3))
        for options in OPTIONS:
            fn = flex._compiled_flex()
            call = lambda: fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=mask,  # noqa
                              scale=1 / math.sqrt(128), return_lse=True, kernel_options=options or None)
            try:
                with torch._dynamo.config.patch(recompile_limit=flex.RECOMPILE_LIMIT):
                    ms = do_bench(call, return_mode="median")
            except Exception as err:  # an option set the installed torch rejects: record and go on
                print(f"{name} {options}: {type(err).__name__}: {str(err)[:200]}", file=sys.stderr)
                ms = None
            rows.append({"case": name, "options": options, "kernel_ms": ms, **environment()})
            print(f"{name:14} {json.dumps(options):80} {ms if ms is None else round(ms, 2)}", flush=True)
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "records": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
