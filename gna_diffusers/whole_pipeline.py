"""The time a user clocks: a real `pipe(prompt)` call, every phase named, stock diffusers against GNA in one run.

Full-size pipelines are built from the published configs with random weights (text encoders, in-memory tokenizers,
scheduler, transformer, VAE), so they run where the weights cannot be downloaded; speed only, never fidelity. A few
steps of each kind are measured inside real pipeline calls; the total for the pipeline's default step count is the
measured phases added up: text encoding + each kind of step times its count + VAE decode + everything else in the
call. Both sides can get the same options: torch.compile, FP8 linears (torchao), a diffusers cache hook. A pipeline
whose weights would leave one GPU too little room for activations keeps its text encoder in host memory, streamed to
the GPU while it runs, on both sides; one that cannot fit at all is refused before anything is built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

import PIL.Image
import torch
from torch._dynamo.utils import counters
from diffusers.hooks import TaylorSeerCacheConfig
from diffusers.models.cache_utils import CacheMixin

from .errors import GPURequiredError, MissingPackageError
from .full_size import FULL_SIZE, build_random, random_module
from .pipeline import disable_gna, enable_gna, gna_state
from .recipe import Recipe, load_recipe
from .timing import environment

PROMPT = "a red fox trotting through fresh snow at golden hour, cinematic, shallow depth of field"


@dataclass(frozen=True)
class PipelineSpec:
    model: str                                   # recipe `model` key
    build: Callable[[torch.device, torch.dtype], object]   # the whole pipeline, random weights, on the device
    call_args: dict                              # the flagship resolution and the pipeline's own options
    steps: int                                   # the pipeline's default number of denoising steps
    recipe: Union[str, Mapping]                  # the recipe measured: a shipped name or a dict
    options: dict                                # what the record must say about how the pipeline ran
    # components kept in host memory and streamed to the GPU while they run (`stream_from_host`), on both sides
    offload: tuple[str, ...] = ()


# ---------------------------------------------------------------- caches

# Only caches whose compute-or-predict choice follows the step count: with random weights, a cache that compares
# activations with a threshold would decide on activations that say nothing about a real model's.
CACHES: dict[str, Callable[[], TaylorSeerCacheConfig]] = {
    # diffusers' documented TaylorSeer settings (its docs give them for FLUX.1-dev and none for video models), lite:
    # the full mode keeps two bf16 copies of every attention output, 85 GB for HunyuanVideo at 768x1280x117 (60
    # layers x 2 x 115200 x 3072 x 2 B) beside ~42 GB of models; lite keeps proj_out's output and skips the blocks
    "taylor_seer_lite": lambda: TaylorSeerCacheConfig(cache_interval=5, disable_cache_before_step=10, max_order=1,
                                                      taylor_factors_dtype=torch.bfloat16, use_lite_mode=True),
}


class _Attention(torch.nn.Module):
    """Counts the calls that really ran it (a cache hook may answer in its place)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.runs += 1
        return x


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = _Attention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


