"""Where the CUDA compiler and the CUTLASS headers for our kernels come from, and a lock around each build.

A user need not install a CUDA toolkit: `pip install "gna-diffusers[kernels]"` brings nvcc, ptxas, cicc and the CUDA
headers from PyPI (the `nvidia-cuda-nvcc`, `nvidia-nvvm`, `nvidia-cuda-crt`, `nvidia-cuda-runtime` and
`nvidia-cuda-cccl` wheels, all under site-packages/nvidia/cu13), and CUTLASS's headers come from the `nvidia-cutlass`
wheel. A toolkit named by $CUDA_HOME (or $CUDA_PATH), or the nvcc on PATH, wins over the PyPI one, so a machine with
its own toolkit keeps it.

Builds are cached in one directory per configuration; `locked_build` makes processes that build the same
configuration at once (torchrun's ranks) take turns, so one compiles and the others load its result.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import filelock

logger = logging.getLogger("gna_diffusers")

T = TypeVar("T")

PYPI_PACKAGES = "nvidia-cuda-nvcc nvidia-nvvm nvidia-cuda-crt nvidia-cuda-runtime nvidia-cuda-cccl"
# Where a toolkit lies when neither $CUDA_HOME nor PATH says so.
DEFAULT_HOMES = (Path("/usr/local/cuda"),)


@dataclass(frozen=True)
class Toolchain:
    """A CUDA compiler installation laid out as a CUDA home: bin/nvcc, include/ (and lib/ or lib64/)."""

    home: Path
    source: str  # "CUDA_HOME", "PATH" or "pypi": how it was found

    @property
    def nvcc(self) -> Path:
        return self.home / "bin" / "nvcc"

    @property
    def include_dir(self) -> Path:
        return self.home / "include"

    @property
    def library_dir(self) -> Path:
        return self.home / "lib64" if (self.home / "lib64").is_dir() else self.home / "lib"

    def tool(self, name: str) -> Optional[Path]:
        """A binary next to nvcc (cuobjdump, nvdisasm, ptxas), or None if that wheel or tool is not installed."""
        path = self.home / "bin" / name
        return path if path.is_file() else None

    def env(self) -> dict[str, str]:
        """The environment to run its tools in: its bin first on PATH (cuobjdump runs nvdisasm from PATH)."""
        env = dict(os.environ)
        env["PATH"] = f"{self.home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def version(self) -> str:
        """nvcc's release line, e.g. 'Cuda compilation tools, release 13.5, V13.5.37'."""
        out = subprocess.run([str(self.nvcc), "--version"], capture_output=True, text=True, check=True).stdout
        return next((line for line in out.splitlines() if "release" in line), out.strip().splitlines()[-1])


def _is_home(path: Path) -> bool:
    return (path / "bin" / "nvcc").is_file() and (path / "include" / "cuda_runtime.h").is_file()


def system_toolchain() -> Optional[Toolchain]:
    """The toolkit of $CUDA_HOME or $CUDA_PATH, else the one whose nvcc is on PATH (or /usr/local/cuda)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            home = Path(os.environ[var])
            return Toolchain(home, "CUDA_HOME") if _is_home(home) else None
    nvcc = shutil.which("nvcc")
    candidates = [Path(nvcc).resolve().parents[1]] if nvcc else []
    candidates += DEFAULT_HOMES
    for home in candidates:
        if _is_home(home):
            return Toolchain(home.resolve(), "PATH")
    return None


def pypi_home() -> Optional[Path]:
    """site-packages/nvidia/cu13, where the CUDA wheels from PyPI install, if nvidia-cuda-nvcc is installed."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        home = Path(location) / "cu13"
        if (home / "bin" / "nvcc").is_file():
            return home
    return None


