"""GPU timing that no library offers, for the benchmark scripts (elsewhere, torch.utils.benchmark or
triton.testing.do_bench time things): a fixed count of calls, and interleaved timing after a fixed load."""

from __future__ import annotations

import datetime
import statistics
from typing import Callable

import torch


def cuda_time_ms(fn: Callable[[], object], warmup: int = 3, reps: int = 20, max_seconds: float = 20.0) -> float:
    """Median milliseconds of `fn()` on the current CUDA stream; fewer reps if one run is slow.

    Why not a library: a distributed forward (scripts/bench_parallel.py) must run the same number of calls on every
    rank, since its all-to-alls pair up across ranks, and autorange loops pick their own count per process."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times: list[float] = []
    spent = 0.0
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        spent += times[-1] / 1000
        if spent > max_seconds and len(times) >= 5:
            break
    return statistics.median(times)


def steady_load(ms: float = 25.0) -> Callable[[], None]:
    """A fixed stretch of matrix products (about `ms` milliseconds) to run before each timed call.

    The GPU's clock depends on what ran just before (a 260 ms dense call leaves it hotter and slower than a 25 ms
    sparse one); giving every timed call the same predecessor removes that bias from ratios between them."""
    from torch.utils import benchmark
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    one = benchmark.Timer(stmt="a @ a", globals={"a": a}).blocked_autorange(min_run_time=0.2).median * 1000
    repeats = max(1, round(ms / one))

    def run() -> None:
        for _ in range(repeats):
            a @ a
    return run


def interleaved_time_ms(fns: dict[str, Callable[[], object]], warmup: int = 2, rounds: int = 15,
                        max_seconds: float = 60.0) -> dict[str, float]:
    """Median milliseconds of each function, timed in alternation (one run of each per round).

    Each timed run follows the same fixed load (steady_load), and the order rotates every round, so clock drift
    and the previous call's heat fall equally on every function and ratios between them (speed of light, layout
    cost) stay fair. Why not a library: torch.utils.benchmark and do_bench time one function at a time, so a slow
    dense call and a fast sparse one would run at different clocks."""
    load = steady_load()
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in fns}
    spent = 0.0
    names = list(fns)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            fn = fns[name]
            load()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end))
            spent += times[name][-1] / 1000
        if spent > max_seconds and len(times[name]) >= 5:
            break
    return {name: statistics.median(values) for name, values in times.items()}


def environment() -> dict:
    """What a benchmark record must say about where it ran."""
    return {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "date": datetime.date.today().isoformat(),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
    }