class _ScheduleProbe(torch.nn.Module, CacheMixin):
    """A DiT reduced to its module names (`transformer_blocks.0.attn`, `proj_out`): a cache config hooks it as it
    hooks the real transformer, and a call costs nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.transformer_blocks = torch.nn.ModuleList([_Block()])
        self.proj_out = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.transformer_blocks[0](x))


def cache_schedule(config: TaylorSeerCacheConfig, steps: int) -> list[bool]:
    """For each of `steps` denoising steps, whether the cache runs the transformer (True) or predicts it: diffusers'
    own hook on a stand-in, so no copy of its rule. Exact for TaylorSeer, whose hook decides from its count of calls
    alone, in pipelines that call the transformer once per step and cache context (those timed here)."""
    probe = _ScheduleProbe()
    probe.enable_cache(config)
    attention = probe.transformer_blocks[0].attn
    x = torch.zeros(1)
    computed = []
    for _ in range(steps):
        runs = attention.runs
        with probe.cache_context("cond"):
            probe(x)
        computed.append(attention.runs > runs)
    return computed


def measurement_config(config: TaylorSeerCacheConfig) -> TaylorSeerCacheConfig:
    """The cache with its warm-up cut to the fewest full steps after which a prediction uses every Taylor order, as
    predictions do in a full run: timed calls reach predicted steps without ten full steps first."""
    return dataclasses.replace(config, disable_cache_before_step=min(config.disable_cache_before_step,
                                                                     config.max_order + 1))


def step_kind(dense: bool, computed: bool) -> str:
    """dense | gna, with "-cached" where the cache predicted the step instead of running the transformer."""
    return ("dense" if dense else "gna") + ("" if computed else "-cached")


def _steps_holding(computed: Sequence[bool], start: int, count: int, cached: bool) -> int:
    """The end of the shortest stretch from step `start` holding `count` computed steps and, with a cache, `count`
    predicted ones."""
    done = predicted = 0
    for end in range(start, len(computed)):
        done += computed[end]
        predicted += not computed[end]
        if done >= count and (predicted >= count or not cached):
            return end + 1
    raise ValueError(f"the cache's first {len(computed)} steps hold no {count} computed and {count} predicted steps "
                     f"from step {start}")


# ---------------------------------------------------------------- FP8 linears (torchao)

OUTPUT_PROJECTION = "proj_out"     # diffusers' name for a DiT's last linear, the one that writes the prediction


def require_fp8(device: torch.device) -> None:
    """Raise GPURequiredError unless `device` is a CUDA GPU with FP8 tensor cores (compute capability 8.9 or newer),
    and MissingPackageError unless torchao imports."""
    found = None
    if not torch.cuda.is_available():
        found = f"no CUDA GPU (torch {torch.__version__})"
    elif device.type != "cuda":
        found = f"device {device}"
    elif torch.cuda.get_device_capability(device) < (8, 9):
        major, minor = torch.cuda.get_device_capability(device)
        found = f"{torch.cuda.get_device_name(device)}, compute capability {major}.{minor}"
    if found:
        raise GPURequiredError(f"--fp8: FP8 linears need a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper, "
                               f"Blackwell); found {found}")
    try:
        import torchao  # noqa: F401
    except Exception as err:  # not installed, or built for another torch
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise MissingPackageError(f"--fp8: needs torchao (pip install -e '.[fp8]'); importing it failed: {first}") \
            from err


def fp8_layers(transformer: torch.nn.Module) -> tuple[list[str], dict[str, list[str]]]:
    """(names of the linears FP8 takes, {why a linear stays in bf16: names})."""
    taken: list[str] = []
    kept: dict[str, list[str]] = {}
    for name, module in transformer.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if name == OUTPUT_PROJECTION:
            why = ("the output projection writes the prediction: kept in bf16, as torchao's module-swap quantizer "
                   "keeps a language model's output head, at a negligible share of the FLOPs")
        elif module.in_features % 16 or module.out_features % 16:
            why = "a dimension not a multiple of 16, which torch._scaled_mm needs (torchao would skip it silently)"
        else:
            taken.append(name)
            continue
        kept.setdefault(why, []).append(name)
    return taken, kept


def quantize_fp8(transformer: torch.nn.Module) -> dict:
    """FP8 weights and dynamically quantized FP8 activations with per-row scales (torchao) in the linears
    `fp8_layers` takes; returns what the record says about it."""
    import torchao
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Float8Tensor, PerRow, quantize_
    taken, kept = fp8_layers(transformer)
    names = set(taken)
    # activation_value_lb: an all-zero activation row (the tiny HunyuanVideo pipeline's text embeddings have one)
    # gets scale 0 and turns into NaN (0 / 0); 1e-12 is torchao's amax floor in float8 training (float8_utils.EPS)
    # set_inductor_config=False: torchao's inductor settings are process-wide and add coordinate-descent tuning,
    # which multiplies the compile time of both sides
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), activation_value_lb=1e-12,
                                                       set_inductor_config=False)
    quantize_(transformer, config, filter_fn=lambda module, name: name in names)
    quantized = sum(isinstance(module.weight, Float8Tensor) for name, module in transformer.named_modules()
                    if name in names)
    if quantized != len(taken):
        raise RuntimeError(f"torchao quantized {quantized} of the {len(taken)} linears given to it")
    return {"method": "torchao Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), "
                      "activation_value_lb=1e-12)",
            "torchao": torchao.__version__, "linears": quantized, "kept_in_bf16": kept}


# ---------------------------------------------------------------- memory

GIB = 2 ** 30
# Room a run needs beside the weights it keeps on the GPU, the largest activations among the pipelines timed here:
# HunyuanVideo 1.5's dense step builds an N x N boolean mask of 113,585^2 bytes (12 GiB) that SDPA turns into a bf16
# bias (24 GiB), with the step's other activations on top.
ACTIVATION_ROOM_GIB = 40


def weight_bytes(pipe) -> dict[str, int]:
    """Bytes of each model component's parameters and buffers, as built (a `meta` build costs no memory)."""
    return {name: sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers()))
            for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}


def require_memory(spec: PipelineSpec, weights: Mapping[str, int], total_bytes: int) -> None:
    """Raise GPURequiredError, before anything is built on the GPU, unless the spec's weights fit in `total_bytes`:
    all of them while the pipeline is built (offloaded components are built on the GPU, then moved to host memory),
    and those it keeps on the GPU with ACTIVATION_ROOM_GIB to spare while it runs."""
    built = sum(weights.values())
    resident = sum(size for name, size in weights.items() if name not in spec.offload)
    need = max(built, resident + ACTIVATION_ROOM_GIB * GIB)
    if need > total_bytes:
        kept = f"{resident / GIB:.1f} GiB of them kept on the GPU" + (
            f" ({', '.join(spec.offload)} streamed from host memory)" if spec.offload else "")
        raise GPURequiredError(
            f"{spec.model} whole pipeline: {built / GIB:.1f} GiB of bf16 weights, {kept}, need {need / GIB:.1f} GiB "
            f"with {ACTIVATION_ROOM_GIB} GiB for activations; this GPU has {total_bytes / GIB:.1f} GiB (use a GPU "
            f"with more memory, or offload more components in the spec)")


