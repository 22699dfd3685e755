"""Compile a kernel translation unit to a cubin (no torch, no GPU) and read what its SASS says.

This is how an architecture we cannot run here (sm100a: no B200 on this project's machines) is checked: the tensor-core
instructions it must use are there (HGMMA on Hopper, UTCHMMA, tcgen05's MMA with its accumulator in tensor memory, on
Blackwell), nothing spills to local memory, and the registers fit the launch bounds. CI runs it with nvcc from PyPI.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from . import cutlass, toolchain

# Instructions whose counts a build record keeps: the MMAs of each architecture, their commits and waits, the TMA
# and tensor-memory traffic, and local memory (spills).
COUNTED = ("HGMMA", "UTCHMMA", "UTCBAR", "UTMALDG", "UTMASTG", "LDTM", "STTM", "WARPGROUP.ARRIVE", "SYNCS", "MUFU.EX2",
           "LDL", "STL")
# The tensor-core instruction each architecture's kernel must contain.
MMA_INSTRUCTION = {"sm90a": "HGMMA", "sm100a": "UTCHMMA"}


@dataclass
class KernelReport:
    """Resource usage and instruction counts of one compiled kernel function."""

    function: str
    registers: int
    stack: int
    local: int
    static_shared: int
    max_threads: int  # the launch bound (__launch_bounds__)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def register_limit(self) -> int:
        """The most registers a thread may take so that one CTA of max_threads fits the 64K-register file (and at
        most 255, the most one thread can address)."""
        return min(255, 65536 // self.max_threads // 8 * 8)

    def problems(self, arch: str) -> list[str]:
        """What is wrong with this kernel for `arch` (empty when nothing is)."""
        found = []
        mma = MMA_INSTRUCTION[arch]
        if self.counts.get(mma, 0) == 0:
            found.append(f"no {mma} instruction: the tensor-core path of {arch} is missing")
        if self.local or self.stack or self.counts.get("LDL", 0) or self.counts.get("STL", 0):
            found.append(f"local memory used (LOCAL {self.local}, STACK {self.stack}, LDL {self.counts.get('LDL')}, "
                         f"STL {self.counts.get('STL')}): registers spill")
        if self.registers > self.register_limit:
            found.append(f"{self.registers} registers per thread exceed {self.register_limit}, the limit for "
                         f"{self.max_threads} threads")
        return found

    def as_dict(self) -> dict:
        return dict(asdict(self), register_limit=self.register_limit)


def compile_cubin(arch: str, dtype_name: str, head_dim: int, schedule: str, out_dir: Path,
                  chain: Optional[toolchain.Toolchain] = None, program: bool = False) -> tuple[Path, float]:
    """Compiles the kernel translation unit of one configuration (not the torch binding) to a cubin in `out_dir`, or
    with `program` to a host program holding the same device code whose main prints the kernel's launch shape and
    shared memory (GNA_KERNEL_INFO_MAIN; runs without a GPU); returns its path and the compile time in seconds.
    Raises RuntimeError with the compiler's output on failure, or on a ptxas performance warning."""
    chain = chain or toolchain.find_toolchain()
    if chain is None:
        raise RuntimeError(toolchain.toolchain_problem())
    paths = cutlass.cutlass_paths(arch)
    if paths is None:
        raise RuntimeError(cutlass.kernel_problem(arch))
    include, example = paths
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"gna_{arch}_{dtype_name}_d{head_dim}_{schedule}"
    output = out_dir / (f"{stem}_info" if program else f"{stem}.cubin")
    kind = ["-DGNA_KERNEL_INFO_MAIN", "-o", str(output)] if program else ["-cubin", "-o", str(output)]
    command = ([str(chain.nvcc)] + kind + cutlass.kernel_flags(arch, dtype_name, head_dim, schedule)
               + [f"-I{cutlass.KERNELS_DIR}", f"-I{include}", f"-I{example}",
                  str(cutlass.KERNELS_DIR / cutlass.ARCHS[arch].kernel)])
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=chain.env())
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"nvcc failed ({' '.join(command)}):\n{result.stdout}{result.stderr}"[-6000:])
    if "C75" in result.stderr:  # ptxas performance warnings, e.g. C7510: wgmma serialized
        raise RuntimeError(f"ptxas warned:\n{result.stderr[-3000:]}")
    return output, seconds


def _tool(chain: toolchain.Toolchain, name: str) -> Path:
    path = chain.tool(name)
    if path is None:
        raise RuntimeError(f"{name} not found next to {chain.nvcc} (pip install nvidia-cuda-{name})")
    return path


def inspect(cubin: Path, chain: Optional[toolchain.Toolchain] = None) -> list[KernelReport]:
    """Resource usage (cuobjdump -res-usage, -elf) and SASS instruction counts (cuobjdump -sass) of each kernel
    function (`__global__`) in `cubin`."""
    chain = chain or toolchain.find_toolchain()
    cuobjdump = str(_tool(chain, "cuobjdump"))
    _tool(chain, "nvdisasm")  # cuobjdump -sass runs it

    def run(*args: str) -> str:
        return subprocess.run([cuobjdump, *args, str(cubin)], capture_output=True, text=True, check=True,
                              env=chain.env()).stdout

    usage = run("-res-usage")
    elf = run("-elf")
    sass = run("-sass")
    threads = {}
    for match in re.finditer(r"EIATTR_MAX_THREADS\s+Format:\s+\S+\s+Value:\s+(0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+)",
                             elf):
        threads[len(threads)] = int(match[1], 16) * int(match[2], 16) * int(match[3], 16)
    reports = []
    for match in re.finditer(r"Function (\S+):\s+REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage):
        name = match[1]
        if "device_kernel" not in name:
            continue
        body = _function_sass(sass, name)
        counts = {op: len(re.findall(rf"\b{re.escape(op)}\b", body)) for op in COUNTED}
        reports.append(KernelReport(name, int(match[2]), int(match[3]), int(match[5]), int(match[4]),
                                    threads.get(len(reports), 1024), counts))
    if not reports:
        raise RuntimeError(f"no kernel function found in {cubin}")
    if len(threads) != len(reports):
        raise RuntimeError(f"{cubin}: {len(reports)} kernels but {len(threads)} launch bounds; cannot pair them")
    return reports


def _function_sass(sass: str, name: str) -> str:
    """The SASS text of one function of a `cuobjdump -sass` listing."""
    start = sass.find(f"Function : {name}")
    if start < 0:
        raise RuntimeError(f"function {name} not in the SASS listing")
    end = sass.find("Function : ", start + 1)
    return sass[start:end if end >= 0 else len(sass)]
