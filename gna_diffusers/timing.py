"""GPU timing shared by the benchmark and comparison scripts: CUDA events after warm-up, median of many runs."""

from __future__ import annotations

import datetime
import statistics
from typing import Callable

import torch


def cuda_time_ms(fn: Callable[[], object], warmup: int = 3, reps: int = 20, max_seconds: float = 20.0) -> float:
    """Median milliseconds of `fn()` on the current CUDA stream; fewer reps if one run is slow."""
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


def interleaved_time_ms(fns: dict[str, Callable[[], object]], warmup: int = 2, rounds: int = 15,
                        max_seconds: float = 60.0) -> dict[str, float]:
    """Median milliseconds of each function, timed in alternation (one run of each per round).

    GPU clocks drift during a benchmark (power and heat) and a long call leaves the next one a hotter GPU; alternating
    in a rotating order puts the same drift on every function, so ratios between them (speed of light, layout cost)
    stay fair."""
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