def stream_from_host(module: torch.nn.Module, device: torch.device) -> None:
    """Keep `module` in pinned host memory and stream each layer's weights to `device` as it runs, the next layer's
    copy overlapping the current layer's compute: diffusers' group offloading at leaf level, which needs no block
    structure, so it fits any transformers text encoder."""
    from diffusers.hooks import apply_group_offloading
    apply_group_offloading(module, onload_device=device, offload_device=torch.device("cpu"),
                           offload_type="leaf_level", use_stream=True)


# ---------------------------------------------------------------- timing

def _sm_clock_mhz() -> Optional[int]:
    """The GPU's SM clock over NVML's last sample period (a step slower than its twin at a lower clock was throttled,
    not changed); None without a GPU or without NVML's Python bindings."""
    if not torch.cuda.is_available():
        return None
    try:
        return torch.cuda.clock_rate()
    except Exception:   # nvidia-ml-py missing, or NVML unusable in this container
        return None


class PhaseTimer:
    """Times one pipeline call phase by phase (the GPU synchronised at every boundary).

    Text encoding is `encode_prompt`, the VAE phase is `vae.decode`, a step runs from its first transformer call to the
    pipeline's step-end callback, or its scheduler step where it takes no callback (so preparing latents and timesteps
    counts as `other`), and `other` is the whole call less the named phases. A step is labelled `step_kind(dense,
    computed)`: dense or gna from GNA's state in that step, computed from `computed` (the cache's schedule for this
    call; None: no cache, every step runs)."""

    def __init__(self, pipe, computed: Optional[Sequence[bool]] = None) -> None:
        self.pipe = pipe
        self.computed = computed
        self.text_s = self.vae_s = self.total_s = 0.0
        self.steps: list[tuple[str, float]] = []       # (kind, seconds) per denoising step
        self.memory: Optional[dict] = None             # the call's GPU memory peaks and allocator retries
        self.sm_clocks_mhz: list[Optional[int]] = []   # the SM clock NVML saw as each step ended
        self._step_start: Optional[float] = None

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def _timed(self, fn: Callable, phase: str) -> Callable:
        def run(*args, **kwargs):
            start = self._now()
            result = fn(*args, **kwargs)
            setattr(self, phase, getattr(self, phase) + self._now() - start)
            return result
        return run

    def _step_begins(self, module, args, kwargs) -> None:
        if self._step_start is None:
            self._step_start = self._now()

    def _step_ends(self) -> None:
        state = gna_state(self.pipe)
        kind = step_kind(state is None or state.dense_now, self.computed is None or self.computed[len(self.steps)])
        self.steps.append((kind, self._now() - self._step_start))
        self.sm_clocks_mhz.append(_sm_clock_mhz())
        self._step_start = None

    def step_end(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        """The pipeline's `callback_on_step_end`."""
        self._step_ends()
        return callback_kwargs

    def _ending_steps(self, step: Callable) -> Callable:
        def run(*args, **kwargs):
            out = step(*args, **kwargs)
            self._step_ends()
            return out
        return run

    def call(self, **kwargs):
        """Run `pipe(**kwargs)` with every phase timed; returns the pipeline's output."""
        pipe = self.pipe
        pipe.encode_prompt = self._timed(type(pipe).encode_prompt.__get__(pipe), "text_s")
        pipe.vae.decode = self._timed(type(pipe.vae).decode.__get__(pipe.vae), "vae_s")
        hook = pipe.transformer.register_forward_pre_hook(self._step_begins, with_kwargs=True)
        # a step ends at the step-end callback; HunyuanVideo 1.5 takes none, and ends each step with its one
        # scheduler step (Cosmos-1.0 makes two scheduler steps a step, so the callback wherever there is one)
        if "callback_on_step_end" in inspect.signature(type(pipe).__call__).parameters:
            kwargs = {**kwargs, "callback_on_step_end": self.step_end}
        else:
            pipe.scheduler.step = self._ending_steps(type(pipe.scheduler).step.__get__(pipe.scheduler))
        try:
            retries = self._memory_watch()
            start = self._now()
            out = pipe(**kwargs)
            self.total_s = self._now() - start
            self.memory = self._memory_seen(retries)
        finally:
            hook.remove()
            del pipe.encode_prompt, pipe.vae.decode       # the class methods show through again
            vars(pipe.scheduler).pop("step", None)
        return out

    @staticmethod
    def _memory_watch() -> int:
        """Start watching the GPU's memory peaks; returns the allocator's retries so far (0 without a GPU)."""
        if not torch.cuda.is_available():
            return 0
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_stats().get("num_alloc_retries", 0)

    @staticmethod
    def _memory_seen(retries: int) -> Optional[dict]:
        """The peaks since `_memory_watch` and the allocator's retries since then (each frees the cache and
        synchronises: a call near the memory limit slows down without any kernel changing); None without a GPU."""
        if not torch.cuda.is_available():
            return None
        return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
                "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 2),
                "alloc_retries": torch.cuda.memory_stats().get("num_alloc_retries", 0) - retries}

    @property
    def other_s(self) -> float:
        return self.total_s - self.text_s - self.vae_s - sum(s for _, s in self.steps)

    def median_step(self, kind: str) -> Optional[float]:
        times = [s for k, s in self.steps if k == kind]
        return statistics.median(times) if times else None


