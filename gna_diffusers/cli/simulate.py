"""`gna-diffusers simulate`: the speed-of-light figures of a configuration, without a GPU."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from . import parse_dims
from ..errors import UsageError

if TYPE_CHECKING:
    from ..ops.simulator import SimResult

# The published worked examples and the shipped recipes' configurations (GNA_SEMANTICS.md, recipes/).
SHIPPED = [
    ("flux-dev-4k", (256, 256), (80, 80), (16, 16)),
    ("hunyuan-video-720p", (30, 48, 80), (18, 24, 24), (16, 8, 8)),
    ("hunyuan-video-720p stride 1", (30, 48, 80), (18, 24, 24), (1, 1, 1)),
    ("cosmos-7b-text2world", (16, 44, 80), (8, 24, 24), (8, 8, 8)),
    ("flux2-dev-2048", (128, 128), (48, 48), (16, 16)),
    ("flux2-dev-4k", (256, 256), (80, 80), (16, 16)),
    ("qwen-image-1328", (83, 83), (48, 48), (16, 16)),
    ("qwen-image-4k", (256, 256), (80, 80), (16, 16)),
    ("hunyuan-video15-720p", (31, 45, 80), (16, 24, 24), (8, 8, 8)),
]

COLUMNS = ["config", "grid", "window", "stride", "q_tile", "kv_tile", "density", "flop_bound", "tile_bound",
           "visited", "masked", "block_sparse"]


def _x(values) -> str:
    return "x".join(str(v) for v in values)


def row(name: str, r: SimResult) -> list[str]:
    p = r.params
    return [name, _x(p.grid), _x(p.window), _x(p.stride), _x(r.q_tile), _x(r.kv_tile), f"{100 * r.density:.2f}%",
            f"{r.flop_bound:.2f}x", f"{r.tile_bound:.2f}x", str(r.visited_tiles), str(r.masked_tiles),
            "yes" if r.fully_block_sparse else "no"]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def run(args: argparse.Namespace) -> int:
    from ..ops.simulator import simulate, suggest
    if args.shipped:
        results = [(name, simulate(g, w, s)) for name, g, w, s in SHIPPED]
    else:
        if args.grid is None or args.window is None:
            raise UsageError("simulate needs --grid and --window (e.g. --grid 30x48x80 --window 18x24x24), or "
                             "--shipped")
        causal = tuple(bool(v) for v in args.causal) if args.causal else False
        results = [("given", simulate(args.grid, args.window, args.stride or 1, args.dilation or 1, causal,
                                      args.q_tile, args.kv_tile))]
        if args.stride is None:
            results += [(f"suggestion {i + 1}", r) for i, r in
                        enumerate(suggest(args.grid, args.window, args.dilation or 1, causal))]
    if args.json:
        print(json.dumps([{"config": name, **r.as_dict()} for name, r in results], indent=1))
    else:
        print_table([row(name, r) for name, r in results])
        if not args.shipped and args.stride is None:
            print("\nsuggestions: per tile shape, the smallest strides that leave no masked tile")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="density, speedup bounds and block sparsity of a GNA configuration",
                       description="Speed-of-light figures of a GNA configuration. Without --stride, also suggests "
                                   "the smallest strides and tile shapes that make the window fully block-sparse.")
    p.add_argument("--grid", type=parse_dims, help="token grid, e.g. 30x48x80")
    p.add_argument("--window", type=parse_dims, help="window per dimension, e.g. 18x24x24")
    p.add_argument("--stride", type=parse_dims, help="stride per dimension (default 1, and suggestions)")
    p.add_argument("--dilation", type=parse_dims)
    p.add_argument("--causal", type=parse_dims, help="0/1 per dimension, e.g. 1x0x0")
    p.add_argument("--q-tile", type=parse_dims, help="Q tile shape (default: best 128-token tile)")
    p.add_argument("--kv-tile", type=parse_dims, help="KV tile shape (default: the Q tile)")
    p.add_argument("--shipped", action="store_true", help="the shipped recipes' configurations")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)
