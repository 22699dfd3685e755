"""Border (masked) KV tiles of the benchmark cases as the Hopper kernel visits them, on the CPU: per case, the visited
KV tiles per Q tile and the border share; which dimensions each border tile straddles (the key-set work,
KeyMask::tile_keys, is per straddled dimension); and, for the kernel's two consumer warpgroups (each owns one 64-row
half of the Q tile, halved along its outermost dimension of side > 1), whether a border tile is interior for a half
(that warpgroup could skip the mask), partial, or holds no key of the half (it could skip the tile). Everything is per
dimension (ops/tiles.py): the neighbor relation is a product over dimensions and a Q tile or half is a product of
ranges, so a tile holds no neighbor of a half only if its range misses the half's window union along some dimension,
and is interior only if it lies inside every window along every dimension (the whole-Q-tile counts are
tile_counts'; the half counts are tests/test_subtiles.py's boxes, checked there against a token-level brute force).

    python scripts/border_tiles.py [--cases causal_time_32k ...]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_attention import CASES  # noqa: E402

from gna_diffusers.backends.cutlass import _plan  # noqa: E402
from gna_diffusers.ops.semantics import group_length  # noqa: E402
from gna_diffusers.ops.tiles import dim_tile_ranges  # noqa: E402

EMPTY, PARTIAL, INTERIOR = 0, 1, 2
NAMES = {EMPTY: "empty", PARTIAL: "partial", INTERIOR: "interior"}


def _states(kv: np.ndarray, r, g: int, i: int) -> np.ndarray:
    """State along one dimension of KV tiles `kv` for range set `r` at (group g, tile i)."""
    inside = (kv >= r.full_lo[g, i]) & (kv < r.full_hi[g, i])
    hit = (kv >= r.lo[g, i]) & (kv < r.hi[g, i])
    return np.where(inside, INTERIOR, np.where(hit, PARTIAL, EMPTY))


def dim_states(params, i: int, q_tile: int, kv_tile: int, q_tiles: int, halved: bool) -> list[np.ndarray]:
    """Per real Q tile along dimension i: [KV tiles of its box, 3] states for the whole tile and its two halves."""
    args = (params.grid[i], params.window[i], params.stride[i], params.dilation[i], params.causal[i])
    whole = dim_tile_ranges(*args, q_tile, kv_tile, q_tiles)
    half = dim_tile_ranges(*args, q_tile // 2, kv_tile, 2 * q_tiles) if halved else None
    out = []
    for g in range(params.dilation[i]):
        glen = int(group_length(params.grid[i], params.dilation[i], g))
        for t in range(q_tiles):
            if t * q_tile >= glen:
                continue  # padding tile: its output is never stored
            kv = np.arange(whole.lo[g, t], whole.hi[g, t])
            w = _states(kv, whole, g, t)
            # a half of padding only takes the last real query's window, like the kernel's padding rows
            halves = [_states(kv, half, g, h if h * (q_tile // 2) < glen else 2 * t) for h in (2 * t, 2 * t + 1)] \
                if halved else [w, w]
            out.append(np.stack([w, *halves], -1))
    return out


def border_report(case) -> dict:
    params = case.params
    plan = _plan(params)
    q, kv, n = plan.q_layout.tile, plan.kv_layout.tile, plan.q_layout.tiles_per_dim
    split = next(i for i, side in enumerate(q) if side > 1)  # the warpgroups' halves (TokenView::split_dim)
    per_dim = [dim_states(params, i, q[i], kv[i], n[i], i == split) for i in range(params.ndim)]
    visited, q_tiles, fully_masked = 0, 0, 0
    halves = collections.Counter()    # (state of half 0, state of half 1) over border tiles
    straddled = collections.Counter()  # dimensions a border tile straddles
    for combo in itertools.product(*per_dim):
        grids = np.meshgrid(*[np.arange(len(a)) for a in combo], indexing="ij")
        states = np.stack([a[g.ravel()] for a, g in zip(combo, grids)], 0)  # [dims, tiles, 3]
        tile = states.min(0)  # empty along one dimension: empty; interior along all: interior
        q_tiles += 1
        visited += len(tile)
        fully_masked += int((tile[:, 0] == EMPTY).sum())
        border = tile[:, 0] == PARTIAL
        halves.update(zip(tile[border, 1].tolist(), tile[border, 2].tolist()))
        straddled.update(tuple(d for d in range(params.ndim) if states[d, b, 0] == PARTIAL)
                         for b in np.flatnonzero(border))
    border = sum(halves.values())
    half_pairs = collections.Counter()
    for (h0, h1), count in halves.items():
        half_pairs[h0] += count
        half_pairs[h1] += count
    return dict(case=case.name, q_tile=q, kv_tile=kv, halved_dim=split, q_tiles=q_tiles, visited=visited,
                border=border, fully_masked=fully_masked,
                half_pairs={NAMES[s]: half_pairs[s] for s in NAMES},
                one_half_interior=sum(c for (h0, h1), c in halves.items() if INTERIOR in (h0, h1)),
                one_half_empty=sum(c for (h0, h1), c in halves.items() if EMPTY in (h0, h1)),
                straddled={"".join("TYX"[d + 3 - params.ndim] for d in dims): c
                           for dims, c in sorted(straddled.items())})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["causal_time_32k", "dilation2_3d_55k", "hunyuan_video_stride1",
                                                       "sliding2d_16k_d64_fp16", "small3d_8k_d64_fp16"],
                        choices=[c.name for c in CASES])
    args = parser.parse_args()
    for name in args.cases:
        r = border_report(next(c for c in CASES if c.name == name))
        v, b = r["visited"], r["border"]
        print(f"{name}: Q {r['q_tile']} / KV {r['kv_tile']}, halves along dim {r['halved_dim']}; {r['q_tiles']} Q "
              f"tiles, {v / r['q_tiles']:.2f} KV tiles each, border {b} of {v} ({b / v:.3f}), fully masked "
              f"{r['fully_masked']}")
        if b:
            pairs = " ".join(f"{k} {c} ({c / (2 * b):.3f})" for k, c in r["half_pairs"].items())
            print(f"  border (half, tile) pairs: {pairs}; tiles with a half interior {r['one_half_interior']} "
                  f"({r['one_half_interior'] / b:.3f}), with a half empty {r['one_half_empty']} "
                  f"({r['one_half_empty'] / b:.3f})")
            print("  straddled dimensions: " + ", ".join(f"{k} {c / b:.2f}" for k, c in r["straddled"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