def compile_regionally(transformer: torch.nn.Module, fullgraph: bool = True) -> str:
    """diffusers' regional compilation: each repeated block class is compiled once and reused by every block, so a
    60-block transformer compiles in a fraction of the whole-model time at the same step speed; GNA processors live
    inside those blocks and must trace without a graph break (fullgraph; a cache hook wrapping each block breaks it,
    so not with one). Models without `_repeated_blocks` are compiled whole. Returns the setting, for the record."""
    if getattr(transformer, "_repeated_blocks", None):
        transformer.compile_repeated_blocks(fullgraph=fullgraph)
        return f"regional: transformer.compile_repeated_blocks(fullgraph={fullgraph}), default mode"
    transformer.compile()
    return "whole: transformer.compile(), default mode"


def _graphs_compiled() -> int:
    """How many graphs torch.compile has compiled in this process."""
    return counters["stats"]["unique_graphs"]


def time_whole_pipeline(spec: PipelineSpec, device: torch.device, dtype: torch.dtype = torch.bfloat16,
                        measured_steps: int = 2, compile_transformer: bool = False,
                        recipe: Union[str, Mapping, Recipe, None] = None, fp8: bool = False,
                        cache: Optional[str] = None) -> dict:
    """Stock diffusers and GNA (the recipe, dense steps on its dense path) in one run, phase by phase, with the same
    options on both sides: `compile_transformer` (`compile_regionally`), `fp8` (`quantize_fp8`), `cache` (a name in
    CACHES).

    Each side gets a warm-up call (kernels built, autotuning done, torch.compile traced for every kind of step; the
    stock one decodes too, so neither side's measured VAE decode pays first-use costs), then one measured call holding
    `measured_steps` steps of each kind it has: dense (stock), dense then gna (GNA), and with a cache each of those
    predicted too ("-cached"; the cache's warm-up shortened by `measurement_config`). Totals for `spec.steps` steps add
    the phases: each kind's median times its count in a full run, where the recipe's first dense steps and the cache's
    own schedule (`cache_schedule`) both count from the first step. A spec whose weights cannot fit on `device` is
    refused before anything is built there (`require_memory`)."""
    if cache is not None and cache not in CACHES:
        raise ValueError(f"cache={cache!r}: not one of {', '.join(sorted(CACHES))}")
    if fp8:
        require_fp8(device)
        if dtype != torch.bfloat16:
            raise ValueError(f"fp8: per-row FP8 scales need bfloat16 weights; dtype is {dtype}")
    recipe = load_recipe(recipe or spec.recipe)
    weights = weight_bytes(spec.build(torch.device("meta"), dtype))
    if device.type == "cuda":
        require_memory(spec, weights, torch.cuda.get_device_properties(device).total_memory)
    pipe = spec.build(device, dtype)
    for name in spec.offload:
        stream_from_host(getattr(pipe, name), device)
    pipe.set_progress_bar_config(disable=True)
    options = {**spec.options, "compile": False, "dtype": str(dtype).replace("torch.", ""),
               "fp8": quantize_fp8(pipe.transformer) if fp8 else None, "cache": None,
               "weights_gib": {name: round(size / GIB, 2) for name, size in weights.items()},
               "offloaded": list(spec.offload)}
    full, measuring = [True] * spec.steps, [True] * 256
    compiling = contextlib.nullcontext()
    if cache is not None:
        config = CACHES[cache]()
        measure = measurement_config(config)
        full, measuring = cache_schedule(config, spec.steps), cache_schedule(measure, 256)  # 256: ample for a call
        pipe.transformer.enable_cache(measure)
        options["cache"] = {"name": cache, "config": repr(config), "measured_with": repr(measure),
                            "computed_steps": [i for i, c in enumerate(full) if c]}
        if compile_transformer:
            # the hook breaks the graph at every block it wraps, and each kind of block, step and input stride
            # compiles a variant of the same resumed frame: more than dynamo's default 8, past which it runs eagerly
            compiling = torch._dynamo.config.patch(recompile_limit=64)
            options["dynamo_recompile_limit"] = 64
    if compile_transformer:
        options["compile"] = compile_regionally(pipe.transformer, fullgraph=cache is None)

    def run(with_gna: bool, count: int, output_type: str = "pt") -> PhaseTimer:
        """One call holding `count` steps of each kind, stock or GNA (its dense steps first)."""
        start = 0
        if with_gna:
            start = _steps_holding(measuring, 0, count, cache is not None)
            enable_gna(pipe, dataclasses.replace(recipe, dense_steps=start))
        steps = _steps_holding(measuring, start, count, cache is not None)
        timer = PhaseTimer(pipe, measuring[:steps] if cache is not None else None)
        with torch.no_grad():
            timer.call(prompt=PROMPT, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                       output_type=output_type, **spec.call_args)
        return timer

    warm = measured_steps if compile_transformer else 1     # compiled: the very steps measured, so none compiles
    with compiling:
        # warm-up, stock, decoded too: the VAE's first decode pays cuDNN autotuning (FLUX 4K: 4.7 s vs 2.9)
        run(False, warm)
        before = _graphs_compiled()
        stock = run(False, measured_steps)
        compiled_while_measuring = _graphs_compiled() - before
        run(True, warm, "latent")                                 # warm-up: every kind of GNA step
        before = _graphs_compiled()
        gna = run(True, measured_steps)
        compiled_while_measuring += _graphs_compiled() - before
    grid = gna_state(pipe).grid
    disable_gna(pipe)
    dense_steps = recipe.dense_step_count(spec.steps)
    stock_counts = Counter(step_kind(True, computed) for computed in full)
    gna_counts = Counter(step_kind(i < dense_steps, computed) for i, computed in enumerate(full))
    stock_s = {kind: stock.median_step(kind) for kind in stock_counts}
    gna_s = {kind: gna.median_step(kind) for kind in gna_counts}
    total_dense = stock.text_s + sum(n * stock_s[k] for k, n in stock_counts.items()) + stock.vae_s + stock.other_s
    total_gna = gna.text_s + sum(n * gna_s[k] for k, n in gna_counts.items()) + gna.vae_s + gna.other_s
    dense_step, gna_dense_step, gna_step = stock.median_step("dense"), gna.median_step("dense"), gna.median_step("gna")
    del pipe
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "model": spec.model, "recipe": recipe.name, "backend": recipe.backend, "dense_path": recipe.dense_path,
        "grid": list(grid), "steps": spec.steps, "dense_steps": dense_steps,
        "text_encode_s": stock.text_s, "dense_step_s": dense_step, "gna_dense_step_s": gna_dense_step,
        "gna_step_s": gna_step, "vae_decode_s": stock.vae_s, "other_s": stock.other_s,
        "gna_text_encode_s": gna.text_s, "gna_vae_decode_s": gna.vae_s, "gna_other_s": gna.other_s,
        "total_dense_s": total_dense, "total_gna_s": total_gna, "speedup": total_dense / total_gna,
        # with dense_path "original" the recipe's computed dense steps run diffusers' own processor: the stock step
        "total_gna_original_dense_s": total_gna + gna_counts["dense"] * (dense_step - gna_dense_step),
        "step_speedup": dense_step / gna_step,
        "steps_by_kind": {side: {k: {"count": n, "step_s": seconds[k]} for k, n in counts.items()}
                          for side, counts, seconds in (("stock", stock_counts, stock_s), ("gna", gna_counts, gna_s))},
        "measured": {"stock_steps": stock.steps, "gna_steps": gna.steps, "stock_call_s": stock.total_s,
                     "gna_call_s": gna.total_s, "graphs_compiled": compiled_while_measuring,   # 0: no compile timed
                     "stock_memory": stock.memory, "gna_memory": gna.memory,
                     "stock_sm_clock_mhz": stock.sm_clocks_mhz, "gna_sm_clock_mhz": gna.sm_clocks_mhz},
        "options": options,
        "totals": f"phases added up for {spec.steps} steps: text + each kind of step (dense, gna; -cached where the "
                  f"cache predicts it) x its count in a full run x its median + VAE decode + other; each measured in "
                  f"a real pipeline call of this run",
        "weights": "random at full size (speed only; fidelity is meaningless)", **environment(),
    }


