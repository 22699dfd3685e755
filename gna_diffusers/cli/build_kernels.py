"""`gna-diffusers build-kernels`: compile the cutlass GNA kernels ahead of time into the kernel cache.

Otherwise each (dtype, head_dim) configuration is compiled on its first use (about a minute each).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import UserError
from . import positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("build-kernels", help="compile the cutlass GNA kernels (Hopper) ahead of time",
                              description=__doc__.splitlines()[0])
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"], choices=["bfloat16", "float16"])
    p.add_argument("--head-dims", nargs="+", type=int, default=[64, 128], choices=[64, 128])
    p.add_argument("--schedules", nargs="+", default=None,
                   help="kernel schedules to build (default: all, since the backend picks one per problem)")
    p.add_argument("--jobs", type=positive_int, default=4, help="configurations compiled at once (default 4)")
    p.add_argument("--show-compiler", action="store_true", help="show the compiler commands and output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backends import cutlass
    problem = cutlass.toolchain_problem()
    if problem is not None:
        raise UserError(f"cannot build the cutlass kernels: {problem} (`gna-diffusers env` shows the toolchain)")
    schedules = args.schedules or list(cutlass.SCHEDULES)
    for schedule in schedules:
        if schedule not in cutlass.SCHEDULES:
            raise ValueError(f"--schedules {schedule}; allowed: {', '.join(cutlass.SCHEDULES)}")
    configs = [(d, h, s) for d in args.dtypes for h in args.head_dims for s in schedules]

    def build(config: tuple[str, int, str]) -> tuple[tuple[str, int, str], float, str]:
        start = time.perf_counter()
        try:
            cutlass.build_extension(*config[:2], verbose=args.show_compiler, schedule=config[2])
            return config, time.perf_counter() - start, "ok"
        except Exception as err:  # report every configuration, then fail
            return config, time.perf_counter() - start, f"FAILED: {err}"

    print(f"building {len(configs)} configuration(s) into {cutlass.cache_dir()}")
    failed = 0
    with ThreadPoolExecutor(max_workers=min(args.jobs, len(configs))) as pool:
        for (dtype, head_dim, schedule), seconds, status in pool.map(build, configs):
            print(f"  {dtype:9} head_dim {head_dim:3}  {schedule:10}  {seconds:6.1f} s  {status}")
            failed += status != "ok"
    return 1 if failed else 0
