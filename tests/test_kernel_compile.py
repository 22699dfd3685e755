"""The kernels' translation units (not the torch binding) compile with nvcc from PyPI on this CPU machine, and their
SASS is what the kernel needs: the architecture's tensor-core MMA (HGMMA on sm90a, tcgen05's UTCHMMA on sm100a), no
local memory (no spills: LOCAL 0, stack 0, no LDL/STL), registers within the launch bounds. One configuration per
architecture and schedule (bf16, head_dim 128): half a minute to a few minutes each on 2 idle cores (an sm100a
build took 16 minutes on a loaded machine)."""

from __future__ import annotations

import pytest

from gna_diffusers.backends import cutlass, sass
from test_toolchain import needs_pypi_compiler

pytestmark = pytest.mark.slow

BUILDS = [(arch, schedule) for arch in cutlass.ARCHS if (cutlass.KERNELS_DIR / cutlass.ARCHS[arch].kernel).is_file()
          for schedule in cutlass.ARCHS[arch].schedules]


@pytest.mark.parametrize("arch, schedule", BUILDS)
def test_kernel_compiles_with_pypi_nvcc_and_sass_is_clean(arch, schedule, tmp_path):
    chain = needs_pypi_compiler()
    cubin, seconds = sass.compile_cubin(arch, "bfloat16", 128, schedule, tmp_path, chain)
    reports = sass.inspect(cubin, chain)
    assert len(reports) == 1
    report = reports[0]
    print(f"{arch} {schedule}: {seconds:.0f} s, {report.as_dict()}")
    assert report.problems(arch) == []
    assert report.counts[sass.MMA_INSTRUCTION[arch]] >= 8
    other = "UTCHMMA" if arch == "sm90a" else "HGMMA"
    assert report.counts[other] == 0