# ---------------------------------------------------------------- full-size pipelines, random weights

def _clip_l():
    """openai/clip-vit-large-patch14's text model, the second text encoder of FLUX.1 and HunyuanVideo."""
    from transformers import CLIPTextConfig
    return CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                          max_position_embeddings=77, projection_dim=768, vocab_size=49408)


def _pass_through_guardrail(device: torch.device) -> torch.nn.Module:
    """The Cosmos pipelines' safety checker: no guardrail model offline, so everything passes (tiny.AlwaysSafe),
    made on `device` as the pipeline's other components are."""
    from .tiny import AlwaysSafe
    with torch.device(device):
        return AlwaysSafe()


def _t5_11b():
    """google-t5/t5-11b's encoder (T5 1.0, ReLU feed-forward, 1024 wide), the text encoder of Cosmos-1.0 and
    Cosmos-Predict2."""
    from transformers import T5Config
    return T5Config(d_model=1024, d_ff=65536, d_kv=128, num_heads=128, num_layers=24, feed_forward_proj="relu",
                    vocab_size=32128, is_encoder_decoder=False, use_cache=False)


def _qwen25_vl_7b_text() -> dict:
    """Qwen/Qwen2.5-VL-7B-Instruct's language model (text_config), the text encoder of Qwen-Image and, without the
    vision tower, of HunyuanVideo 1.5."""
    return dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4, vocab_size=152064, rms_norm_eps=1e-6, max_position_embeddings=128000,
                rope_theta=1000000.0, rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default",
                                                    "type": "default"})


