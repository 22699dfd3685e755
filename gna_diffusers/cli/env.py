"""`gna-diffusers env`: one screen for a bug report: versions, GPUs, the kernel compiler and cache, and the backend
`auto` picks here for bfloat16/float16 at head_dim 64/128, with the reasons. Compiles nothing and loads no kernel.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import torch

PACKAGES = ["gna-diffusers", "torch", "diffusers", "transformers", "nvidia-cutlass", "torchmetrics"]
DTYPES = ("bfloat16", "float16")
HEAD_DIMS = (64, 128)
# the names cutlass.build_extension gives its build folders, after cutlass.build_prefix(arch)
BUILD_NAME = re.compile(r"(?P<prefix>gna_cutlass_sm\d+a?)_(?P<dtype>[a-z]+\d+)_d(?P<head_dim>\d+)_(?P<schedule>[a-z]+)_"
                        r"(?P<digest>[0-9a-f]+)$")


def version(distribution: str) -> str:
    """Installed version from the package metadata (nothing is imported), or 'not installed'."""
    import importlib.metadata
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def gpu_lines() -> list[str]:
    import torch
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device visible"
        return [f"  none ({why})"]
    lines = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        lines.append(f"  cuda:{i}  {p.name}  compute capability {p.major}.{p.minor}  "
                     f"{p.total_memory / 2 ** 30:.0f} GiB")
    return lines


def nvcc_line() -> str:
    """The nvcc the kernel JIT uses (`toolchain.find_toolchain`: $CUDA_HOME, PATH, else the PyPI wheels), where it
    was found and its release, without compiling anything."""
    from ..backends import toolchain
    chain = toolchain.find_toolchain()
    if chain is None:
        return f"not found ({toolchain.toolchain_problem()})"
    try:
        out = subprocess.run([str(chain.nvcc), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{chain.nvcc} (from {chain.source}; does not run: {err})"
    release = re.search(r"release ([\d.]+)", out)
    return f"{chain.nvcc} (CUDA {release.group(1) if release else '?'}, from {chain.source})"


def built_kernels(cache: Path, digest: Optional[str]) -> tuple[list[str], int]:
    """(built configurations of the current kernel sources, e.g. 'bfloat16 d128 single (sm90a)'; number of builds
    of older sources) in `cache`."""
    from ..backends.cutlass import ARCHS, build_prefix
    arch_of_prefix = {build_prefix(arch): arch for arch in ARCHS}
    current, stale = [], 0
    for folder in sorted(cache.iterdir()) if cache.is_dir() else []:
        match = BUILD_NAME.match(folder.name)
        if match is None or match["prefix"] not in arch_of_prefix or not any(folder.glob("*.so")):
            continue
        if match["digest"] == digest:
            current.append(f"{match['dtype']} d{match['head_dim']} {match['schedule']} "
                           f"({arch_of_prefix[match['prefix']]})")
        else:
            stale += 1
    return current, stale


def best_device() -> torch.device:
    """The GPU of the highest compute capability, else the CPU."""
    import torch
    if not torch.cuda.is_available():
        return torch.device("cpu")
    best = max(range(torch.cuda.device_count()), key=torch.cuda.get_device_capability)
    return torch.device("cuda", best)


def auto_lines(device: torch.device, built: list[str]) -> list[str]:
    """For each dtype and head_dim: the backend `auto` picks for small dummy inputs on `device`, and why the
    higher-priority ones are out (the registry's own checks, minus any kernel build)."""
    import torch

    from ..backends import cutlass
    from ..backends.registry import auto_ranking
    from ..ops.inputs import make_inputs
    lines = []
    for dtype_name in DTYPES:
        for head_dim in HEAD_DIMS:
            q = torch.zeros(1, 16 * 16, 2, head_dim, dtype=getattr(torch, dtype_name), device=device)
            inputs = make_inputs(q, q, q, grid=(16, 16), window=(8, 8))
            picked, skipped = None, []
            for backend, priority, reason in auto_ranking(inputs):
                if priority < 0:
                    skipped.append(f"{backend.name}: auto never picks it on {device.type}"
                                   + (f" ({reason})" if reason else ""))
                elif reason is not None:
                    skipped.append(f"{backend.name}: {reason}")
                elif picked is None:
                    picked = backend.name
            if picked == "cutlass":
                arch = cutlass.arch_of(device)
                is_built = any(b.startswith(f"{dtype_name} d{head_dim} ") and b.endswith(f"({arch})") for b in built)
                picked += (" (kernel built)" if is_built
                           else " (kernel compiled on first use, ~1 min; or `gna-diffusers build-kernels`)")
            lines.append(f"  {dtype_name:8} head_dim {head_dim:3}: {picked or 'none'}")
            lines += [f"      not {line}" for line in skipped]
    return lines


def run(args: argparse.Namespace) -> int:
    import torch

    from ..backends import cutlass
    versions = {"python": f"{platform.python_version()} ({platform.platform()})",
                **{name: version(name) for name in PACKAGES}}
    versions["torch"] += f" (CUDA {torch.version.cuda or 'none'})"
    lines = [f"{name:15} {value}" for name, value in versions.items()]
    lines.append("GPUs")
    lines += gpu_lines()
    problem = cutlass.toolchain_problem()
    try:
        digest: Optional[str] = cutlass.sources_digest()
    except OSError:
        digest = None
    built, stale = built_kernels(cutlass.cache_dir(), digest)
    lines += ["cutlass kernel JIT (Hopper sm90a, Blackwell sm100a)",
              f"  nvcc           {nvcc_line()}",
              f"  can build      {'yes' if problem is None else 'no: ' + problem}",
              f"  cache          {cutlass.cache_dir()}",
              f"  built          {', '.join(built) or 'none'} (sources {digest or 'not found'})"
              + (f"; {stale} build(s) of older sources" if stale else "")]
    device = best_device()
    lines.append(f"backend `auto` picks on {device} (--backend / recipe `backend: auto`)")
    lines += auto_lines(device, built)
    print("\n".join(lines))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="versions, GPUs, kernel compiler and cache, and the backend `auto` picks here "
                                   "(paste it into bug reports)", description=__doc__)
    p.set_defaults(func=run)
