"""GNA through our compiled CUTLASS kernel for Hopper (sm90a), kernels/gna_forward_sm90.cu.

Each 128-token Q tile (a box of the grid, ops/tiles.py) visits only the box of 128-token KV tiles (boxes of a shape of
their own, chosen per problem) covering its queries' windows and masks only partially covered tiles. With dilation 1
the kernel reads and writes the model's own token order ([B, N, H, D], row-major grid) through multi-dimensional TMA
boxes, so there is no permute at all; with dilation it runs on the tiled layout (ops/layout.py), permuted in and out
by one gather each. Each (dtype, head_dim) configuration is its own extension, built by ninja on first use (or ahead
of time by `gna-diffusers build-kernels`) into a cache directory.
Nothing is compiled at import. Without nvcc, CUTLASS headers or a compute-capability-9.0 GPU, `why_not` says why
and `auto` picks the next backend (flex). Extra dense tokens (text) are KV tiles of their own that every Q tile visits
after its box, in either token order: one kernel gives out and log-sum-exp over the union, with no second pass.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch

from ..ops.layout import TiledLayout
from ..ops.params import GNAParams
from ..ops.tiles import choose_tiles, tile_counts
from ..ops.inputs import GNAInputs
from .registry import Backend, register_backend

logger = logging.getLogger("gna_diffusers")

TILE_VOLUME = 128  # query rows per CTA and keys per KV tile of the compiled kernel
MAX_DIMS = 3
SUPPORTED_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
SUPPORTED_HEAD_DIMS = (64, 128)
# gna_diffusers/kernels links to the repository's kernels/ and is packaged as data, so wheels carry the sources
KERNELS_DIR = Path(os.environ.get("GNA_KERNELS_DIR", Path(__file__).resolve().parents[1] / "kernels"))
NVCC_FLAGS = ["-gencode=arch=compute_90a,code=sm_90a", "-std=c++17", "-O3", "-DNDEBUG", "--expt-relaxed-constexpr",
              # torch's extension flags hide the half/bfloat16 operators CUTLASS relies on
              "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__"]

# Build-time schedule variants of the kernel (kernels/gna_forward_sm90.cu): one Q tile per CTA, or one CTA per SM
# walking its tiles as one pipelined stream. The backend picks one per problem (`schedule_for`); setting SCHEDULE
# forces one (benchmarks, tests).
SCHEDULES = {"single": ["-DGNA_ONE_TILE_PER_CTA"], "persistent": []}
SCHEDULE: Optional[str] = None
# Cap on the CTAs a persistent build launches (None: one per SM); tests set it small so each CTA walks many tiles.
MAX_CTAS: Optional[int] = None

_build_lock = threading.Lock()
_extensions: dict[tuple[str, int, str], object] = {}
_build_errors: dict[tuple[str, int, str], str] = {}


def cache_dir() -> Path:
    """Where built extensions live: $GNA_KERNEL_CACHE, else ~/.cache/gna_diffusers/<torch>-cu<cuda>."""
    if "GNA_KERNEL_CACHE" in os.environ:
        return Path(os.environ["GNA_KERNEL_CACHE"])
    tag = f"torch{torch.__version__.split('+')[0]}-cu{torch.version.cuda or 'none'}"
    return Path.home() / ".cache" / "gna_diffusers" / tag


def cutlass_paths() -> Optional[tuple[Path, Path]]:
    """(CUTLASS include dir, 88_hopper_fmha example dir) from the installed nvidia-cutlass wheel, or None."""
    spec = importlib.util.find_spec("cutlass_library")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(list(spec.submodule_search_locations)[0]) / "source"
    include, example = source / "include", source / "examples" / "88_hopper_fmha"
    if not (include / "cute").is_dir() or not (example / "collective").is_dir():
        return None
    return include, example


def toolchain_problem() -> Optional[str]:
    """Why no kernel can be built here (no nvcc, ninja, CUTLASS headers or kernel sources), else None."""
    from torch.utils.cpp_extension import CUDA_HOME
    if torch.version.cuda is None:
        return "this torch build has no CUDA"
    if CUDA_HOME is None or shutil.which(os.path.join(CUDA_HOME, "bin", "nvcc")) is None:
        return "nvcc not found (set CUDA_HOME)"
    if shutil.which("ninja") is None:
        return "ninja not found"
    if cutlass_paths() is None:
        return "nvidia-cutlass headers and the 88_hopper_fmha example not found (pip install nvidia-cutlass)"
    if not (KERNELS_DIR / "gna_forward_sm90.cu").is_file():
        return f"kernel sources not found in {KERNELS_DIR} (set GNA_KERNELS_DIR)"
    return None


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """A short hash of every kernel source, so a cached build of older sources is never loaded."""
    digest = hashlib.sha1()
    for path in sorted(KERNELS_DIR.iterdir()):
        if path.suffix in (".cu", ".cpp", ".h", ".hpp"):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def build_extension(dtype_name: str, head_dim: int, verbose: bool = False, schedule: Optional[str] = None):
    """Build (or load from the cache) the extension of one configuration; raises on failure."""
    from torch.utils import cpp_extension
    schedule = schedule or SCHEDULE or "single"
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}; allowed: {', '.join(SCHEDULES)}")
    include, example = cutlass_paths()
    name = f"gna_cutlass_sm90_{dtype_name}_d{head_dim}_{schedule}_{sources_digest()}"
    build_dir = cache_dir() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    flags = (NVCC_FLAGS + SCHEDULES[schedule] + [f"-DGNA_HEAD_DIM={head_dim}"]
             + (["-DGNA_ELEMENT_BF16"] if dtype_name == "bfloat16" else []))
    previous = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0a"  # keep torch from adding a plain sm_90 pass (no wgmma there)
    try:
        return cpp_extension.load(
            name=name, sources=[str(KERNELS_DIR / "gna_binding.cpp"), str(KERNELS_DIR / "gna_forward_sm90.cu")],
            extra_include_paths=[str(KERNELS_DIR), str(include), str(example)], extra_cflags=["-O2", "-std=c++17"],
            extra_cuda_cflags=flags, build_directory=str(build_dir), verbose=verbose)
    finally:
        if previous is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = previous


def extension(dtype_name: str, head_dim: int, schedule: str):
    """The loaded extension, building it on first use; None (with the reason in `_build_errors`) if it fails."""
    key = (dtype_name, head_dim, schedule)
    with _build_lock:
        if key not in _extensions and key not in _build_errors:
            problem = toolchain_problem()
            if problem is None:
                try:
                    logger.info("loading the cutlass GNA kernel %s d%d %s (built on first use)", *key)
                    _extensions[key] = build_extension(dtype_name, head_dim, schedule=schedule)
                except Exception as err:  # a failed build must fall back, never crash the caller
                    problem = f"kernel build failed: {str(err).strip().splitlines()[-1] if str(err) else err!r}"
            if problem is not None:
                _build_errors[key] = problem
                logger.warning("cutlass GNA backend unavailable (%s); falling back to the next backend", problem)
        return _extensions.get(key)


# ---- layout: cached gather indices (the permute in and out is one index_select each) --------------------------

@functools.lru_cache(maxsize=64)
def _layout_indices(grid: tuple[int, ...], tile: tuple[int, ...], dilation: tuple[int, ...],
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(tiled position -> row-major token, padding -> token 0; row-major token -> tiled position)."""
    layout = TiledLayout.make(grid, tile, dilation)
    coords = layout.coordinates()
    valid = (coords < torch.tensor(grid)).all(dim=1)
    token = torch.zeros(len(coords), dtype=torch.int64)
    for i, length in enumerate(grid):
        token = token * length + coords[:, i].clamp(max=length - 1)
    gather = torch.where(valid, token, torch.zeros_like(token))
    scatter = torch.empty(layout.tokens, dtype=torch.int64)
    scatter[token[valid]] = torch.nonzero(valid).squeeze(1)
    return gather.to(device), scatter.to(device)


