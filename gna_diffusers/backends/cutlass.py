"""GNA through our compiled CUTLASS kernels: Hopper (sm90a, kernels/gna_forward_sm90.cu) and Blackwell (sm100a,
kernels/gna_forward_sm100.cu).

Each 128-token Q tile (a box of the grid, ops/tiles.py) visits only the box of 128-token KV tiles (boxes of a shape of
their own, chosen per problem) covering its queries' windows and masks only partially covered tiles. The Hopper kernel
reads and writes the model's own token order ([B, N, H, D], row-major grid) through multi-dimensional TMA boxes, so
there is no permute at all; with dilation a tile is a box of its dilation group, a strided sub-grid, read with TMA
element strides where those boxes fit TMA (`strided_boxes_fit`). Other dilated problems (and every dilated one on
sm100a, or with DILATION_GATHER) run on the tiled layout (ops/layout.py), permuted in and out by one gather each.
Each (arch, dtype, head_dim, schedule) configuration is its own extension, built by ninja on first use (or ahead of
time by `gna-diffusers build-kernels`) into a cache directory, with the compiler
`toolchain.find_toolchain()` finds (a CUDA toolkit, else nvcc from PyPI).
Nothing is compiled at import. Without nvcc, CUTLASS headers or a compute-capability-9.0/10.0 GPU, `why_not` says why
and `auto` picks the next backend (flex). The sm100a kernel has been compiled and its SASS checked, never run here: on
a B200 it is used only after its first-use self-check against the reference backend passes (selfcheck.py). Extra dense
tokens (text) are KV tiles of their own that every Q tile of the Hopper kernel visits after its box, in either
token order: one kernel gives out and log-sum-exp over the union; the sm100a kernel takes them as a second pass (flash
SDPA over the valid extra keys) merged by log-sum-exp.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch

from ..ops.inputs import GNAInputs
from ..ops.layout import TiledLayout
from ..ops.merge import merge_attention
from ..ops.params import GNAParams
from ..ops.tiles import choose_tiles, tile_counts
from . import selfcheck, toolchain
from .registry import Backend, register_backend

logger = logging.getLogger("gna_diffusers")

TILE_VOLUME = 128  # query rows per CTA and keys per KV tile of the compiled kernel
MAX_DIMS = 3
SUPPORTED_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
SUPPORTED_HEAD_DIMS = (64, 128)
# gna_diffusers/kernels links to the repository's kernels/ and is packaged as data, so wheels carry the sources
KERNELS_DIR = Path(os.environ.get("GNA_KERNELS_DIR", Path(__file__).resolve().parents[1] / "kernels"))
COMMON_NVCC_FLAGS = ["-std=c++17", "-O3", "-DNDEBUG", "--expt-relaxed-constexpr",
                     # torch's extension flags hide the half/bfloat16 operators CUTLASS relies on
                     "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                     "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__"]


class Arch(NamedTuple):
    """One architecture's kernel: what it is compiled for and from."""

    capability: tuple[int, int]  # the devices it runs on
    gencode: str                 # nvcc's target ("a": the architecture-specific wgmma / tcgen05 instructions)
    torch_arch: str              # TORCH_CUDA_ARCH_LIST during the build, so torch adds no plain pass without them
    example: str                 # the CUTLASS example whose collective headers it includes
    binding: str                 # the torch binding's source
    kernel: str                  # the kernel's translation unit (compiled without torch in CI)
    schedules: tuple[str, ...]   # the build-time schedules it has (SCHEDULES)


ARCHS = {
    "sm90a": Arch((9, 0), "-gencode=arch=compute_90a,code=sm_90a", "9.0a", "88_hopper_fmha", "gna_binding.cpp",
                  "gna_forward_sm90.cu", ("single", "persistent")),
    "sm100a": Arch((10, 0), "-gencode=arch=compute_100a,code=sm_100a", "10.0a", "77_blackwell_fmha",
                   "gna_binding_sm100.cpp", "gna_forward_sm100.cu", ("single", "persistent")),
}