def _hunyuan_video(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from transformers import CLIPTextModel, LlamaConfig, LlamaModel

    from .tiny import clip_tokenizer, llama_tokenizer
    # hunyuanvideo-community/HunyuanVideo: text_encoder is llava-llama-3-8b's language model, text_encoder_2 CLIP-L
    llama = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=8, vocab_size=128320, rope_theta=500000.0, rms_norm_eps=1e-5,
                        max_position_embeddings=8192)
    pipe = HunyuanVideoPipeline(
        text_encoder=random_module(LlamaModel, llama, device, dtype), tokenizer=llama_tokenizer(256),
        transformer=build_random("hunyuan_video", device, dtype),
        vae=random_module(AutoencoderKLHunyuanVideo, {}, device, dtype),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=random_module(CLIPTextModel, _clip_l(), device, dtype), tokenizer_2=clip_tokenizer())
    pipe.vae.enable_tiling()            # the model card's setting: a 720p clip does not decode untiled
    return pipe


def _flux(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    from .tiny import clip_tokenizer, t5_tokenizer
    # black-forest-labs/FLUX.1-dev: CLIP-L, T5-v1.1-XXL encoder, the 16-channel VAE
    t5 = T5Config(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64, vocab_size=32128,
                  feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    vae = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
               down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
               layers_per_block=2, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
               use_post_quant_conv=False)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                  max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096),
        vae=random_module(AutoencoderKL, vae, device, dtype),
        text_encoder=random_module(CLIPTextModel, _clip_l(), device, dtype), tokenizer=clip_tokenizer(),
        text_encoder_2=random_module(T5EncoderModel, t5, device, dtype), tokenizer_2=t5_tokenizer(512),
        transformer=build_random("flux", device, dtype))