class Plan(NamedTuple):
    """The tilings of a problem's queries and keys/values, and the kernel's flat tile parameters."""

    q_layout: TiledLayout
    kv_layout: TiledLayout
    flat: tuple[int, ...]  # 9 rows of MAX_DIMS ints, dims padded at the front (kernels/gna_binding.cpp)


@functools.lru_cache(maxsize=256)
def _plan(params: GNAParams) -> Plan:
    q_tile, kv_tile = choose_tiles(params, TILE_VOLUME)
    q_layout = TiledLayout.make(params.grid, q_tile, params.dilation)
    kv_layout = TiledLayout.make(params.grid, kv_tile, params.dilation)
    pad = MAX_DIMS - params.ndim

    def row(values, fill):
        return (fill,) * pad + tuple(int(v) for v in values)

    def tiling(layout: TiledLayout) -> tuple[int, ...]:
        return row((t.bit_length() - 1 for t in layout.tile), 0) + row(layout.tiles_per_dim, 1)

    flat = (row(params.grid, 1) + row(params.window, 1) + row(params.stride, 1) + row(params.dilation, 1)
            + row(params.causal, 0) + tiling(q_layout) + tiling(kv_layout))
    return Plan(q_layout, kv_layout, flat)


@functools.lru_cache(maxsize=256)
def _schedule_by_tiles(params: GNAParams) -> str:
    plan = _plan(params)
    visited, unmasked = tile_counts(params, plan.q_layout, plan.kv_layout)
    return "persistent" if visited == unmasked else "single"


