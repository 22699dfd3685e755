"""Host (Python) time per `gna_attention` call on the cutlass backend, so small problems stay kernel-bound (#20).

The kernel entry (the extension's `forward`, called from `cutlass._kernel_call`) is replaced by a no-op, so what is
timed is everything else a call does: validation, backend selection, the plan, output allocation, layout gathers
and extra-token compaction. Without a Hopper GPU (a CPU machine) the backend is also told the device is sm90a, so
the same Python path runs on CPU tensors. On a Hopper GPU the script then times the real kernel too: the GPU time
of one call (CUDA events over a loop) and the wall time per call of a loop of real calls; a call is kernel-bound when
the wall time per call matches the GPU time rather than the host time.

Columns: `host us` gna_attention(..., backend="cutlass"); `op entry us` gna_attention_op, what the model processors
call; `GPU us` and `loop us` (Hopper only) the real call's GPU time and wall time per call in a loop.

    python scripts/host_overhead.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from types import SimpleNamespace
from typing import Callable, Iterator

import torch

from gna_diffusers import gna_attention
from gna_diffusers.backends import cutlass
from gna_diffusers.functional import gna_attention_op

# (name, grid, window, stride, dilation, extra tokens (of which the first half valid, through a mask; 0: none)); the
# dilated case (the tiled layout: gathers in and out) is small, as on a CPU the gathers would do real work
CASES = [
    ("sliding2d_16k", (128, 128), (32, 32), 1, 1, 0),
    ("sliding2d_16k_text", (128, 128), (32, 32), 1, 1, 256),
    ("dilated3d_1k", (4, 16, 16), (2, 4, 4), 1, 2, 0),
]
HEAD_DIM, DTYPE = 64, torch.float16


class _NoKernel:
    """Stands in for a built extension: the kernel launch does nothing (out and lse are allocated by the caller)."""

    @staticmethod
    def forward(*args) -> None:
        return None


@contextlib.contextmanager
def no_kernel(fake_device: bool) -> Iterator[None]:
    """Every cutlass call skips the kernel; with `fake_device`, CPU tensors pass as an sm90a device's."""
    saved = dict(extension=cutlass.extension, arch_of=cutlass.arch_of)
    saved_stream = torch.cuda.current_stream
    cutlass.extension = lambda *args, **kwargs: _NoKernel
    if fake_device:
        cutlass.arch_of = lambda device: "sm90a"
        torch.cuda.current_stream = lambda device=None: SimpleNamespace(cuda_stream=0)
    try:
        yield
    finally:
        cutlass.extension, cutlass.arch_of = saved["extension"], saved["arch_of"]
        torch.cuda.current_stream = saved_stream


def host_us(fn: Callable[[], object], calls: int, batches: int = 10) -> float:
    """Wall microseconds per call (the kernel is a no-op, so this is host time): the lowest over batches, as other
    processes on a shared machine only ever add time."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls // batches):
            fn()
        times.append((time.perf_counter() - start) / (calls // batches) * 1e6)
    return min(times)


def make_call(case: tuple, device: str, heads: int, via_op: bool) -> Callable[[], object]:
    """A closure calling gna_attention (or the custom op the model processors call) on fresh inputs of the case."""
    _, grid, window, stride, dilation, extra = case
    n = 1
    for length in grid:
        n *= length
    q, k, v = (torch.randn(1, n, heads, HEAD_DIM, device=device, dtype=DTYPE) for _ in range(3))
    kwargs = {}
    if extra:
        kwargs = dict(extra_key=torch.randn(1, extra, heads, HEAD_DIM, device=device, dtype=DTYPE),
                      extra_value=torch.randn(1, extra, heads, HEAD_DIM, device=device, dtype=DTYPE),
                      extra_mask=torch.arange(extra, device=device)[None, :] < extra // 2)
    ndim = len(grid)
    if via_op:
        args = (list(grid), list(window), [stride] * ndim, [dilation] * ndim, [False] * ndim,
                kwargs.get("extra_key"), kwargs.get("extra_value"), kwargs.get("extra_mask"), HEAD_DIM ** -0.5,
                "cutlass")
        return lambda: gna_attention_op(q, k, v, *args)
    return lambda: gna_attention(q, k, v, grid=grid, window=window, stride=stride, dilation=dilation,
                                 backend="cutlass", **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    hopper = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
    device = "cuda" if hopper else "cpu"
    heads = 24 if hopper else 1  # the Python path does not depend on heads; a CPU's own tensor work does
    print(f"device: {torch.cuda.get_device_name() if hopper else 'cpu (sm90a faked)'}, torch {torch.__version__}, "
          f"{heads} heads, head_dim {HEAD_DIM}, {str(DTYPE).replace('torch.', '')}")
    print(f"{'case':22} {'host us':>8} {'op entry us':>11}" + (f" {'GPU us':>8} {'loop us':>8}" if hopper else ""))
    for case in CASES:
        calls = {via_op: make_call(case, device, heads, via_op) for via_op in (False, True)}
        if hopper:
            for fn in calls.values():
                fn()  # build or load the kernel, fill the caches, outside the timing
        with no_kernel(fake_device=not hopper):
            host = {via_op: host_us(fn, args.calls) for via_op, fn in calls.items()}
        line = f"{case[0]:22} {host[False]:8.1f} {host[True]:11.1f}"
        if hopper:
            line += f" {gpu_us(calls[False]):8.1f} {loop_us(calls[False]):8.1f}"
        print(line, flush=True)
    return 0


def gpu_us(fn: Callable[[], object], calls: int = 100) -> float:
    """GPU microseconds per call, from CUDA events around a loop that keeps the GPU queue full."""
    for _ in range(10):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(50_000_000)  # let the host run ahead, so the events time the GPU work and not the host
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000 / calls


def loop_us(fn: Callable[[], object], calls: int = 200) -> float:
    """Wall microseconds per call of a loop of real calls: max(host, GPU) per call in steady state."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e6 / calls


if __name__ == "__main__":
    sys.exit(main())
