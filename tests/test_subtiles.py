"""Q tiles halved into two halves with KV boxes of their own (the consumer warpgroups' 64 rows each): the simulator's
counts against a token-level brute force written from GNA_SEMANTICS.md."""

import json

import pytest

from brute_force import brute_mask, token_index
from gna_diffusers import GNAParams, TiledLayout
from gna_diffusers.cli import main
from gna_diffusers.ops.simulator import simulate
from gna_diffusers.ops.tiles import choose_split_tiles, tile_shapes


def brute_halves(params: GNAParams, q_layout: TiledLayout, kv_layout: TiledLayout, dim: int) -> tuple[int, int, int]:
    """(visited, masked) (half, KV tile) pairs and KV tiles touched by either half, token by token: a half touches a
    KV tile when one of its queries attends one of the tile's keys; a touched pair needs no mask when every real query
    of the half attends every key of the tile and the tile holds no padding."""
    mask = brute_mask(params.grid, params.window, params.stride, params.dilation, params.causal)
    qi, q_real = token_index(params, q_layout)
    ki, k_real = token_index(params, kv_layout)
    nq, vq, nkv = q_layout.num_tiles, q_layout.tile_volume, kv_layout.num_tiles
    pairs = (mask[qi][:, ki] & q_real[:, None] & k_real[None, :]).reshape(nq, vq, nkv, kv_layout.tile_volume)
    q_real = q_real.reshape(nq, vq)
    touched = pairs.any(3)                                                            # [nq, vq, nkv]
    whole_tile = (pairs | ~q_real[:, :, None, None]).all(3) & k_real.reshape(nkv, -1).all(1)
    # a row's half: its position inside the tile along `dim` (the first tile's coordinates are u * dilation)
    pos = q_layout.coordinates()[:vq, dim] // params.dilation[dim]
    visited = masked = 0
    for rows in (pos < q_layout.tile[dim] // 2, pos >= q_layout.tile[dim] // 2):
        hit = touched[:, rows].any(1)
        full = whole_tile[:, rows].all(1) & q_real[:, rows].any(1)[:, None]
        visited += int(hit.sum())
        masked += int((hit & ~full).sum())
    return visited, masked, int(touched.any(1).sum())


CONFIGS = [  # grid, window, stride, dilation, causal, q tile, kv tile: padding, odd windows, Q and KV shapes apart
    ((37,), 9, 1, 1, False, (8,), (4,)),
    ((30,), 7, 1, 1, True, (8,), (8,)),
    ((31,), 5, 1, 3, False, (4,), (2,)),
    ((13, 11), (5, 4), 1, 1, False, (4, 4), (2, 8)),
    ((12, 14), (3, 5), 1, (2, 1), (False, True), (2, 8), (4, 4)),
    ((14, 12), (6, 5), (2, 1), 1, False, (8, 2), (4, 4)),
    ((6, 7, 8), (3, 4, 5), 1, 1, False, (2, 4, 2), (2, 2, 4)),
    ((7, 6, 9), (3, 2, 4), 1, (1, 2, 1), (True, False, False), (4, 2, 2), (2, 2, 4)),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "x".join(map(str, c[0])))
def test_halves_match_token_level_brute_force(config) -> None:
    grid, window, stride, dilation, causal, q_tile, kv_tile = config
    sim = simulate(grid, window, stride, dilation, causal, q_tile, kv_tile, subtiles=True)
    p = sim.params
    q_layout = TiledLayout.make(grid, q_tile, p.dilation)
    kv_layout = TiledLayout.make(grid, kv_tile, p.dilation)
    assert [s.dim for s in sim.splits] == [i for i, t in enumerate(q_tile) if t > 1]
    for s in sim.splits:
        visited, masked, union = brute_halves(p, q_layout, kv_layout, s.dim)
        assert (s.visited, s.masked, s.union) == (visited, masked, union), s
        assert s.union == sim.visited_tiles  # one shared pipeline still walks today's box
        assert s.half_tile[s.dim] * 2 == q_tile[s.dim]
        assert s.row_order == all(t == 1 for t in q_tile[:s.dim])


def test_halving_cuts_a_sliding_window() -> None:
    """A 1D stride-1 window of 9, Q tiles of 8, KV tiles of 4: away from the borders a whole tile's queries see 16
    keys (4 KV tiles), each half's 12 (3 KV tiles), so the halves visit 6 KV tiles where two whole boxes are 8."""
    sim = simulate((64,), 9, 1, q_tile=8, kv_tile=4, subtiles=True)
    (half,) = sim.splits
    assert half.visited < 2 * sim.visited_tiles and sim.split_cut(half) > 0
    assert sim.split_bound(half) > sim.tile_bound


def test_choose_split_tiles_is_the_exhaustive_best() -> None:
    grid, window, causal = (24, 20, 12), (7, 5, 6), (False, False, True)
    params = GNAParams.make(grid, window, 1, 1, causal)
    q, kv, best = choose_split_tiles(params, 32)
    every = [s for q2 in tile_shapes(3, 32) for kv2 in tile_shapes(3, 32)
             for s in simulate(grid, window, 1, 1, causal, q2, kv2, subtiles=True).splits]
    assert best.visited == min(s.visited for s in every)
    again = simulate(grid, window, 1, 1, causal, q, kv, subtiles=True)
    assert best in again.splits


def test_cli_subtiles_columns_and_json(capsys) -> None:
    assert main(["simulate", "--grid", "30x48x80", "--window", "18x24x24", "--q-tile", "8x4x4", "--kv-tile", "4x8x4",
                 "--subtiles"]) == 0
    out = capsys.readouterr().out
    assert "half_visited" in out and "(halves retiled)" in out and "shares one KV pipeline" in out
    assert main(["simulate", "--grid", "30x48x80", "--window", "18x24x24", "--q-tile", "8x4x4", "--kv-tile", "4x8x4",
                 "--subtiles", "--json"]) == 0
    given = json.loads(capsys.readouterr().out)[0]
    assert [s["dim"] for s in given["subtiles"]] == [0, 1, 2]
    assert all(s["union_kv_tiles"] == given["visited_tiles"] for s in given["subtiles"])