def schedule_for(params: GNAParams) -> str:
    """Persistent CTAs when every visited KV tile is unmasked (fully block-sparse or dense: all tiles cost the same,
    and the stream across tiles hides each tile's start and end: 1-4% on the shipped recipes); one tile per CTA when
    masked border tiles make tiles cost different amounts, which the hardware's CTA scheduling balances (7-10% at
    stride 1; H100 measurements in bench/results/attention_cutlass_*)."""
    return SCHEDULE or _schedule_by_tiles(params)


def _to_tiled(x: torch.Tensor, layout: TiledLayout) -> torch.Tensor:
    if layout.is_identity:
        return x.contiguous()
    gather, _ = _layout_indices(layout.grid, layout.tile, layout.dilation, x.device)
    return x.index_select(1, gather)


def _from_tiled(y: torch.Tensor, layout: TiledLayout, dim: int = 1) -> torch.Tensor:
    if layout.is_identity:
        return y
    _, scatter = _layout_indices(layout.grid, layout.tile, layout.dilation, y.device)
    return y.index_select(dim, scatter)


def _natural(params: GNAParams) -> bool:
    """The kernel reads the model's token order directly unless a dilation splits the grid into groups."""
    return all(d == 1 for d in params.dilation)


class ExtraTokens(NamedTuple):
    """Extra (text) tokens as the kernel takes them: each batch entry's valid tokens first."""

    key: torch.Tensor     # [B, M, H, D], contiguous
    value: torch.Tensor   # [B, M, H, D], contiguous
    counts: torch.Tensor  # int32 [B]: valid tokens per batch entry


@functools.lru_cache(maxsize=16)
def _all_valid(batch: int, tokens: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), tokens, dtype=torch.int32, device=device)


def extra_tokens(inputs: GNAInputs) -> Optional[ExtraTokens]:
    """The inputs' extra tokens for the kernel, None without any.

    Without a mask they go as they are. With one, a stable sort of the mask and one gather each of keys and values
    move every batch entry's valid tokens to the front, a few microseconds; skipping that for a prefix mask would
    first need the mask on the host, a device-to-host sync that costs more than the gather."""
    key, value, mask = inputs.extra_key, inputs.extra_value, inputs.extra_mask
    if key is None or key.shape[1] == 0:
        return None
    batch, tokens = key.shape[:2]
    if mask is None:
        return ExtraTokens(key.contiguous(), value.contiguous(), _all_valid(batch, tokens, key.device))
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices  # valid first, each group in order
    rows = (order + torch.arange(0, batch * tokens, tokens, device=key.device)[:, None]).flatten()

    def compact(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(batch * tokens, *x.shape[2:]).index_select(0, rows).view(x.shape)

    return ExtraTokens(compact(key), compact(value), mask.sum(1, dtype=torch.int32))


def _kernel_call(inputs: GNAInputs, flat: tuple[int, ...], natural: bool) -> Callable:
    """A function (q, k, v[, out, lse, extra]) -> (out [B, N, H, D], lse [B, H, N]): the kernel alone, tokens in
    the grid's order (`natural`) or tiled, every query also seeing the `extra` tokens' valid keys."""
    ext = extension(SUPPORTED_DTYPES[inputs.query.dtype], inputs.head_dim, schedule_for(inputs.params))
    flat_list = list(flat)

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: Optional[torch.Tensor] = None,
            lse: Optional[torch.Tensor] = None, extra: Optional[ExtraTokens] = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        if out is None:
            out = torch.empty_like(q)
        if lse is None:
            lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], device=q.device, dtype=torch.float32)
        ext.forward(q, k, v, out, lse, flat_list, inputs.scale, natural, *(extra or (None, None, None)),
                    MAX_CTAS or 0, torch.cuda.current_stream(q.device).cuda_stream)
        return out, lse

    return run