# Build-time schedule variants of both architectures' kernels: one Q tile per CTA, or one CTA per SM walking its tiles
# as one pipelined stream (kernels/gna_tile_schedule.hpp). The backend picks one per problem (`schedule_for`); setting
# SCHEDULE forces one (benchmarks, tests).
SCHEDULES = {"single": ["-DGNA_ONE_TILE_PER_CTA"], "persistent": []}
SCHEDULE: Optional[str] = None
# Cap on the CTAs a persistent build launches (None: one per SM); tests set it small so each CTA walks many tiles.
MAX_CTAS: Optional[int] = None
# Forces dilated problems onto the gather into the tiled layout and back even where the Hopper kernel could read them
# in place (A/B runs: GNA_DILATION_GATHER=1).
DILATION_GATHER: bool = os.environ.get("GNA_DILATION_GATHER", "") == "1"
# What one TMA box may span per dimension, and its largest element stride (cuTensorMapEncodeTiled).
TMA_BOX_LIMIT = 256
TMA_STEP_LIMIT = 8
# The sm100a self-check's problems have fewer work tiles than a B200 has SMs: with its CTAs capped, each persistent
# CTA walks several tiles, so the check reaches the pipeline state carried from tile to tile.
SELFCHECK_MAX_CTAS = 3

_build_lock = threading.Lock()
ExtensionKey = tuple[str, str, int, str]  # (arch, dtype name, head_dim, schedule)
_extensions: dict[ExtensionKey, object] = {}
_build_errors: dict[ExtensionKey, str] = {}


def cache_dir() -> Path:
    """Where built extensions live: $GNA_KERNEL_CACHE, else ~/.cache/gna_diffusers/<torch>-cu<cuda>."""
    if "GNA_KERNEL_CACHE" in os.environ:
        return Path(os.environ["GNA_KERNEL_CACHE"])
    tag = f"torch{torch.__version__.split('+')[0]}-cu{torch.version.cuda or 'none'}"
    return Path.home() / ".cache" / "gna_diffusers" / tag


def cutlass_paths(arch: str = "sm90a") -> Optional[tuple[Path, Path]]:
    """(CUTLASS include dir, the arch's FMHA example dir) from the installed nvidia-cutlass wheel, or None."""
    source = toolchain.cutlass_source()
    if source is None:
        return None
    example = source / "examples" / ARCHS[arch].example
    return (source / "include", example) if (example / "collective").is_dir() else None


def kernel_problem(arch: str = "sm90a") -> Optional[str]:
    """Why the kernel translation unit of `arch` cannot be compiled here (no nvcc, CUTLASS headers or sources)."""
    problem = toolchain.toolchain_problem()
    if problem is not None:
        return problem
    if cutlass_paths(arch) is None:
        return (f"nvidia-cutlass headers and the {ARCHS[arch].example} example not found "
                "(pip install nvidia-cutlass)")
    if not (KERNELS_DIR / ARCHS[arch].kernel).is_file():
        return f"kernel sources not found in {KERNELS_DIR} (set GNA_KERNELS_DIR)"
    return None


