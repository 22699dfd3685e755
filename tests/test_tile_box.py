"""The compiled kernels' tile logic (kernels/gna_tile_box.hpp, gna_token_view.hpp, gna_row_mask.hpp,
gna_tile_schedule.hpp), built with the host C++ compiler and checked on the CPU against the brute-force
neighborhood of GNA_SEMANTICS.md on random problems.

For every Q tile: each KV tile is visited once; every tile holding a neighbor of one of its real queries is visited;
the tiles visited first without a mask (the interior) hold only real keys that are neighbors of all its real queries;
in the model's token order, each row of the tile maps to the right token (or to none past the grid's end), and the
TMA boxes the kernel loads Q and K/V tiles with (strided with dilation: a dilation group is a strided sub-grid) hold
exactly the tiled layout's tokens of that tile, with the backend's rule for when such boxes fit TMA agreeing with
the kernel's; and the
key mask the kernels build for a border KV tile (KeyMask's per-thread sets on Hopper, row_keys' whole rows on
Blackwell, any tile shape) is exactly each row's real neighbors. The kernels' split of the work tiles over CTAs (one
per CTA, or persistent CTAs of either architecture) runs every tile once, in L2-friendly order.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from brute_force import neighbor_1d
from gna_diffusers.backends import cutlass
from gna_diffusers.ops.inputs import make_inputs

ROOT = Path(__file__).resolve().parents[1]
COMPILER = shutil.which("g++") or shutil.which("c++")


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    if COMPILER is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path_factory.mktemp("tile_box") / "driver"
    subprocess.run([COMPILER, "-std=c++17", "-O1", "-Wall", "-Werror", f"-I{ROOT / 'kernels'}",
                    str(ROOT / "tests" / "tile_box_driver.cpp"), "-o", str(exe)], check=True)
    return exe


def test_fast_divisor_matches_integer_division(driver):
    """The kernels' multiply-and-shift division is exact over every dividend the tile arithmetic can hold."""
    result = subprocess.run([str(driver), "--divisors"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout[-500:]


def test_reference_max_moves_only_past_the_threshold(driver):
    """The online softmax's rule for its reference max, as both kernels compile it: a row's first key always moves it,
    a row without keys never does, and otherwise it moves exactly when the running max has risen past it by more than
    8 in log2 units of the scaled scores, so every probability taken against it stays below 2^8."""
    rng = random.Random(7)
    inf = float("inf")
    cases = [(-inf, -inf, 0.09), (-inf, -3.0, 0.09), (-inf, 250.0, 1.0), (2.0, 2.0, 0.5)]
    for _ in range(400):
        reference = rng.uniform(-50, 50)
        scale = rng.choice([0.01, 0.0885, 0.125, 1.0, 3.0])
        rise = rng.choice([rng.uniform(0, 8 / scale * 0.999), rng.uniform(8 / scale * 1.001, 30 / scale)])
        cases.append((reference, reference + rise, scale))
    text = "".join(f"{r!r} {m!r} {s!r}\n" for r, m, s in cases)
    result = subprocess.run([str(driver), "--reference-moves"], input=text, capture_output=True, text=True,
                            check=True, timeout=60)
    got = [int(v) for v in result.stdout.split()]
    assert len(got) == len(cases)
    for (reference, running, scale), moved in zip(cases, got):
        if running == -inf:
            expected = 0
        elif reference == -inf:
            expected = 1
        else:
            expected = int((running - reference) * scale > 8)
        assert moved == expected, f"reference {reference}, running max {running}, scale {scale}: moved {moved}"


def test_first_keys_cut_a_partial_extra_tile(driver):
    """The key sets of the extra (text) tokens' partial last tile: a row sees exactly the tile's first `keys` keys."""
    result = subprocess.run([str(driver), "--first-keys"], capture_output=True, text=True, check=True, timeout=60)
    lines = result.stdout.splitlines()
    assert len(lines) == 128
    for line in lines:
        keys, *words = (int(v) for v in line.split())
        seen = [(words[c // 32] >> (c % 32)) & 1 for c in range(128)]
        assert seen == [1] * keys + [0] * (128 - keys), f"keys={keys}: wrong key set"


@pytest.mark.parametrize("q_tiles, heads, batch", [(1, 1, 1), (7, 3, 2), (37, 24, 1), (5, 1, 9), (300, 40, 2)])
@pytest.mark.parametrize("persistent, max_ctas", [(False, 0), (True, 1), (True, 5), (True, 132), (True, 148),
                                                  (True, 100000)])
def test_tile_schedule_runs_every_work_tile_once(driver, q_tiles, heads, batch, persistent, max_ctas):
    """The kernels' work split (gna_tile_schedule.hpp): one tile per CTA, or min(tiles, max_ctas) CTAs, CTA c walking
    tiles c, c + ctas, ... (Q tile fastest, then head, then batch), so every (Q tile, head, batch) runs on exactly one
    CTA; each CTA's count is the tiles it then walks."""
    result = subprocess.run([str(driver), "--schedule", str(q_tiles), str(heads), str(batch), str(int(persistent)),
                             str(max_ctas)], capture_output=True, text=True, check=True, timeout=60)
    tiles = q_tiles * heads * batch
    ctas = min(tiles, max_ctas) if persistent else tiles
    lines = result.stdout.splitlines()
    assert len(lines) == ctas
    for cta, line in enumerate(lines):
        head, _, body = line.partition(":")
        assert head.split() == ["cta", str(cta), str(len(range(cta, tiles, ctas)))]
        coords = [tuple(int(v) for v in field.split(",")) for field in body.split()]
        assert coords == [(t % q_tiles, t // q_tiles % heads, t // (q_tiles * heads)) for t in range(cta, tiles, ctas)]


def _random_problem(rng: random.Random) -> dict:
    ndim = rng.choice([1, 2, 3])
    limits = {1: (2, 400), 2: (2, 30), 3: (2, 14)}[ndim]
    grid, window, stride, dilation, causal = [], [], [], [], []
    for _ in range(ndim):
        length = rng.randint(*limits)
        d = min(rng.choice([1, 1, 1, 2, 3]), length // 2)   # at least 2 positions per dilation group
        w = rng.randint(2, length // d)                       # GNA windows have at least 2 positions
        s = rng.choice([1, w, rng.randint(1, w)])
        grid.append(length)
        window.append(w)
        stride.append(s)
        dilation.append(d)
        causal.append(rng.random() < 0.25)
    return dict(grid=tuple(grid), window=tuple(window), stride=tuple(stride), dilation=tuple(dilation),
                causal=tuple(causal))


PROBLEMS = [  # the shipped recipes' shapes, scaled down, plus random ones
    dict(grid=(12, 24, 40), window=(10, 12, 12), stride=(8, 4, 4), dilation=(1, 1, 1), causal=(False,) * 3),
    dict(grid=(64, 64), window=(20, 20), stride=(4, 4), dilation=(1, 1), causal=(False, False)),
    dict(grid=(8, 22, 40), window=(4, 12, 12), stride=(4, 4, 4), dilation=(1, 1, 1), causal=(False,) * 3),
    dict(grid=(10, 24, 20), window=(6, 12, 12), stride=(1, 1, 1), dilation=(1, 1, 1), causal=(False,) * 3),
    # Q and KV tiles of different shapes, in the model's order and in the tiled layout
    dict(grid=(16, 24, 40), window=(9, 12, 12), stride=(1, 1, 1), dilation=(1, 1, 1), causal=(False,) * 3),
    dict(grid=(64, 64), window=(16, 16), stride=(1, 1), dilation=(2, 2), causal=(False, False)),
    # dilation read in place: lengths not divisible by the dilation (groups of unequal length), causal with dilation,
    # 1D tiles of 128 whose strided box spans 256 positions (fits TMA) or 384 (does not)
    dict(grid=(9, 21, 35), window=(3, 5, 7), stride=(1, 2, 3), dilation=(2, 3, 2), causal=(True, False, False)),
    dict(grid=(300,), window=(40,), stride=(8,), dilation=(2,), causal=(False,)),
    dict(grid=(400,), window=(40,), stride=(8,), dilation=(3,), causal=(True,)),
    # windows narrower than the KV tiles (one edge tile holds a row's whole window: RowEdges first == last), and a
    # causal border along a Q tile side longer than 1
    dict(grid=(40, 64), window=(3, 5), stride=(1, 1), dilation=(1, 1), causal=(False, False)),
    dict(grid=(24, 56), window=(20, 3), stride=(1, 1), dilation=(1, 1), causal=(True, False)),
] + [_random_problem(random.Random(seed)) for seed in range(50)]


def _run_driver(driver: Path, flat: tuple[int, ...]) -> list[str]:
    text = " ".join(str(v) for v in flat) + "\n"
    result = subprocess.run([str(driver)], input=text, capture_output=True, text=True, check=True, timeout=60)
    return result.stdout.splitlines()


@pytest.mark.parametrize("problem", PROBLEMS, ids=[str(i) for i in range(len(PROBLEMS))])
def test_tile_visits_match_brute_force(driver, problem):
    x = torch.zeros(1, int(torch.tensor(problem["grid"]).prod()), 1, 64)
    params = make_inputs(x, x, x, **problem).params
    plan = cutlass._plan(params)
    layout, kv_layout = plan.q_layout, plan.kv_layout
    # the model's order for every problem: its arithmetic is checked also where the backend would gather instead
    lines = _run_driver(driver, plan.flat)
    boxes = [int(v) for v in lines.pop(0).split()[1:]]
    q_spans, q_steps, kv_spans, kv_steps, fits = boxes[0:3], boxes[3:6], boxes[6:9], boxes[9:12], boxes[12]
    assert fits == cutlass.strided_boxes_fit(plan, problem["dilation"]), "backend and kernel disagree on TMA limits"

    def tokens(tiled) -> torch.Tensor:  # tiled position -> row-major token (-1 for padding)
        coords = tiled.coordinates()
        result = torch.zeros(len(coords), dtype=torch.int64)
        for i, length in enumerate(problem["grid"]):
            result = result * length + coords[:, i].clamp(max=length - 1)
        return torch.where(tiled.valid(), result, torch.full_like(result, -1))

    token, kv_token = tokens(layout), tokens(kv_layout)
    # neighbor(q, k) = every dimension's 1D neighbor relation (the semantics doc's definition), by brute force per axis
    axes = [torch.tensor([[neighbor_1d(q, k, length, w, s, d, c) for k in range(length)] for q in range(length)])
            for length, w, s, d, c in zip(*(problem[key] for key in ("grid", "window", "stride", "dilation",
                                                                       "causal")))]
    grid_coords = torch.stack(torch.meshgrid(*[torch.arange(n) for n in problem["grid"]], indexing="ij"), -1)
    grid_coords = grid_coords.reshape(-1, len(problem["grid"]))

    def neighbors(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        result = torch.ones(len(queries), len(keys), dtype=torch.bool)
        for i, axis in enumerate(axes):
            result &= axis[grid_coords[queries, i]][:, grid_coords[keys, i]]
        return result

    records: dict[int, dict] = {}  # per Q tile: its visit line, tokens line and masks
    for line in lines:
        if line.startswith("tokens"):
            records[len(records) - 1]["tokens"] = [int(v) for v in line.split()[1:]]
        elif line.startswith("kvorigin") or line.startswith("qorigin"):
            fields = [int(v) for v in line.split()[1:]]
            records[len(records) - 1][line.split()[0]][fields[0]] = fields[1:]
        elif line.startswith("mask") or line.startswith("rowmask"):
            fields = [int(v) for v in line.split()[1:]]
            records[len(records) - 1]["masks"].setdefault(fields[0], []).append(fields[1:])
        else:
            records[len(records)] = {"visit": [int(v) for v in line.split()], "masks": {}, "kvorigin": {},
                                     "qorigin": {}}
    assert len(records) == layout.num_tiles
    masks_checked = 0
    for t in range(layout.num_tiles):
        fields = records[t]["visit"]
        count, interior, visited = fields[0], fields[1], fields[2:]
        assert len(visited) == count >= 1 and 0 <= interior <= count
        assert len(set(visited)) == count, f"tile {t} visits a KV tile twice: {visited}"
        assert all(0 <= u < kv_layout.num_tiles for u in visited)
        rows = token[t * 128:(t + 1) * 128]
        queries = rows[rows >= 0]
        mapped = torch.tensor(records[t]["tokens"])
        assert torch.equal(mapped, rows), f"tile {t}: rows map to the wrong tokens"
        if len(queries) == 0:
            continue
        needed = set()
        for u in range(kv_layout.num_tiles):
            keys = kv_token[u * 128:(u + 1) * 128]
            keys = keys[keys >= 0]
            if len(keys) and neighbors(queries, keys).any():
                needed.add(u)
        assert needed <= set(visited), f"tile {t} misses KV tiles {sorted(needed - set(visited))}"
        for u in visited[:interior]:
            keys = kv_token[u * 128:(u + 1) * 128]
            assert (keys >= 0).all(), f"tile {t}: interior KV tile {u} holds padding"
            assert neighbors(queries, keys).all(), f"tile {t}: interior KV tile {u} is not fully inside the windows"
        # the kernel's mask of each border KV tile: exactly the real neighbors of every real query row
        for u, both in records[t]["masks"].items():
            assert u in visited[interior:], f"tile {t}: mask printed for a KV tile that is not a border tile"
            assert len(both) == 2, f"tile {t}: KV tile {u} needs its Hopper (mask) and Blackwell (rowmask) lines"
            keys = kv_token[u * 128:(u + 1) * 128]
            real = rows >= 0
            want = neighbors(rows[real], keys.clamp(min=0)) & (keys >= 0)
            for kind, words in zip(("KeyMask::tile_keys from RowEdges", "row_keys"), both):
                got = torch.tensor([[(words[4 * r + c // 32] >> (c % 32)) & 1 for c in range(128)]
                                    for r in range(128)], dtype=torch.bool)
                assert torch.equal(got[real], want), f"tile {t}: wrong {kind} mask for KV tile {u}"
            masks_checked += 1
    # in the model's order, the load box at each printed origin holds exactly the layout's tile (K/V) or warpgroup
    # half (Q, also where the output is stored), as TMA reads a box: per dimension ceil(span / step) positions `step`
    # apart, row-major into shared memory, positions past the grid's end as zeros
    padded_grid = (1,) * (3 - len(problem["grid"])) + tuple(problem["grid"])

    def box_tokens(origin: list[int], spans: list[int], steps: list[int]) -> torch.Tensor:
        axes = [o + step * torch.arange(-(-span // step)) for o, span, step in zip(origin, spans, steps)]
        pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        inside = (pos < torch.tensor(padded_grid)).all(dim=1)
        flat = (pos[:, 0] * padded_grid[1] + pos[:, 1]) * padded_grid[2] + pos[:, 2]
        return torch.where(inside, flat, torch.full_like(flat, -1))

    origins_checked = 0
    for t, record in records.items():
        for u, origin in record["kvorigin"].items():
            assert torch.equal(box_tokens(origin, kv_spans, kv_steps), kv_token[u * 128:(u + 1) * 128]), \
                f"tile {t}: K/V box of tile {u} misplaced"
            origins_checked += 1
        for wg, origin in record["qorigin"].items():
            assert torch.equal(box_tokens(origin, q_spans, q_steps), token[t * 128 + wg * 64:t * 128 + wg * 64 + 64]), \
                f"tile {t}: Q box of warpgroup {wg} misplaced"
            origins_checked += 1
    assert origins_checked > 0
    assert masks_checked > 0 or all(records[t]["visit"][1] == records[t]["visit"][0]
                                    for t in (0, layout.num_tiles // 2, layout.num_tiles - 1))


def test_dilated_problems_run_in_place_where_the_boxes_fit(monkeypatch):
    """The backend's token order: the model's own for dilation 1; for dilation on the Hopper kernel where the strided
    boxes fit TMA, unless DILATION_GATHER; the tiled layout (a gather in and out) otherwise and on sm100a."""
    def params(grid, window, dilation):
        x = torch.zeros(1, math.prod(grid), 1, 64)
        return make_inputs(x, x, x, grid=grid, window=window, dilation=dilation).params

    monkeypatch.setattr(cutlass, "DILATION_GATHER", False)
    dilated = params((24, 48, 48), (8, 16, 16), 2)   # bench case dilation2_3d_55k
    too_wide = params((999,), (100,), 3)             # 1D tiles of 128: a box of 384 positions
    plain = params((24, 48, 48), (8, 16, 16), 1)
    assert cutlass._natural(dilated, "sm90a") and not cutlass._natural(dilated, "sm100a")
    assert not cutlass._natural(too_wide, "sm90a")
    assert cutlass._natural(plain, "sm90a") and cutlass._natural(plain, "sm100a")
    monkeypatch.setattr(cutlass, "DILATION_GATHER", True)
    assert not cutlass._natural(dilated, "sm90a") and cutlass._natural(plain, "sm90a")
