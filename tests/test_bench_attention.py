"""scripts/bench_attention.py on the CPU: its cases are valid, and the tile bound it divides by (`tile_sol`) counts the
tile pairs the kernel's own tiles visit under causal and dilated neighborhoods, checked against token-level brute
force (a bound that ignored causal or dilation would make tile_sol look better or worse than the kernel is)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import pytest

from brute_force import token_level_tiles
from gna_diffusers.backends import cutlass

_SPEC = importlib.util.spec_from_file_location(
    "bench_attention", Path(__file__).resolve().parents[1] / "scripts" / "bench_attention.py")
bench = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_attention"] = bench  # dataclasses look their module up there
_SPEC.loader.exec_module(bench)


def test_cases_are_valid_and_run_on_the_kernel() -> None:
    names = [case.name for case in bench.CASES]
    assert len(names) == len(set(names))
    for case in bench.CASES:
        case.params  # raises on an invalid configuration
        assert case.dtype in (None, *cutlass.SUPPORTED_DTYPES.values()), case.name
        assert case.head_dim in (None, *cutlass.SUPPORTED_HEAD_DIMS), case.name


@pytest.mark.parametrize("case", [
    bench.Case("causal", (6, 8, 8), (3, 4, 4), (1, 2, 2), 2, causal=(True, False, True)),
    bench.Case("dilated", (6, 8, 8), (3, 4, 3), (1, 1, 1), 2, dilation=2),
], ids=lambda case: case.name)
def test_tile_bound_counts_the_kernels_tiles(case) -> None:
    bound, sim = bench.case_tile_bound(case, "cutlass")
    plan = cutlass._plan(case.params)
    assert (sim.q_tile, sim.kv_tile) == (plan.q_layout.tile, plan.kv_layout.tile)
    attended, _ = token_level_tiles(case.params, plan.q_layout, plan.kv_layout)
    dense = math.ceil(case.params.tokens / cutlass.TILE_VOLUME) ** 2
    expected = dense / int(attended.sum())
    assert bound == pytest.approx(expected, rel=1e-12)
    # the case is one where dropping causal/dilation changes the bound, so the check above can tell
    plain, _ = bench.case_tile_bound(dataclasses.replace(case, causal=False, dilation=1), "cutlass")
    assert plain != pytest.approx(expected)


def test_spread_takes_each_case_and_backend_apart() -> None:
    """The bar is the lowest of several runs: the spread must not mix cases or backends, and must take the whole
    call's tile SOL from the call's own time."""
    def row(case: str, backend: str, sol: float, call_sol: float) -> dict:
        return {"case": case, "backend": backend, "sol_fraction": sol, "tile_sol": sol * 2,
                "tile_sol_call": call_sol, "kernel_ms": 1.0, "dense_ms": 2.0}
    rows = [row("a", "cutlass", 0.9, 0.7), row("a", "cutlass", 0.8, 0.9), row("a", "cutlass", 0.95, 0.8),
            row("a", "flex", 0.1, 0.1), row("b", "cutlass", 0.5, 0.4)]
    spread = {(r["case"], r["backend"]): r for r in bench.spread_rows(rows)}
    assert set(spread) == {("a", "cutlass"), ("a", "flex"), ("b", "cutlass")}
    a = spread["a", "cutlass"]
    assert (a["runs"], a["sol_min"], a["sol_median"], a["sol_max"]) == (3, 0.8, 0.9, 0.95)
    assert (a["tile_sol_min"], a["tile_sol_call_min"]) == (1.6, 0.7)
