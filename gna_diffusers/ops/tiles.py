"""Tile arithmetic: which KV tiles each Q tile visits, and which of those need no mask.

Windows are per-dimension intervals whose start and end never decrease with the query position, so the union of a Q
tile's windows along a dimension is [start(first query), end(last query)) and the KV tiles inside every window are
those within [start(last query), end(first query)). Everything is per dimension and per dilation group; the
multi-dimensional answer is the Cartesian product. The simulator, the flex block mask and the compiled kernels all
use this, so no one ever builds a token-level mask to find the sparsity. It runs on numpy (the simulator and the CLI
stay free of torch, which takes seconds to import); `block_table` hands torch callers a tensor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .layout import TiledLayout
from .params import GNAParams
from .semantics import group_length, window_start_end

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DimTileRanges:
    """Per (dilation group, Q tile) along one dimension, KV tile index ranges [lo, hi) visited and [full_lo, full_hi)
    needing no mask. Shapes [dilation, q_tiles]; an empty range has hi <= lo."""

    lo: np.ndarray
    hi: np.ndarray
    full_lo: np.ndarray
    full_hi: np.ndarray

    @property
    def visited(self) -> np.ndarray:
        return (self.hi - self.lo).clip(min=0)

    @property
    def full(self) -> np.ndarray:
        return (self.full_hi - self.full_lo).clip(min=0)


def dim_tile_ranges(length: int, window: int, stride: int, dilation: int, causal: bool, q_tile: int, kv_tile: int,
                    q_tiles: int) -> DimTileRanges:
    groups = np.arange(dilation, dtype=np.int64)[:, None]
    glen = group_length(length, dilation, groups)                          # [d, 1]
    first = np.arange(q_tiles, dtype=np.int64)[None, :] * q_tile           # [1, nq]
    last = np.minimum(first + q_tile, glen) - 1                            # [d, nq]
    real = last >= first                                                   # tile holds at least one real query
    first = np.broadcast_to(first, last.shape)
    start_first, end_first = window_start_end(first, glen, window, stride, causal)
    start_last, end_last = window_start_end(last.clip(min=0), glen, window, stride, causal)
    lo = start_first // kv_tile
    hi = -(-end_last // kv_tile)
    full_lo = -(-start_last // kv_tile)
    full_hi = np.minimum(end_first, glen) // kv_tile
    return DimTileRanges(np.where(real, lo, 0), np.where(real, hi, 0), np.where(real, full_lo, 0),
                         np.where(real, np.maximum(full_hi, full_lo), 0))


def all_dim_tile_ranges(params: GNAParams, q_layout: TiledLayout, kv_layout: TiledLayout) -> list[DimTileRanges]:
    return [dim_tile_ranges(params.grid[i], params.window[i], params.stride[i], params.dilation[i], params.causal[i],
                            q_layout.tile[i], kv_layout.tile[i], q_layout.tiles_per_dim[i])
            for i in range(params.ndim)]


def block_table(params: GNAParams, q_layout: TiledLayout, kv_layout: TiledLayout) -> torch.Tensor:
    """[q_layout.num_tiles, kv_layout.num_tiles] int8 tensor: 0 skipped, 1 visited with a mask, 2 visited and
    unmasked.

    Tile order matches the layouts (group-major, then tile index row-major). Dilation groups never mix."""
    import torch  # only the torch backends ask for the table; the simulator never does

    k = params.ndim
    table = None
    for i, r in enumerate(all_dim_tile_ranges(params, q_layout, kv_layout)):
        kv = np.arange(kv_layout.tiles_per_dim[i])[None, None, :]
        visited = (kv >= r.lo[..., None]) & (kv < r.hi[..., None])                 # [g, n_q, n_kv]
        full = (kv >= r.full_lo[..., None]) & (kv < r.full_hi[..., None])
        state = visited.astype(np.int8) + full.astype(np.int8)                   # 0 skip, 1 masked, 2 full
        same_group = np.eye(params.dilation[i], dtype=bool)[:, None, :, None]
        dim_state = np.where(same_group, state[:, :, None, :], np.int8(0))
        # place this dimension's axes (g_q, n_q, g_kv, n_kv) among the 4k axes ordered as the layouts order tiles
        shape = [1] * (4 * k)
        shape[i], shape[k + i] = dim_state.shape[0], dim_state.shape[1]
        shape[2 * k + i], shape[3 * k + i] = dim_state.shape[2], dim_state.shape[3]
        dim_state = dim_state.reshape(shape)
        table = dim_state if table is None else np.minimum(table, dim_state)
    return torch.from_numpy(np.ascontiguousarray(table.reshape(q_layout.num_tiles, kv_layout.num_tiles)))


def tile_counts(params: GNAParams, q_layout: TiledLayout, kv_layout: TiledLayout) -> tuple[int, int]:
    """(visited tile pairs, of which unmasked): per-dimension counts multiply, so this is instant at any grid size."""
    visited, full = 1, 1
    for r in all_dim_tile_ranges(params, q_layout, kv_layout):
        visited *= int(r.visited.sum())
        full *= int(r.full.sum())
    return visited, full


@dataclass(frozen=True)
class SplitCounts:
    """Tile counts when each Q tile is halved along `dim` and each half walks a KV box of its own, as the kernel's two
    consumer warpgroups (64 rows each) could. Pairs are (half tile, KV tile); one whole-tile pair is two of them."""

    dim: int
    half_tile: tuple[int, ...]
    visited: int     # (half, KV tile) pairs over both halves of every Q tile
    masked: int      # of which need the per-element mask
    union: int       # KV tiles of the box covering both halves' boxes, summed over Q tiles: what one shared KV
                     # pipeline must still load (equals the whole tile's box count)
    row_order: bool  # the halves are rows [0, V/2) and [V/2, V) of today's in-tile order (no Q reordering needed)


def _halved_dim_counts(length: int, window: int, stride: int, dilation: int, causal: bool, q_tile: int, kv_tile: int,
                       q_tiles: int) -> tuple[int, int, int]:
    """Along one dimension whose Q tiles (side `q_tile`) are halved: (visited, unmasked) (half, KV tile) pairs, and
    the KV tiles of the box covering both halves' ranges, summed over Q tiles."""
    half = dim_tile_ranges(length, window, stride, dilation, causal, q_tile // 2, kv_tile, 2 * q_tiles)
    # the halves of Q tile k are half tiles 2k and 2k+1 (a half of padding only has an empty range)
    lo, hi = half.lo.reshape(dilation, -1, 2), half.hi.reshape(dilation, -1, 2)
    some = hi > lo
    cover_lo = np.where(some, lo, np.iinfo(np.int64).max).min(-1)
    cover_hi = np.where(some, hi, np.iinfo(np.int64).min).max(-1)
    cover = np.where(some.any(-1), cover_hi - cover_lo, 0)
    return int(half.visited.sum()), int(half.full.sum()), int(cover.sum())


def _split(q_tile: tuple[int, ...], dim: int, halved: tuple[int, int, int],
           whole: list[tuple[int, int]]) -> SplitCounts:
    """Multiply the halved dimension's counts with the other dimensions' whole-tile (visited, unmasked) counts."""
    visited, full, union = halved
    for j, (v, f) in enumerate(whole):
        if j != dim:
            visited, full, union = visited * v, full * f, union * v
    outermost = next(i for i, t in enumerate(q_tile) if t > 1)
    return SplitCounts(dim, q_tile[:dim] + (q_tile[dim] // 2,) + q_tile[dim + 1:], visited, visited - full, union,
                       dim == outermost)


def split_tile_counts(params: GNAParams, q_layout: TiledLayout, kv_layout: TiledLayout) -> list[SplitCounts]:
    """One SplitCounts per dimension whose Q tile side can be halved. Per-dimension counts multiply as in
    `tile_counts`; only the halved dimension's ranges change, so this costs one more `dim_tile_ranges` per dimension."""
    whole = [(int(r.visited.sum()), int(r.full.sum())) for r in all_dim_tile_ranges(params, q_layout, kv_layout)]
    return [_split(q_layout.tile, i, _halved_dim_counts(
                params.grid[i], params.window[i], params.stride[i], params.dilation[i], params.causal[i], side,
                kv_layout.tile[i], q_layout.tiles_per_dim[i]), whole)
            for i, side in enumerate(q_layout.tile) if side > 1]


def _q_tiles_along(params: GNAParams, i: int, q_side: int) -> int:
    """Q tiles of side `q_side` along dimension i of the longest dilation group (TiledLayout.tiles_per_dim)."""
    return -(-group_length(params.grid[i], params.dilation[i], 0) // q_side)


@functools.lru_cache(maxsize=4096)
def _whole_dim_counts(params: GNAParams, i: int, q_side: int, kv_side: int) -> tuple[int, int]:
    """Along dimension i, the (visited, unmasked) (Q tile, KV tile) pairs of Q side `q_side` and KV side `kv_side`:
    the factors whose product over the dimensions is `tile_counts`' totals, for the tile searches."""
    r = dim_tile_ranges(params.grid[i], params.window[i], params.stride[i], params.dilation[i], params.causal[i],
                        q_side, kv_side, _q_tiles_along(params, i, q_side))
    return int(r.visited.sum()), int(r.full.sum())


@functools.lru_cache(maxsize=256)
def choose_split_tiles(params: GNAParams, volume: int = 128) -> tuple[tuple[int, ...], tuple[int, ...], SplitCounts]:
    """Q and KV tile shapes (each of the given volume) and the halving with the least visited work when each half
    walks its own box; then the fewest masked pairs, the fewest KV tiles a shared pipeline loads, today's row order.
    What per-warpgroup boxes could reach at best, where `choose_tiles` picks for one box per whole tile."""
    shapes = tile_shapes(params.ndim, volume)

    @functools.lru_cache(maxsize=None)
    def halved(i: int, q_side: int, kv_side: int) -> tuple[int, int, int]:
        return _halved_dim_counts(params.grid[i], params.window[i], params.stride[i], params.dilation[i],
                                  params.causal[i], q_side, kv_side, _q_tiles_along(params, i, q_side))

    candidates = []
    for q in shapes:
        for kv in shapes:
            counts = [_whole_dim_counts(params, i, q[i], kv[i]) for i in range(params.ndim)]
            candidates += [(q, kv, _split(q, i, halved(i, q[i], kv[i]), counts))
                           for i in range(params.ndim) if q[i] > 1]
    return min(candidates, key=lambda c: (c[2].visited, c[2].masked, c[2].union, not c[2].row_order))


def tile_shapes(ndim: int, volume: int) -> list[tuple[int, ...]]:
    """All tile shapes of power-of-two sides whose product is `volume` (a power of two)."""
    if volume & (volume - 1):
        raise ValueError(f"tile volume={volume} must be a power of two")
    bits = volume.bit_length() - 1
    if ndim == 1:
        return [(volume,)]
    return [(1 << b,) + rest for b in range(bits + 1) for rest in tile_shapes(ndim - 1, volume >> b)]


@functools.lru_cache(maxsize=256)
def choose_tile(params: GNAParams, volume: int = 128) -> tuple[int, ...]:
    """The tile shape (same for Q and KV) of the given volume with the least visited work, then the fewest masked
    tiles, then the most cubic shape. Visited tiles cost a whole tile of work, padding included."""
    def cost(tile: tuple[int, ...]) -> tuple[int, int, int]:
        layout = TiledLayout.make(params.grid, tile, params.dilation)
        visited, full = tile_counts(params, layout, layout)
        return visited, visited - full, max(tile) - min(tile)

    return min(tile_shapes(params.ndim, volume), key=cost)


@functools.lru_cache(maxsize=256)
def choose_tiles(params: GNAParams, volume: int = 128) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Q and KV tile shapes (each of the given volume) with the least visited work, then the fewest masked tile
    pairs, then one shape for both, then the most cubic shapes. A KV shape of its own can follow a Q tile's box more
    tightly: FLUX-4K at stride 1 visits 33124 tile pairs with Q 8x16 and KV 16x8 instead of 34884, 14080 of them
    masked instead of 17600. Counts are per dimension (their product is the total), so all pairs cost little."""
    shapes = tile_shapes(params.ndim, volume)

    def cost(pair: tuple[tuple[int, ...], tuple[int, ...]]) -> tuple[int, int, bool, int]:
        q, kv = pair
        visited, full = 1, 1
        for i in range(params.ndim):
            v, f = _whole_dim_counts(params, i, q[i], kv[i])
            visited, full = visited * v, full * f
        return visited, visited - full, q != kv, max(q) - min(q) + max(kv) - min(kv)

    return min(((q, kv) for q in shapes for kv in shapes), key=cost)