def pypi_problem() -> Optional[str]:
    """Why the PyPI compiler cannot build here (a wheel missing), else None."""
    home = pypi_home()
    if home is None:
        return f"nvcc from PyPI is not installed (pip install \"gna-diffusers[kernels]\", or {PYPI_PACKAGES})"
    needed = {"nvidia-nvvm": home / "nvvm" / "bin" / "cicc", "nvidia-cuda-crt": home / "include" / "crt",
              "nvidia-cuda-runtime": home / "include" / "cuda_runtime.h",
              "nvidia-cuda-cccl": home / "include" / "cccl" / "cuda" / "std"}
    missing = [name for name, path in needed.items() if not path.exists()]
    if missing:
        return f"nvcc from PyPI is missing {', '.join(missing)} in {home} (pip install {' '.join(missing)})"
    return None


def pypi_toolchain() -> Optional[Toolchain]:
    """The compiler of the PyPI wheels, if all of them are installed."""
    return Toolchain(pypi_home(), "pypi") if pypi_problem() is None else None


def find_toolchain() -> Optional[Toolchain]:
    """The compiler our builds use: a system toolkit ($CUDA_HOME first), else the PyPI wheels."""
    return system_toolchain() or pypi_toolchain()


def toolchain_problem() -> Optional[str]:
    """Why no compiler was found, else None."""
    if find_toolchain() is not None:
        return None
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return (f"CUDA_HOME={os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH')} holds no bin/nvcc and "
                "include/cuda_runtime.h")
    return f"nvcc not found: no CUDA toolkit (CUDA_HOME) and {pypi_problem()}"


def cutlass_source() -> Optional[Path]:
    """The `source` directory of the nvidia-cutlass wheel (include/ and examples/), or None."""
    spec = importlib.util.find_spec("cutlass_library")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(list(spec.submodule_search_locations)[0]) / "source"
    return source if (source / "include" / "cute").is_dir() else None


def cudart_link_dir(chain: Toolchain, cache: Path) -> Optional[Path]:
    """A directory holding `libcudart.so` for torch's `-lcudart` where the toolchain has only the versioned library
    (the PyPI runtime wheel ships libcudart.so.13 alone); None where the toolchain's own library directory has it."""
    if (chain.library_dir / "libcudart.so").exists():
        return None
    versioned = sorted(chain.library_dir.glob("libcudart.so.*"))
    if not versioned:
        return None
    link_dir = cache / "cudart"
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "libcudart.so"
    with filelock.FileLock(str(cache / "cudart.lock")):
        if not link.exists() or link.resolve() != versioned[0].resolve():
            tmp = link_dir / f"libcudart.so.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(versioned[0])
            tmp.replace(link)  # atomic: a reader sees the old link or the new one
    return link_dir


@contextlib.contextmanager
def torch_cuda_home(chain: Toolchain) -> Iterator[None]:
    """Points torch.utils.cpp_extension at `chain` for one build: torch reads CUDA_HOME once at import (and not at all
    with a CPU-only torch), and finds nvcc, the CUDA headers and libraries through that module variable."""
    from torch.utils import cpp_extension
    previous = cpp_extension.CUDA_HOME
    cpp_extension.CUDA_HOME = str(chain.home)
    try:
        yield
    finally:
        cpp_extension.CUDA_HOME = previous


def locked_build(build_dir: Path, build: Callable[[], T], stale_files: tuple[str, ...] = ("lock",)) -> T:
    """Runs `build` (which compiles into `build_dir`, or finds it up to date) holding an exclusive lock on that
    configuration, so several processes building it at once take turns: the first compiles, the others find the
    result and only load it. The lock is the operating system's (flock): a process that dies releases it, so a
    killed rank never blocks the next run. `stale_files` in `build_dir` (torch's own build baton, which a killed
    build leaves behind and which would make the next build wait forever) are removed while the lock is held, when
    no other process can be building there."""
    build_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(build_dir.parent / f"{build_dir.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        logger.info("waiting for another process building %s", build_dir.name)
        start = time.perf_counter()
        lock.acquire()
        logger.info("%s was built by another process (waited %.0f s)", build_dir.name, time.perf_counter() - start)
    try:
        for name in stale_files:
            (build_dir / name).unlink(missing_ok=True)
        return build()
    finally:
        lock.release()
