"""`gna-diffusers build-kernels`: compile the cutlass GNA kernels ahead of time into the kernel cache.

Otherwise each (arch, dtype, head_dim) configuration is compiled on its first use (one to two minutes each). The
compiler is a CUDA toolkit's ($CUDA_HOME) or, without one, nvcc from PyPI (`pip install "gna-diffusers[kernels]"`).
Building for an architecture needs no GPU of it: `--arch sm90a sm100a` builds both on any machine with a CUDA build of
torch.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import UsageError, UserError
from . import positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("build-kernels", help="compile the cutlass GNA kernels ahead of time",
                              description=__doc__.splitlines()[0])
    # no `choices`: they live in backends.cutlass, which imports torch, and --help must stay light; run() checks
    p.add_argument("--arch", nargs="+", default=["sm90a"],
                   help="architectures to build for (default: sm90a, Hopper; sm100a is Blackwell B200/GB200)")
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"], choices=["bfloat16", "float16"])
    p.add_argument("--head-dims", nargs="+", type=int, default=[64, 128], choices=[64, 128])
    p.add_argument("--schedules", nargs="+", default=None,
                   help="kernel schedules to build (default: all an architecture has, since the backend picks one "
                        "per problem)")
    p.add_argument("--jobs", type=positive_int, default=4, help="configurations compiled at once (default 4)")
    p.add_argument("--show-compiler", action="store_true", help="show the compiler commands and output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backends import cutlass
    configs = []
    for arch in args.arch:
        if arch not in cutlass.ARCHS:
            raise UsageError(f"--arch {arch}: allowed: {', '.join(cutlass.ARCHS)}")
        problem = cutlass.toolchain_problem(arch)
        if problem is not None:
            raise UserError(f"cannot build the cutlass kernels for {arch}: {problem} (`gna-diffusers env` shows the "
                            f"toolchain)")
        allowed = cutlass.ARCHS[arch].schedules
        for schedule in args.schedules or allowed:
            if schedule not in allowed:
                raise ValueError(f"--schedules {schedule} for {arch}; allowed: {', '.join(allowed)}")
        configs += [(arch, d, h, s) for d in args.dtypes for h in args.head_dims for s in args.schedules or allowed]

    def build(config: tuple[str, str, int, str]) -> tuple[tuple[str, str, int, str], float, str]:
        arch, dtype, head_dim, schedule = config
        start = time.perf_counter()
        try:
            cutlass.build_extension(dtype, head_dim, verbose=args.show_compiler, schedule=schedule, arch=arch)
            return config, time.perf_counter() - start, "ok"
        except Exception as err:  # report every configuration, then fail
            return config, time.perf_counter() - start, f"FAILED: {err}"

    from ..backends import toolchain
    chain = toolchain.find_toolchain()
    print(f"building {len(configs)} configuration(s) into {cutlass.cache_dir()} with {chain.nvcc} ({chain.source})")
    failed = 0
    with ThreadPoolExecutor(max_workers=min(args.jobs, len(configs))) as pool:
        for (arch, dtype, head_dim, schedule), seconds, status in pool.map(build, configs):
            print(f"  {arch:6}  {dtype:9} head_dim {head_dim:3}  {schedule:10}  {seconds:6.1f} s  {status}")
            failed += status != "ok"
    return 1 if failed else 0
