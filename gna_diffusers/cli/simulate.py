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
# --subtiles: the best halving of each Q tile into two halves (the consumer warpgroups' 64 rows) with boxes of their own
HALF_COLUMNS = ["halves", "rows", "half_visited", "half_masked", "half_bound", "cut"]
HALF_NOTE = """
halves: each Q tile halved along one dimension (dN: the best one), each half walking its own KV box; half_visited and
half_masked count (half, KV tile) pairs, two per whole-tile pair; half_bound = 2 * dense pairs / half_visited; cut = the
visited work per-half boxes leave out. rows: "same" when the halves are rows 0-63 and 64-127 of today's tile order (the
two warpgroups' rows now), "reorder" when Q rows must be reordered inside the tile. "(halves retiled)": the Q/KV tile
shapes and halving with the least half_visited. Today's kernel shares one KV pipeline per CTA: both warpgroups step
through the box covering both halves (= today's box, `visited`), so no gain without a kernel change. To realise it,
either each warpgroup skips the products of KV tiles outside its own box (loads stay the covering box, tensor-core
work drops by `cut`, the warpgroups then run different step counts against one KV ring), or each warpgroup loads its own
KV tiles (two pipelines or ring slots per warpgroup: the two load different tiles, half_visited loads per CTA instead
of visited)."""


def _x(values) -> str:
    return "x".join(str(v) for v in values)


def row(name: str, r: SimResult) -> list[str]:
    p = r.params
    return [name, _x(p.grid), _x(p.window), _x(p.stride), _x(r.q_tile), _x(r.kv_tile), f"{100 * r.density:.2f}%",
            f"{r.flop_bound:.2f}x", f"{r.tile_bound:.2f}x", str(r.visited_tiles), str(r.masked_tiles),
            "yes" if r.fully_block_sparse else "no"]


def half_row(r: SimResult) -> list[str]:
    """The --subtiles columns: the best halving of `r`'s Q tile (simulated with subtiles=True)."""
    h = r.best_split
    if h is None:
        return ["-", "-", "-", "-", "-", "-"]
    return [f"{_x(h.half_tile)}/d{h.dim}", "same" if h.row_order else "reorder", str(h.visited), str(h.masked),
            f"{r.split_bound(h):.2f}x", f"{100 * r.split_cut(h):.1f}%"]


def print_table(rows: list[list[str]], columns: list[str] = COLUMNS) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def with_retiled_halves(results: list[tuple[str, SimResult]]) -> list[tuple[str, SimResult]]:
    """Each result followed by its configuration simulated with the tiles and halving best for per-half boxes."""
    from ..ops.simulator import simulate
    from ..ops.tiles import choose_split_tiles
    out = []
    for name, r in results:
        p = r.params
        q, kv, _ = choose_split_tiles(p)
        out += [(name, r), (f"{name} (halves retiled)",
                            simulate(p.grid, p.window, p.stride, p.dilation, p.causal, q, kv, subtiles=True))]
    return out


def run(args: argparse.Namespace) -> int:
    from ..ops.simulator import simulate, suggest
    halves = args.subtiles
    if args.shipped:
        results = [(name, simulate(g, w, s, subtiles=halves)) for name, g, w, s in SHIPPED]
    else:
        if args.grid is None or args.window is None:
            raise UsageError("simulate needs --grid and --window (e.g. --grid 30x48x80 --window 18x24x24), or "
                             "--shipped")
        causal = tuple(bool(v) for v in args.causal) if args.causal else False
        results = [("given", simulate(args.grid, args.window, args.stride or 1, args.dilation or 1, causal,
                                      args.q_tile, args.kv_tile, subtiles=halves))]
        if args.stride is None and not halves:
            results += [(f"suggestion {i + 1}", r) for i, r in
                        enumerate(suggest(args.grid, args.window, args.dilation or 1, causal))]
    if halves:
        results = with_retiled_halves(results)
    if args.json:
        print(json.dumps([{"config": name, **r.as_dict()} for name, r in results], indent=1))
    elif halves:
        print_table([row(name, r) + half_row(r) for name, r in results], COLUMNS + HALF_COLUMNS)
        print(HALF_NOTE)
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
    p.add_argument("--subtiles", action="store_true",
                   help="add the counts of each Q tile halved into two halves (the two consumer warpgroups' 64 rows) "
                        "with KV boxes of their own, and a row with the tiles best for that (no suggestions)")
    p.set_defaults(func=run)