def toolchain_problem(arch: str = "sm90a") -> Optional[str]:
    """Why no kernel extension can be built here (a CPU-only torch, no nvcc, ninja, headers or sources), else None."""
    if torch.version.cuda is None:
        return "this torch build has no CUDA (the kernel's torch binding needs a CUDA build of torch)"
    if shutil.which("ninja") is None:
        return "ninja not found (pip install ninja)"
    return kernel_problem(arch)


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """A short hash of every kernel source, so a cached build of older sources is never loaded."""
    digest = hashlib.sha1()
    for path in sorted(KERNELS_DIR.iterdir()):
        if path.suffix in (".cu", ".cpp", ".h", ".hpp"):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def kernel_flags(arch: str, dtype_name: str, head_dim: int, schedule: str) -> list[str]:
    """nvcc flags of one configuration (without include paths)."""
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r}; allowed: {', '.join(ARCHS)}")
    if schedule not in ARCHS[arch].schedules:
        raise ValueError(f"schedule={schedule!r} for {arch}; allowed: {', '.join(ARCHS[arch].schedules)}")
    if dtype_name not in SUPPORTED_DTYPES.values():
        raise ValueError(f"dtype={dtype_name!r}; allowed: {', '.join(SUPPORTED_DTYPES.values())}")
    if head_dim not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"head_dim={head_dim}; allowed: {SUPPORTED_HEAD_DIMS}")
    return ([ARCHS[arch].gencode] + COMMON_NVCC_FLAGS + SCHEDULES[schedule] + [f"-DGNA_HEAD_DIM={head_dim}"]
            + (["-DGNA_ELEMENT_BF16"] if dtype_name == "bfloat16" else []))


def build_prefix(arch: str) -> str:
    """Build folder prefix of an architecture (sm90a keeps its first name so existing caches stay valid)."""
    return "gna_cutlass_sm90" if arch == "sm90a" else f"gna_cutlass_{arch}"


def build_extension(dtype_name: str, head_dim: int, verbose: bool = False, schedule: Optional[str] = None,
                    arch: str = "sm90a"):
    """Build (or load from the cache) the extension of one configuration; raises on failure.

    The compiler is `toolchain.find_toolchain()`'s (a system toolkit, else nvcc from PyPI); processes building the
    same configuration at once take turns (`toolchain.locked_build`)."""
    from torch.utils import cpp_extension
    schedule = schedule or SCHEDULE or "single"
    flags = kernel_flags(arch, dtype_name, head_dim, schedule)
    chain = toolchain.find_toolchain()
    if chain is None:
        raise RuntimeError(toolchain.toolchain_problem())
    include, example = cutlass_paths(arch)
    name = f"{build_prefix(arch)}_{dtype_name}_d{head_dim}_{schedule}_{sources_digest()}"
    build_dir = cache_dir() / name
    link_dir = toolchain.cudart_link_dir(chain, cache_dir())

    def build():
        previous = os.environ.get("TORCH_CUDA_ARCH_LIST")
        os.environ["TORCH_CUDA_ARCH_LIST"] = ARCHS[arch].torch_arch
        try:
            with toolchain.torch_cuda_home(chain):
                return cpp_extension.load(
                    name=name, sources=[str(KERNELS_DIR / ARCHS[arch].binding), str(KERNELS_DIR / ARCHS[arch].kernel)],
                    extra_include_paths=[str(KERNELS_DIR), str(include), str(example)],
                    extra_cflags=["-O2", "-std=c++17"], extra_cuda_cflags=flags,
                    extra_ldflags=[f"-L{link_dir}"] if link_dir else None, build_directory=str(build_dir),
                    verbose=verbose)
        finally:
            if previous is None:
                os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
            else:
                os.environ["TORCH_CUDA_ARCH_LIST"] = previous

    return toolchain.locked_build(build_dir, build)


