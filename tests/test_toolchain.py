"""Finding the CUDA compiler without a toolkit (backends/toolchain.py): a system toolkit wins, else nvcc from PyPI,
and the JIT build hands the one found to torch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gna_diffusers.backends import cutlass, toolchain


def needs_pypi_compiler() -> toolchain.Toolchain:
    """The PyPI compiler; skipped where it is not installed, except in CI, whose test extra installs it."""
    chain = toolchain.pypi_toolchain()
    if chain is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the PyPI compiler (the test extra includes [kernels]): {toolchain.pypi_problem()}")
        pytest.skip(toolchain.pypi_problem())
    return chain


@pytest.fixture
def no_system_toolkit(monkeypatch, tmp_path):
    """No $CUDA_HOME, no nvcc on PATH (the host compiler stays), no /usr/local/cuda."""
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "nvcc").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(keep))
    monkeypatch.setattr(toolchain, "DEFAULT_HOMES", (tmp_path / "no-cuda",))


def fake_home(root: Path, versioned_cudart: bool = False) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (root / "include" / "cuda_runtime.h").write_text("")
    if versioned_cudart:
        (root / "lib").mkdir()
        (root / "lib" / "libcudart.so.13").write_text("")
    return root


def test_pypi_compiler_and_headers_are_found(no_system_toolkit):
    chain = needs_pypi_compiler()
    found = toolchain.find_toolchain()
    assert found == chain and found.source == "pypi"
    assert found.home.name == "cu13" and found.home.parent.name == "nvidia"
    assert "release 13." in found.version()
    assert (found.include_dir / "cuda_runtime.h").is_file()
    assert (found.include_dir / "cccl" / "cuda" / "std").is_dir()
    assert toolchain.cutlass_source() is not None and (toolchain.cutlass_source() / "include" / "cute").is_dir()
    assert cutlass.cutlass_paths("sm90a")[1].name == "88_hopper_fmha"
    assert cutlass.cutlass_paths("sm100a")[1].name == "77_blackwell_fmha"
    assert toolchain.toolchain_problem() is None


def test_pypi_compiler_compiles_device_code(no_system_toolkit, tmp_path):
    """The PyPI nvcc alone (nvvm, crt, runtime and cccl headers) compiles sm_90a and sm_100a code on this CPU
    machine."""
    chain = needs_pypi_compiler()
    source = tmp_path / "k.cu"
    source.write_text("#include <cuda_runtime.h>\n#include <cuda/std/atomic>\n"
                      "__global__ void k(float* x) { x[threadIdx.x] *= 2.f; }\n")
    for arch in ("90a", "100a"):
        subprocess.run([str(chain.nvcc), "-cubin", f"-gencode=arch=compute_{arch},code=sm_{arch}", "-o",
                        str(tmp_path / f"k{arch}.cubin"), str(source)], check=True, env=chain.env())
        assert (tmp_path / f"k{arch}.cubin").stat().st_size > 0


def test_cuda_home_wins_over_pypi(monkeypatch, tmp_path, no_system_toolkit):
    home = fake_home(tmp_path / "toolkit")
    monkeypatch.setenv("CUDA_HOME", str(home))
    chain = toolchain.find_toolchain()
    assert chain.home == home and chain.source == "CUDA_HOME"


def test_toolkit_on_path_found_through_its_nvcc(monkeypatch, tmp_path, no_system_toolkit):
    home = fake_home(tmp_path / "cuda-13.9")
    monkeypatch.setenv("PATH", f"{home / 'bin'}{os.pathsep}{os.environ['PATH']}")
    os.chmod(home / "bin" / "nvcc", 0o755)
    assert toolchain.system_toolchain() == toolchain.Toolchain(home.resolve(), "PATH")


def test_bad_cuda_home_is_named(monkeypatch, tmp_path, no_system_toolkit):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "nowhere"))
    assert toolchain.system_toolchain() is None
    if toolchain.pypi_toolchain() is None:
        problem = toolchain.toolchain_problem()
        assert problem is not None and str(tmp_path / "nowhere") in problem


def test_no_compiler_at_all_says_how_to_install(monkeypatch, no_system_toolkit):
    monkeypatch.setattr(toolchain, "pypi_home", lambda: None)
    assert toolchain.find_toolchain() is None
    assert 'pip install "gna-diffusers[kernels]"' in toolchain.toolchain_problem()


def test_cudart_link_dir_gives_torch_an_unversioned_library(tmp_path):
    chain = toolchain.Toolchain(fake_home(tmp_path / "cu13", versioned_cudart=True), "pypi")
    link_dir = toolchain.cudart_link_dir(chain, tmp_path / "cache")
    assert (link_dir / "libcudart.so").resolve() == (chain.library_dir / "libcudart.so.13").resolve()
    assert toolchain.cudart_link_dir(chain, tmp_path / "cache") == link_dir  # again: unchanged
    (chain.library_dir / "libcudart.so").symlink_to(chain.library_dir / "libcudart.so.13")
    assert toolchain.cudart_link_dir(chain, tmp_path / "cache2") is None  # a toolkit that has it needs none


def test_jit_build_hands_the_found_compiler_to_torch(monkeypatch, tmp_path, no_system_toolkit):
    """build_extension points torch's cpp_extension at the PyPI compiler for the build (and back after), links
    cudart through the link directory, and compiles for the requested architecture."""
    from torch.utils import cpp_extension
    chain = toolchain.Toolchain(fake_home(tmp_path / "nvidia" / "cu13", versioned_cudart=True), "pypi")
    monkeypatch.setattr(toolchain, "pypi_toolchain", lambda: chain)
    monkeypatch.setenv("GNA_KERNEL_CACHE", str(tmp_path / "cache"))
    seen = {}

    def fake_load(**kwargs):
        seen.update(kwargs, cuda_home=cpp_extension.CUDA_HOME, arch_list=os.environ.get("TORCH_CUDA_ARCH_LIST"))
        return "module"

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    before = cpp_extension.CUDA_HOME
    assert cutlass.build_extension("bfloat16", 128, schedule="single", arch="sm100a") == "module"
    assert seen["cuda_home"] == str(chain.home) and cpp_extension.CUDA_HOME == before
    assert seen["arch_list"] == "10.0a"
    assert "-gencode=arch=compute_100a,code=sm_100a" in seen["extra_cuda_cflags"]
    assert seen["sources"][1].endswith("gna_forward_sm100.cu")
    assert any(p.endswith("77_blackwell_fmha") for p in seen["extra_include_paths"])
    assert seen["extra_ldflags"] == [f"-L{tmp_path / 'cache' / 'cudart'}"]
    assert Path(seen["build_directory"]).parent == tmp_path / "cache"


def test_kernel_flags_name_bad_arguments():
    with pytest.raises(ValueError, match="arch='sm80'; allowed: sm90a, sm100a"):
        cutlass.kernel_flags("sm80", "bfloat16", 128, "single")
    with pytest.raises(ValueError, match="schedule='pingpong' for sm100a; allowed: single, persistent"):
        cutlass.kernel_flags("sm100a", "bfloat16", 128, "pingpong")
    with pytest.raises(ValueError, match="head_dim=96"):
        cutlass.kernel_flags("sm90a", "bfloat16", 96, "single")