def _cosmos(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLCosmos, CosmosTextToWorldPipeline, EDMEulerScheduler
    from transformers import T5EncoderModel

    from .tiny import t5_tokenizer
    # nvidia/Cosmos-1.0-Diffusion-7B-Text2World: T5-11B's encoder, the Cosmos-1.0-Tokenizer-CV8x8x8 VAE (diffusers'
    # defaults for AutoencoderKLCosmos), its EDM scheduler
    return CosmosTextToWorldPipeline(
        text_encoder=random_module(T5EncoderModel, _t5_11b(), device, dtype), tokenizer=t5_tokenizer(512),
        transformer=build_random("cosmos", device, dtype), vae=random_module(AutoencoderKLCosmos, {}, device, dtype),
        scheduler=EDMEulerScheduler(sigma_min=0.002, sigma_max=80, sigma_data=0.5, sigma_schedule="karras",
                                    num_train_timesteps=1000, prediction_type="epsilon", rho=7.0,
                                    final_sigmas_type="sigma_min"),
        safety_checker=_pass_through_guardrail(device))


def _cosmos_predict2(model: str) -> Callable[[torch.device, torch.dtype], object]:
    """nvidia/Cosmos-Predict2-2B-Text2Image (`cosmos_predict2`) or -Video2World (`cosmos_predict2_video`): T5-11B's
    encoder, Wan 2.1's VAE (diffusers' defaults for AutoencoderKLWan), flow matching with Karras sigmas."""
    def build(device: torch.device, dtype: torch.dtype):
        from diffusers import (AutoencoderKLWan, Cosmos2TextToImagePipeline, Cosmos2VideoToWorldPipeline,
                               FlowMatchEulerDiscreteScheduler)
        from transformers import T5EncoderModel

        from .tiny import t5_tokenizer
        pipeline = Cosmos2VideoToWorldPipeline if model == "cosmos_predict2_video" else Cosmos2TextToImagePipeline
        return pipeline(
            text_encoder=random_module(T5EncoderModel, _t5_11b(), device, dtype), tokenizer=t5_tokenizer(512),
            transformer=build_random(model, device, dtype), vae=random_module(AutoencoderKLWan, {}, device, dtype),
            scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
            safety_checker=_pass_through_guardrail(device))
    return build


def _wan(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    from .tiny import t5_tokenizer
    # Wan-AI/Wan2.1-T2V-14B-Diffusers: text_encoder is UMT5-XXL's encoder, the Wan 2.1 VAE (diffusers' defaults for
    # AutoencoderKLWan), UniPC with flow sigmas, shift 3
    umt5 = UMT5Config(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=256384,
                      feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                      relative_attention_max_distance=128, is_encoder_decoder=False, use_cache=False)
    return WanPipeline(
        tokenizer=t5_tokenizer(512), text_encoder=random_module(UMT5EncoderModel, umt5, device, dtype),
        transformer=build_random("wan", device, dtype), vae=random_module(AutoencoderKLWan, {}, device, dtype),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0))


def _hunyuan_video15(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLHunyuanVideo15, FlowMatchEulerDiscreteScheduler, HunyuanVideo15Pipeline
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import (ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, Qwen2Tokenizer, T5Config,
                              T5EncoderModel)

    from .tiny import _chat_tokenizer
    # hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_t2v: Qwen2.5-VL-7B's language model, ByT5-small's
    # encoder for quoted text (Glyph-SDXL-v2; its added color and font tokens are left out of the vocabulary: only
    # quoted text reaches it), the 32-channel VAE (diffusers' defaults), flow shift 9, CFG 6 through the guider
    tokenizer_2 = ByT5Tokenizer()
    byt5 = T5Config(d_model=1472, d_ff=3584, d_kv=64, num_heads=6, num_layers=12, feed_forward_proj="gated-gelu",
                    vocab_size=len(tokenizer_2), is_encoder_decoder=False, use_cache=False)
    pipe = HunyuanVideo15Pipeline(
        text_encoder=random_module(Qwen2_5_VLTextModel, Qwen2_5_VLTextConfig(**_qwen25_vl_7b_text()), device,
                                   dtype),
        tokenizer=_chat_tokenizer(Qwen2Tokenizer, unk_token="<unk>", eos_token="</s>", pad_token="<pad>"),
        transformer=build_random("hunyuan_video15", device, dtype),
        vae=random_module(AutoencoderKLHunyuanVideo15, {}, device, dtype),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=9.0),
        text_encoder_2=random_module(T5EncoderModel, byt5, device, dtype), tokenizer_2=tokenizer_2,
        guider=ClassifierFreeGuidance(guidance_scale=6.0))
    pipe.prompt_template_encode_start_idx = 0   # the in-memory chat template renders no system prompt to crop
    pipe.vae.enable_tiling()                     # as diffusers' HunyuanVideo 1.5 docs: 720p x 121 frames
    return pipe


def _flux2(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Pipeline
    from transformers import LlamaTokenizerFast, Mistral3Config, Mistral3ForConditionalGeneration

    from .tiny import _chat_tokenizer
    # black-forest-labs/FLUX.2-dev: Mistral-Small-3.1/3.2-24B (Pixtral vision tower included), the 32-channel VAE
    # (diffusers' defaults for AutoencoderKLFlux2), FLUX.1-dev's scheduler
    mistral = Mistral3Config(
        text_config=dict(model_type="mistral", hidden_size=5120, intermediate_size=32768, num_hidden_layers=40,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=131072,
                         max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=1000000000.0),
        vision_config=dict(model_type="pixtral", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                           num_attention_heads=16, head_dim=64, image_size=1540, patch_size=14),
        image_token_index=10, spatial_merge_size=2, projector_hidden_act="gelu", multimodal_projector_bias=False)
    return Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                  max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096),
        vae=random_module(AutoencoderKLFlux2, {}, device, dtype),
        text_encoder=random_module(Mistral3ForConditionalGeneration, mistral, device, dtype),
        tokenizer=_chat_tokenizer(LlamaTokenizerFast, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>"),
        transformer=build_random("flux2", device, dtype))


def _qwen_image(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    from .tiny import _chat_tokenizer
    # Qwen/Qwen-Image: Qwen2.5-VL-7B-Instruct whole (vision tower included), the Qwen-Image VAE (diffusers' defaults
    # for AutoencoderKLQwenImage), its dynamically shifted flow-matching scheduler
    qwen = Qwen2_5_VLConfig(
        text_config=_qwen25_vl_7b_text(),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31]),
        vocab_size=152064)
    return QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True, base_shift=0.5,
                                                  max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192,
                                                  shift_terminal=0.02, time_shift_type="exponential"),
        vae=random_module(AutoencoderKLQwenImage, {}, device, dtype),
        text_encoder=random_module(Qwen2_5_VLForConditionalGeneration, qwen, device, dtype),
        tokenizer=_chat_tokenizer(Qwen2Tokenizer, unk_token="<unk>", eos_token="</s>", pad_token="<pad>"),
        transformer=build_random("qwen_image", device, dtype))