def arch_of(device: torch.device) -> Optional[str]:
    """The kernel architecture of a CUDA device (sm90a, sm100a), None for other devices."""
    if device.type != "cuda":
        return None
    return _arch_of_index(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _arch_of_index(index: int) -> Optional[str]:
    """Cached: a call asks several times (selection, plan, launch), and reading the capability costs microseconds."""
    capability = torch.cuda.get_device_capability(index)
    return next((name for name, arch in ARCHS.items() if arch.capability == capability), None)


def extension(dtype_name: str, head_dim: int, schedule: str, arch: str = "sm90a"):
    """The loaded extension, building it on first use; None (with the reason in `_build_errors`) if it fails."""
    key = (arch, dtype_name, head_dim, schedule)
    ext = _extensions.get(key)  # loaded already: no lock on the per-call path
    if ext is not None:
        return ext
    with _build_lock:
        if key not in _extensions and key not in _build_errors:
            problem = toolchain_problem(arch)
            if problem is None:
                try:
                    logger.info("loading the cutlass GNA kernel %s %s d%d %s (built on first use)", *key)
                    _extensions[key] = build_extension(dtype_name, head_dim, schedule=schedule, arch=arch)
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
    """(tiled position -> row-major token, padding -> token 0; row-major token -> tiled position).

    Cached on the device, so a configuration's first call must not be the one a CUDA graph captures (the copy from
    the host cannot be captured) nor run inside torch.compile's CUDA-graph warm-up (the cached tensors would sit in
    the graphs' private memory pool): warm up eagerly first. Only dilated problems on the gather path use them."""
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
    """The kernel schedule for a problem, on either architecture: persistent CTAs when every visited KV tile is
    unmasked (fully block-sparse or dense: all tiles cost the same, and the stream across tiles hides each tile's start
    and end: 1-4% on the shipped recipes); one tile per CTA when masked border tiles make tiles cost different
    amounts, which the hardware's CTA scheduling balances (7-10% at stride 1). Measured on H100
    (bench/results/attention_cutlass_*); the sm100a kernel follows the same rule unmeasured (no B200 here)."""
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


def strided_boxes_fit(plan: Plan, dilation: tuple[int, ...]) -> bool:
    """Whether TMA can load a dilated problem's tiles from the model's token order: a tile of side t spans t * d grid
    positions taken with element stride d (kernels/gna_token_view.hpp, TokenView::fits_tma)."""
    return all(d <= TMA_STEP_LIMIT and max(q, kv) * d <= TMA_BOX_LIMIT
               for q, kv, d in zip(plan.q_layout.tile, plan.kv_layout.tile, dilation))


def _natural(params: GNAParams, arch: Optional[str]) -> bool:
    """Whether the kernel of `arch` runs on the model's token order in place: always with dilation 1; with dilation on
    the Hopper kernel where the strided boxes fit, unless DILATION_GATHER (sm100a gathers dilated problems)."""
    if all(d == 1 for d in params.dilation):
        return True
    return arch == "sm90a" and not DILATION_GATHER and strided_boxes_fit(_plan(params), params.dilation)


class ExtraTokens(NamedTuple):
    """Extra (text) tokens as the kernel takes them: each batch entry's valid tokens first."""

    key: torch.Tensor     # [B, M, H, D], contiguous
    value: torch.Tensor   # [B, M, H, D], contiguous
    counts: torch.Tensor  # int32 [B]: valid tokens per batch entry


def extra_tokens(inputs: GNAInputs) -> Optional[ExtraTokens]:
    """The inputs' extra tokens for the kernel, None without any.

    Without a mask they go as they are. With one, a stable sort of the mask and one gather each of keys and values
    move every batch entry's valid tokens to the front, a few microseconds; skipping that for a prefix mask would
    first need the mask on the host, a device-to-host sync that costs more than the gather (and that no CUDA graph
    can capture)."""
    key, value, mask = inputs.extra_key, inputs.extra_value, inputs.extra_mask
    if key is None or key.shape[1] == 0:
        return None
    batch, tokens = key.shape[:2]
    if mask is None:
        # made per call, not cached: a cached tensor first made inside a CUDA graph capture would be filled only by
        # replays, and one made in torch.compile's CUDA-graph warm-up would sit in the graphs' private memory pool
        counts = torch.full((batch,), tokens, dtype=torch.int32, device=key.device)
        return ExtraTokens(key.contiguous(), value.contiguous(), counts)
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices  # valid first, each group in order
    rows = (order + torch.arange(0, batch * tokens, tokens, device=key.device)[:, None]).flatten()

    def compact(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(batch * tokens, *x.shape[2:]).index_select(0, rows).view(x.shape)

    return ExtraTokens(compact(key), compact(value), mask.sum(1, dtype=torch.int32))


def _kernel_call(inputs: GNAInputs, flat: tuple[int, ...], natural: bool, schedule: Optional[str] = None,
                 max_ctas: Optional[int] = None) -> Callable:
    """A function (q, k, v[, out, lse, extra]) -> (out [B, N, H, D], lse [B, H, N]): the kernel alone (`schedule`,
    else `schedule_for`'s; a persistent build's CTAs capped at `max_ctas`, else MAX_CTAS), tokens in the grid's order
    (`natural`) or tiled, every query also seeing the `extra` tokens' valid keys."""
    arch = arch_of(inputs.device)
    ext = extension(SUPPORTED_DTYPES[inputs.query.dtype], inputs.head_dim, schedule or schedule_for(inputs.params),
                    arch)
    max_ctas = max_ctas or MAX_CTAS or 0
    flat_list = list(flat)

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: Optional[torch.Tensor] = None,
            lse: Optional[torch.Tensor] = None, extra: Optional[ExtraTokens] = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        if out is None:
            out = torch.empty_like(q)
        if lse is None:
            lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], device=q.device, dtype=torch.float32)
        in_kernel = (*(extra or (None, None, None)),) if arch == "sm90a" else ()   # sm100a: no extra-token inputs
        ext.forward(q, k, v, out, lse, flat_list, inputs.scale, natural, *in_kernel, max_ctas,
                    torch.cuda.current_stream(q.device).cuda_stream)
        return out, lse

    return run


