"""Speed-of-light simulator: how much work a GNA configuration leaves, and whether tiles make that work free of masks.

Everything factorises per dimension (ops/tiles.py), so a million-token grid takes milliseconds and no GPU: users pick
window, stride and tile shapes here before they run anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .layout import TiledLayout
from .params import BoolOrTuple, GNAParams, IntOrTuple
from .semantics import dim_windows
from .tiles import SplitCounts, choose_tile, split_tile_counts, tile_counts, tile_shapes

DEFAULT_TILE_VOLUME = 128


@dataclass(frozen=True)
class SimResult:
    params: GNAParams
    q_tile: tuple[int, ...]
    kv_tile: tuple[int, ...]
    density: float           # attended (query, grid key) pairs / tokens^2
    flop_bound: float        # dense work / window work
    dense_tiles: int         # ceil(N / q tile volume) * ceil(N / kv tile volume)
    visited_tiles: int       # (Q tile, KV tile) pairs the kernel computes
    masked_tiles: int        # visited pairs that need the fine-grained mask
    q_tiles: int
    kv_tiles: int
    splits: tuple[SplitCounts, ...] = ()  # per halvable dimension, with simulate(subtiles=True)

    @property
    def best_split(self) -> Optional[SplitCounts]:
        """The halving with the least visited work, then the fewest masked pairs, then today's row order."""
        return min(self.splits, key=lambda s: (s.visited, s.masked, not s.row_order), default=None)

    def split_bound(self, split: SplitCounts) -> float:
        """Tile bound with per-half boxes: dense work counted as today (one whole pair = two half pairs)."""
        return 2 * self.dense_tiles / split.visited

    def split_cut(self, split: SplitCounts) -> float:
        """Fraction of today's visited work (tensor-core time at full tiles) that per-half boxes leave out."""
        return 1 - split.visited / (2 * self.visited_tiles)

    @property
    def tile_bound(self) -> float:
        """Speedup bound from tile counts: dense tiles / visited tiles."""
        return self.dense_tiles / self.visited_tiles

    @property
    def fully_block_sparse(self) -> bool:
        return self.masked_tiles == 0

    @property
    def tokens(self) -> int:
        return self.params.tokens

    @property
    def window_tokens(self) -> float:
        """Average number of grid keys a query attends."""
        return self.density * self.tokens

    def as_dict(self) -> dict:
        p = self.params
        return {"grid": list(p.grid), "window": list(p.window), "stride": list(p.stride),
                "dilation": list(p.dilation), "causal": list(p.causal), "q_tile": list(self.q_tile),
                "kv_tile": list(self.kv_tile), "tokens": self.tokens, "density": self.density,
                "flop_bound": self.flop_bound, "tile_bound": self.tile_bound, "dense_tiles": self.dense_tiles,
                "visited_tiles": self.visited_tiles, "masked_tiles": self.masked_tiles,
                "fully_block_sparse": self.fully_block_sparse,
                **({"subtiles": [{"dim": t.dim, "half_tile": list(t.half_tile), "visited_half_pairs": t.visited,
                                  "masked_half_pairs": t.masked, "union_kv_tiles": t.union,
                                  "row_order": t.row_order, "tile_bound": self.split_bound(t),
                                  "visited_cut": self.split_cut(t)} for t in self.splits]} if self.splits else {})}


def exact_density(params: GNAParams) -> float:
    """Mean attended fraction, exact: per dimension the mean window length over the axis, multiplied."""
    density = 1.0
    for i, length in enumerate(params.grid):
        w = dim_windows(np.arange(length, dtype=np.int64), length, params.window[i], params.stride[i],
                        params.dilation[i], params.causal[i])
        density *= float((w.end - w.start).mean()) / length
    return density


def simulate(grid, window: IntOrTuple, stride: IntOrTuple = 1, dilation: IntOrTuple = 1, causal: BoolOrTuple = False,
             q_tile: Optional[IntOrTuple] = None, kv_tile: Optional[IntOrTuple] = None,
             subtiles: bool = False) -> SimResult:
    """Work and tile counts of one configuration. Without tiles, the 128-token tile with the least work is used.
    `subtiles` adds the counts of Q tiles halved (per dimension) into two halves with KV boxes of their own."""
    params = GNAParams.make(grid, window, stride, dilation, causal)
    if q_tile is None and kv_tile is None:
        q_tile = kv_tile = choose_tile(params, DEFAULT_TILE_VOLUME)
    elif q_tile is None or kv_tile is None:
        q_tile = kv_tile = q_tile if q_tile is not None else kv_tile
    q_layout = TiledLayout.make(params.grid, q_tile, params.dilation)
    kv_layout = TiledLayout.make(params.grid, kv_tile, params.dilation)
    visited, full = tile_counts(params, q_layout, kv_layout)
    density = exact_density(params)
    n = params.tokens
    return SimResult(params, q_layout.tile, kv_layout.tile, density, 1.0 / density,
                     -(-n // q_layout.tile_volume) * -(-n // kv_layout.tile_volume), visited, visited - full,
                     q_layout.num_tiles, kv_layout.num_tiles,
                     tuple(split_tile_counts(params, q_layout, kv_layout)) if subtiles else ())


def suggest(grid, window: IntOrTuple, dilation: IntOrTuple = 1, causal: BoolOrTuple = False,
            tile_volume: int = DEFAULT_TILE_VOLUME, limit: int = 5) -> list[SimResult]:
    """For a window: per tile shape of `tile_volume` tokens, the smallest per-dimension strides that leave no masked
    tile along that dimension. Fully block-sparse results first, then by tile bound, then smaller strides."""
    params = GNAParams.make(grid, window, 1, dilation, causal)
    ndim = params.ndim
    results = []
    for tile in tile_shapes(ndim, tile_volume):
        strides = []
        for i in range(ndim):
            found = None
            for s in range(1, params.window[i] + 1):
                one = GNAParams.make((params.grid[i],), params.window[i], s, params.dilation[i], params.causal[i])
                layout = TiledLayout.make(one.grid, tile[i], one.dilation)
                visited, full = tile_counts(one, layout, layout)
                if visited == full:
                    found = s
                    break
            strides.append(found)
        if None in strides:
            continue
        results.append(simulate(params.grid, params.window, tuple(strides), params.dilation, params.causal,
                                tile, tile))
    results.sort(key=lambda r: (not r.fully_block_sparse, -r.tile_bound, sum(r.params.stride)))
    return results[:limit]

