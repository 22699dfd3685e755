"""Build record of the Blackwell (sm100a) kernel, made without a GPU: compiles each configuration in each schedule
(one tile per CTA, persistent) with the compiler `toolchain.find_toolchain()` finds (`--pypi`: nvcc from PyPI), and
writes per configuration and schedule the compile time, the
launch shape and shared memory (from the translation unit's own GNA_KERNEL_INFO_MAIN program), registers, stack and
local memory (cuobjdump -res-usage) and SASS instruction counts (UTCHMMA, UTCBAR, TMA, TMEM loads/stores, LDL/STL).

    python scripts/sm100_build_record.py --out bench/results/sm100a_build_<date>.json [--pypi] [--configs bfloat16:128]

Exits 1 if any configuration has a problem (no UTCHMMA, local memory, registers over the launch bound).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gna_diffusers.backends import cutlass, sass, toolchain  # noqa: E402

ALL_CONFIGS = ["bfloat16:128", "bfloat16:64", "float16:128", "float16:64"]


def record(arch: str, config: str, schedule: str, chain: toolchain.Toolchain, work: Path) -> dict:
    dtype, head_dim = config.split(":")
    program, seconds = sass.compile_cubin(arch, dtype, int(head_dim), schedule, work, chain, program=True)
    info = json.loads(subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout)
    (report,) = sass.inspect(program, chain)
    problems = report.problems(arch)
    print(f"{arch} {dtype:9} d{head_dim:3} {schedule:10}: {seconds:5.0f} s, {report.registers} registers (limit "
          f"{report.register_limit}), stack {report.stack}, local {report.local}, shared {info['shared_storage_bytes']} "
          f"B, UTCHMMA {report.counts['UTCHMMA']}, UTCBAR {report.counts['UTCBAR']}, LDL/STL "
          f"{report.counts['LDL']}/{report.counts['STL']}  {'; '.join(problems) or 'ok'}", flush=True)
    return dict(arch=arch, dtype=dtype, head_dim=int(head_dim), schedule=schedule, compile_seconds=round(seconds, 1),
                kernel_info=info, sass=report.as_dict(), problems=problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--configs", nargs="+", default=ALL_CONFIGS, choices=ALL_CONFIGS)
    parser.add_argument("--pypi", action="store_true", help="use nvcc from PyPI even where a CUDA toolkit is found")
    parser.add_argument("--jobs", type=int, default=2, help="configurations compiled at once (default 2)")
    args = parser.parse_args()
    chain = toolchain.pypi_toolchain() if args.pypi else toolchain.find_toolchain()
    if chain is None:
        print(f"no compiler: {toolchain.pypi_problem() if args.pypi else toolchain.toolchain_problem()}")
        return 1
    arch = "sm100a"
    if args.jobs < 1:
        raise ValueError(f"--jobs={args.jobs}; it must be >= 1")
    builds = [(config, schedule) for config in args.configs for schedule in cutlass.ARCHS[arch].schedules]
    with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(max_workers=args.jobs) as pool:
        configs = list(pool.map(lambda b: record(arch, *b, chain, Path(work)), builds))
    result = dict(
        what="sm100a GNA forward kernel (kernels/gna_forward_sm100.cu), compiled and disassembled without a GPU; "
             "never run here (no Blackwell GPU)",
        date=time.strftime("%Y-%m-%d"), command=" ".join(sys.argv), compiler=str(chain.nvcc),
        compiler_source=chain.source, compiler_version=chain.version(), kernel_sources_digest=cutlass.sources_digest(),
        flags=cutlass.kernel_flags(arch, "bfloat16", 128, "single")[:1] + cutlass.COMMON_NVCC_FLAGS,
        schedule_flags={schedule: cutlass.SCHEDULES[schedule] for schedule in cutlass.ARCHS[arch].schedules},
        host=f"{platform.machine()} {platform.system()}", configs=configs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 1 if any(c["problems"] for c in configs) else 0


if __name__ == "__main__":
    sys.exit(main())
