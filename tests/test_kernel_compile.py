"""The kernels' translation units (not the torch binding) compile with nvcc from PyPI on this CPU machine, and their
SASS is what the kernel needs: the architecture's tensor-core MMA (HGMMA on sm90a, tcgen05's UTCHMMA on sm100a), no
local memory (no spills: LOCAL 0, stack 0, no LDL/STL), registers within the launch bounds. One configuration per
architecture (bf16, head_dim 128): about a minute each on CI's 2 cores."""

from __future__ import annotations

import pytest

from gna_diffusers.backends import cutlass, sass
from test_toolchain import needs_pypi_compiler

pytestmark = pytest.mark.slow

ARCHS = [arch for arch in cutlass.ARCHS if (cutlass.KERNELS_DIR / cutlass.ARCHS[arch].kernel).is_file()]


@pytest.mark.parametrize("arch", ARCHS)
def test_kernel_compiles_with_pypi_nvcc_and_sass_is_clean(arch, tmp_path):
    chain = needs_pypi_compiler()
    cubin, seconds = sass.compile_cubin(arch, "bfloat16", 128, "single", tmp_path, chain)
    reports = sass.inspect(cubin, chain)
    assert len(reports) == 1
    report = reports[0]
    print(f"{arch}: {seconds:.0f} s, {report.as_dict()}")
    assert report.problems(arch) == []
    assert report.counts[sass.MMA_INSTRUCTION[arch]] >= 8
    other = "UTCHMMA" if arch == "sm90a" else "HGMMA"
    assert report.counts[other] == 0