def _spec(full_size: str, build: Callable[[torch.device, torch.dtype], object], call_args: dict, recipe: str,
          options: dict, offload: tuple[str, ...] = ()) -> PipelineSpec:
    """A spec whose record names the checkpoint (FULL_SIZE key `full_size`) whose configs it builds and the resolution
    of `call_args`, with that checkpoint's default step count (FULL_SIZE, the pipeline's own default): Cosmos specs
    share `model: cosmos`."""
    full = FULL_SIZE[full_size]
    size = [call_args["height"], call_args["width"]] + ([call_args["num_frames"]] if "num_frames" in call_args else [])
    return PipelineSpec(full.model, build, call_args, full.steps, recipe,
                        {"checkpoint": full.checkpoint, "resolution": "x".join(map(str, size)), **options}, offload)


def _hunyuan_video_spec(height: int, frames: int, recipe: str) -> PipelineSpec:
    """HunyuanVideo at 1280 wide, `height` x `frames`, with the bare prompt template and the tiled VAE."""
    call_args = dict(height=height, width=1280, num_frames=frames, prompt_template={"template": "{}", "crop_start": 0})
    return _spec("hunyuan_video", _hunyuan_video, call_args, recipe,
                 {"vae_tiling": True, "prompt_template": "bare (the template's 95 system tokens are not encoded; the "
                                                         "transformer still sees 256 text slots)"})


# `call_args`: the recipe's resolution with the pipelines' defaults (guidance, frames) unless said otherwise.
PIPELINES: dict[str, PipelineSpec] = {
    "hunyuan_video": _hunyuan_video_spec(768, 117, "hunyuan-video-720p"),
    "hunyuan_video_129f": _hunyuan_video_spec(720, 129, "hunyuan-video-720p-129f"),   # diffusers' default size
    "flux": _spec("flux", _flux, dict(height=4096, width=4096, guidance_scale=3.5), "flux-dev-4k",
                  {"vae_tiling": False}),
    "cosmos": _spec("cosmos", _cosmos, dict(height=704, width=1280, num_frames=121), "cosmos-7b-text2world",
                    {"vae_tiling": False, "guidance": "CFG 7 (two calls a step)",
                     "safety_checker": "pass-through (no guardrail model offline)"}),
    "wan": _spec("wan", _wan, dict(height=720, width=1280, num_frames=81), "wan-720p",
                 {"vae_tiling": False, "guidance": "CFG 5 (two calls a step)"}),
    "hunyuan_video15": _spec(
        "hunyuan_video15", _hunyuan_video15, dict(height=720, width=1280, num_frames=121),
        "hunyuan-video15-720p",
        {"vae_tiling": True, "guidance": "CFG 6 through the guider (two calls a step)",
         "prompt_template": "bare (the 108 system-prompt tokens are not encoded; the transformer still sees 1000 "
                            "text slots, 256 glyph and 729 image slots)"}),
    "flux2": _spec(
        "flux2", _flux2, dict(height=4096, width=4096), "flux2-dev-4k",
        {"vae_tiling": False, "guidance": "distilled guidance 4 (one call a step)",
         "memory": "the text encoder (Mistral-Small 24B, 43.5 GiB) stays in pinned host memory and streams to the "
                   "GPU layer by layer while it runs (diffusers group offloading, leaf level, with a copy stream), "
                   "on both sides: with it resident, 103.7 GiB of weights would leave one H200 36 GiB for 4K "
                   "activations and the untiled 4K decode, under ACTIVATION_ROOM_GIB; text_encode_s includes "
                   "streaming its weights from host memory"},
        offload=("text_encoder",)),
    "qwen_image": _spec(
        "qwen_image", _qwen_image, dict(height=4096, width=4096, negative_prompt=" "), "qwen-image-4k",
        {"vae_tiling": False,
         "guidance": "true CFG 4 with the model card's negative prompt \" \" (two calls a step; none without one)",
         "text_tokens": "194 after the template's 34 system tokens are dropped: the in-memory vocabulary splits the "
                        "prompt into characters, where Qwen's tokenizer makes about 25 tokens; 0.3% of the 65,536 "
                        "image tokens either way"}),
    "cosmos_predict2": _spec(
        "cosmos_predict2", _cosmos_predict2("cosmos_predict2"), dict(height=768, width=1360),
        "cosmos-predict2-text2image",
        {"vae_tiling": False, "guidance": "CFG 7 (two calls a step)",
         "safety_checker": "pass-through (no guardrail model offline)"}),
    "cosmos_predict2_video": _spec(
        "cosmos_predict2_video", _cosmos_predict2("cosmos_predict2_video"),
        dict(image=PIL.Image.new("RGB", (1280, 704), (128, 128, 128)), height=704, width=1280, num_frames=93),
        "cosmos-predict2-video2world",
        {"vae_tiling": False, "guidance": "CFG 7 (two calls a step)",
         "condition": "one gray 704x1280 frame", "safety_checker": "pass-through (no guardrail model offline)"}),
}