def _kernel_inputs(inputs: GNAInputs, plan: Plan, natural: bool) -> tuple[torch.Tensor, ...]:
    """q, k, v in the token order the kernel is called with."""
    if natural:
        return inputs.query.contiguous(), inputs.key.contiguous(), inputs.value.contiguous()
    return (_to_tiled(inputs.query, plan.q_layout), _to_tiled(inputs.key, plan.kv_layout),
            _to_tiled(inputs.value, plan.kv_layout))


def extra_attention(query: torch.Tensor, extra_key: torch.Tensor, extra_value: torch.Tensor,
                    extra_mask: Optional[torch.Tensor], scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense attention of every query over the valid extra tokens alone, (out [B, N, H, D], lse [B, N, H] fp32), for
    the sm100a kernel, which has no extra-token path of its own yet.

    Flash SDPA per batch element over that element's valid extra keys (a row with none gets out 0, lse -inf)."""
    def flash(q, k, v):
        res = torch.ops.aten._scaled_dot_product_flash_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 0.0, False, False, scale=scale)
        return res[0].transpose(1, 2), res[1].float().transpose(1, 2)

    if extra_mask is None:
        return flash(query, extra_key, extra_value)
    outs, lses = [], []
    for b in range(query.shape[0]):
        keep = torch.nonzero(extra_mask[b]).squeeze(1)
        if keep.numel() == 0:
            outs.append(torch.zeros_like(query[b:b + 1]))
            lses.append(torch.full((1, *query.shape[1:3]), -math.inf, device=query.device))
            continue
        o, lse = flash(query[b:b + 1], extra_key[b:b + 1, keep], extra_value[b:b + 1, keep])
        outs.append(o)
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def cutlass_forward(inputs: GNAInputs, schedule: Optional[str] = None,
                    max_ctas: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """GNA through the kernel (`schedule` and `max_ctas`: see _kernel_call), with the extra tokens."""
    plan = _plan(inputs.params)
    arch = arch_of(inputs.device)
    natural = _natural(inputs.params, arch)
    in_kernel = arch == "sm90a"
    run = _kernel_call(inputs, plan.flat, natural, schedule, max_ctas)
    out, lse = run(*_kernel_inputs(inputs, plan, natural), extra=extra_tokens(inputs) if in_kernel else None)
    if not natural:
        out, lse = _from_tiled(out, plan.q_layout), _from_tiled(lse, plan.q_layout, dim=2)
    lse = lse.transpose(1, 2)
    if not in_kernel and inputs.extra_key is not None:
        out_x, lse_x = extra_attention(inputs.query, inputs.extra_key, inputs.extra_value, inputs.extra_mask,
                                       inputs.scale)
        out, lse = merge_attention(out, lse, out_x, lse_x)
    return out, lse


def kernel_only(inputs: GNAInputs) -> Callable[[], object]:
    """A closure running the kernel alone (inputs already tiled where the kernel needs the tiled layout, extra tokens
    already compacted), for benchmarks."""
    plan = _plan(inputs.params)
    natural = _natural(inputs.params, arch_of(inputs.device))
    run = _kernel_call(inputs, plan.flat, natural)
    q, k, v = _kernel_inputs(inputs, plan, natural)
    extra = extra_tokens(inputs)
    return lambda: run(q, k, v, extra=extra)


def _selfcheck_problem(inputs: GNAInputs, schedule: str) -> Optional[str]:
    """The sm100a kernel is compiled and its SASS checked here, but never run on this project's machines (no B200):
    on first use per device each build (schedule) must agree with the reference backend on every self-check problem
    (selfcheck.py), else `auto` stays on flex."""
    from .reference import reference_forward
    dtype, head_dim = inputs.query.dtype, inputs.head_dim
    key = selfcheck.verdict_key(inputs.device, sources_digest(), dtype, head_dim, schedule)
    max_ctas = SELFCHECK_MAX_CTAS if schedule == "persistent" else None

    def kernel(problem: GNAInputs) -> tuple[torch.Tensor, torch.Tensor]:
        return cutlass_forward(problem, schedule, max_ctas)

    label = f"the sm100a cutlass GNA kernel ({SUPPORTED_DTYPES[dtype]} d{head_dim} {schedule})"
    return selfcheck.check(cache_dir() / "selfcheck.json", key, kernel, reference_forward, inputs.device, dtype,
                           head_dim, label)


def unsupported_query(query: torch.Tensor) -> Optional[str]:
    """Why the kernel cannot take a [B, S, H, D] query at all (device, dtype, head_dim, alignment), else None:
    judged from the tensor alone, so callers that hold no GNAInputs (the dense-step choice) ask the same question."""
    if arch_of(query.device) is None:
        return (f"needs a CUDA GPU of compute capability 9.0 (Hopper) or 10.0 (Blackwell B200/GB200); inputs are on "
                f"{query.device}")
    if query.dtype not in SUPPORTED_DTYPES:
        return f"dtype {query.dtype}; the kernel takes bfloat16 or float16"
    head_dim = query.shape[-1]
    if head_dim not in SUPPORTED_HEAD_DIMS:
        return f"head_dim={head_dim}; compiled for {SUPPORTED_HEAD_DIMS}"
    if query.shape[2] * head_dim * query.element_size() % 16:
        return "heads * head_dim * element size must be a multiple of 16 bytes (TMA)"
    return None


def _why_not(inputs: GNAInputs) -> Optional[str]:
    reason = unsupported_query(inputs.query)
    if reason is not None:
        return reason
    arch = arch_of(inputs.device)
    key = (arch, SUPPORTED_DTYPES[inputs.query.dtype], inputs.head_dim, schedule_for(inputs.params))
    if extension(*key[1:], arch=arch) is None:
        return _build_errors[key]
    if arch == "sm100a":
        return _selfcheck_problem(inputs, key[3])
    return None


def _precheck(inputs: GNAInputs) -> Optional[str]:
    """`_why_not` without building: the inputs, then the toolchain a build (or loading a cached build) needs."""
    return unsupported_query(inputs.query) or toolchain_problem(arch_of(inputs.device))


register_backend(Backend("cutlass", cutlass_forward, _why_not,
                         priority=lambda device: 30 if arch_of(device) is not None else -1, precheck=_precheck))
