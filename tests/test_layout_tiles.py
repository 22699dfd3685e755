"""Tiled layout round trips, and the tile arithmetic against token-level brute-force masks."""

import math
import random

import pytest
import torch

from brute_force import brute_mask, token_level_tiles
from gna_diffusers import GNAParams, TiledLayout
from gna_diffusers.ops.simulator import simulate, suggest
from gna_diffusers.ops.tiles import block_table


def random_layout(rng: random.Random) -> TiledLayout:
    ndim = rng.randint(1, 3)
    grid = [rng.randint(1, 9) for _ in range(ndim)]
    return TiledLayout.make(grid, [rng.randint(1, 5) for _ in grid], [rng.randint(1, 3) for _ in grid])


@pytest.mark.parametrize("seed", range(30))
def test_layout_round_trip_and_coordinates(seed: int) -> None:
    rng = random.Random(seed)
    layout = random_layout(rng)
    x = torch.randn(2, layout.tokens, 3, 4)
    tiled = layout.to_tiled(x)
    assert tiled.shape == (2, layout.tiled_tokens, 3, 4)
    assert torch.equal(layout.from_tiled(tiled), x)
    coords, valid = layout.coordinates(), layout.valid()
    assert int(valid.sum()) == layout.tokens
    flat = torch.zeros(len(coords), dtype=torch.long)
    for i, length in enumerate(layout.grid):
        flat = flat * length + coords[:, i].clamp(max=length - 1)
    assert torch.equal(tiled[:, valid], x[:, flat[valid]])
    assert (tiled[:, ~valid] == 0).all()
    # every tile is a contiguous run: coordinates of one tile differ only inside the tile box
    per_tile = coords.reshape(layout.num_tiles, layout.tile_volume, -1)
    span = per_tile.max(1).values - per_tile.min(1).values
    assert (span <= torch.tensor([(t - 1) * d for t, d in zip(layout.tile, layout.dilation)])).all()


def test_layout_rejects_wrong_token_count() -> None:
    layout = TiledLayout.make((4, 4), (2, 2))
    with pytest.raises(ValueError, match="tokens"):
        layout.to_tiled(torch.randn(1, 15, 1, 1))
    with pytest.raises(ValueError, match="tile"):
        TiledLayout.make((4, 4), (0, 2))


@pytest.mark.parametrize("seed", range(60))
def test_block_table_covers_and_full_tiles_are_exact(seed: int) -> None:
    rng = random.Random(seed)
    ndim = rng.randint(1, 3)
    grid = [rng.randint(3, 9) for _ in range(ndim)]
    dilation = [rng.choice([1, 1, 2]) if length >= 4 else 1 for length in grid]
    window = [rng.randint(2, length // d) for length, d in zip(grid, dilation)]
    params = GNAParams.make(grid, window, [rng.randint(1, w) for w in window], dilation,
                            [rng.random() < 0.3 for _ in grid])
    q_layout = TiledLayout.make(grid, [rng.randint(1, 4) for _ in grid], dilation)
    kv_layout = TiledLayout.make(grid, [rng.randint(1, 4) for _ in grid], dilation)
    table = block_table(params, q_layout, kv_layout)
    any_pair, all_pairs = token_level_tiles(params, q_layout, kv_layout)
    assert not (any_pair & (table == 0)).any(), "an attended pair lies in a skipped tile"
    assert not ((table == 2) & ~all_pairs).any(), "a tile marked unmasked is not fully attended"
    sim = simulate(grid, window, params.stride, dilation, params.causal, q_layout.tile, kv_layout.tile)
    assert sim.visited_tiles == int((table > 0).sum())
    assert sim.masked_tiles == int((table == 1).sum())
    assert sim.density == pytest.approx(brute_mask(grid, window, params.stride, dilation,
                                                   params.causal).double().mean().item(), rel=1e-12)


def test_worked_examples() -> None:
    flux = simulate((256, 256), (80, 80), (16, 16), q_tile=(16, 8), kv_tile=(16, 8))
    assert flux.fully_block_sparse and flux.tile_bound == pytest.approx(10.24)
    assert flux.density == pytest.approx(0.0977, abs=5e-4)
    hunyuan = simulate((30, 48, 80), (18, 24, 24), (16, 8, 8), q_tile=(2, 8, 8), kv_tile=(2, 8, 8))
    assert hunyuan.fully_block_sparse and hunyuan.tile_bound == pytest.approx(100 / 9)
    assert hunyuan.density == pytest.approx(0.09)
    assert not simulate((30, 48, 80), (18, 24, 24), 1, q_tile=(2, 8, 8), kv_tile=(2, 8, 8)).fully_block_sparse
    assert simulate((30, 48, 80), (18, 24, 24), (16, 8, 8)).fully_block_sparse      # default tile choice


def test_fully_block_sparse_visits_only_attended_tiles() -> None:
    params = GNAParams.make((16, 12), (8, 4), (8, 4))  # blocked: stride == window
    layout = TiledLayout.make((16, 12), (4, 4))
    table = block_table(params, layout, layout)
    any_pair, _ = token_level_tiles(params, layout, layout)
    assert (table != 1).all()
    assert torch.equal(table > 0, any_pair)


def test_suggestions_are_fully_block_sparse() -> None:
    results = suggest((30, 48, 80), (18, 24, 24))
    assert results and results[0].fully_block_sparse
    best = results[0]
    again = simulate((30, 48, 80), (18, 24, 24), best.params.stride, q_tile=best.q_tile, kv_tile=best.kv_tile)
    assert again.masked_tiles == 0
    assert math.prod(best.q_tile) == 128


def test_simulator_is_instant_on_a_million_tokens() -> None:
    r = simulate((64, 128, 128), (16, 32, 32), (8, 16, 16))
    assert r.tokens == 64 * 128 * 128 and r.visited_tiles > 0


def test_cutlass_schedule_follows_masked_tiles(monkeypatch) -> None:
    """Persistent CTAs exactly when no visited tile pair needs the mask (block_table, checked against the brute force
    above, is the independent count)."""
    from gna_diffusers.backends import cutlass
    blocked = GNAParams.make((30, 48, 80), (18, 24, 24), (16, 8, 8))
    stride1 = GNAParams.make((30, 48, 80), (18, 24, 24), 1)
    dense = GNAParams.make((64, 64), (64, 64))
    padded = GNAParams.make((60, 60), (60, 60))
    monkeypatch.setattr(cutlass, "SCHEDULE", None)
    for params in (blocked, stride1, dense, padded):
        plan = cutlass._plan(params)
        table = block_table(params, plan.q_layout, plan.kv_layout)
        expected = "persistent" if not (table == 1).any() else "single"
        assert cutlass.schedule_for(params) == expected
    assert [cutlass.schedule_for(p) for p in (blocked, stride1, dense)] == ["persistent", "single", "persistent"]
    monkeypatch.setattr(cutlass, "SCHEDULE", "single")
    assert cutlass.schedule_for(blocked) == "single"