def _kernel_inputs(inputs: GNAInputs, plan: Plan, natural: bool) -> tuple[torch.Tensor, ...]:
    """q, k, v in the token order the kernel is called with."""
    if natural:
        return inputs.query.contiguous(), inputs.key.contiguous(), inputs.value.contiguous()
    return (_to_tiled(inputs.query, plan.q_layout), _to_tiled(inputs.key, plan.kv_layout),
            _to_tiled(inputs.value, plan.kv_layout))


def cutlass_forward(inputs: GNAInputs) -> tuple[torch.Tensor, torch.Tensor]:
    plan = _plan(inputs.params)
    natural = _natural(inputs.params)
    out, lse = _kernel_call(inputs, plan.flat, natural)(*_kernel_inputs(inputs, plan, natural),
                                                        extra=extra_tokens(inputs))
    if not natural:
        out, lse = _from_tiled(out, plan.q_layout), _from_tiled(lse, plan.q_layout, dim=2)
    return out, lse.transpose(1, 2)


def kernel_only(inputs: GNAInputs) -> Callable[[], object]:
    """A closure running the kernel alone (inputs already tiled where the kernel needs the tiled layout, extra tokens
    already compacted), for benchmarks."""
    plan = _plan(inputs.params)
    natural = _natural(inputs.params)
    run = _kernel_call(inputs, plan.flat, natural)
    q, k, v = _kernel_inputs(inputs, plan, natural)
    extra = extra_tokens(inputs)
    return lambda: run(q, k, v, extra=extra)


def _is_hopper(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) == (9, 0)


def _unsupported(inputs: GNAInputs) -> Optional[str]:
    """Why the kernel cannot take these inputs at all (device, dtype, head_dim, alignment), else None."""
    if not _is_hopper(inputs.device):
        return f"needs a CUDA GPU of compute capability 9.0 (Hopper); inputs are on {inputs.device}"
    if inputs.query.dtype not in SUPPORTED_DTYPES:
        return f"dtype {inputs.query.dtype}; the kernel takes bfloat16 or float16"
    if inputs.head_dim not in SUPPORTED_HEAD_DIMS:
        return f"head_dim={inputs.head_dim}; compiled for {SUPPORTED_HEAD_DIMS}"
    if inputs.query.shape[2] * inputs.head_dim * inputs.query.element_size() % 16:
        return "heads * head_dim * element size must be a multiple of 16 bytes (TMA)"
    return None


def _why_not(inputs: GNAInputs) -> Optional[str]:
    reason = _unsupported(inputs)
    if reason is not None:
        return reason
    key = (SUPPORTED_DTYPES[inputs.query.dtype], inputs.head_dim, schedule_for(inputs.params))
    if extension(*key) is None:
        return _build_errors[key]
    return None


def _precheck(inputs: GNAInputs) -> Optional[str]:
    """`_why_not` without building: the inputs, then the toolchain a build (or loading a cached build) needs."""
    return _unsupported(inputs) or toolchain_problem()


register_backend(Backend("cutlass", cutlass_forward, _why_not,
                         priority=lambda device: 30 if _is_hopper(device) else -1, precheck=_precheck))
