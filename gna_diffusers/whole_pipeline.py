"""The time a user clocks: a real `pipe(prompt)` call, every phase named, stock diffusers against GNA in one run.

Full-size pipelines are built from the published configs with random weights (text encoders, in-memory tokenizers,
scheduler, transformer, VAE), so they run where the weights cannot be downloaded; speed only, never fidelity. A few
steps of each kind are measured inside real pipeline calls; the total for the pipeline's default step count is the
measured phases added up: text encoding + each kind of step times its count + VAE decode + everything else in the
call. Both sides can get the same options: torch.compile, FP8 linears (torchao), a diffusers cache hook.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

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


# ---------------------------------------------------------------- timing

class PhaseTimer:
    """Times one pipeline call phase by phase (the GPU synchronised at every boundary).

    Text encoding is `encode_prompt`, the VAE phase is `vae.decode`, a step runs from its first transformer call to
    the pipeline's step-end callback (so preparing latents and timesteps counts as `other`), and `other` is the whole
    call less the named phases. A step is labelled `step_kind(dense, computed)`: dense or gna from GNA's state in that
    step, computed from `computed` (the cache's schedule for this call; None: no cache, every step runs)."""

    def __init__(self, pipe, computed: Optional[Sequence[bool]] = None) -> None:
        self.pipe = pipe
        self.computed = computed
        self.text_s = self.vae_s = self.total_s = 0.0
        self.steps: list[tuple[str, float]] = []       # (kind, seconds) per denoising step
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

    def step_end(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        """The pipeline's `callback_on_step_end`."""
        state = gna_state(pipe)
        kind = step_kind(state is None or state.dense_now, self.computed is None or self.computed[step])
        self.steps.append((kind, self._now() - self._step_start))
        self._step_start = None
        return callback_kwargs

    def call(self, **kwargs):
        """Run `pipe(**kwargs)` with every phase timed; returns the pipeline's output."""
        pipe = self.pipe
        pipe.encode_prompt = self._timed(type(pipe).encode_prompt.__get__(pipe), "text_s")
        pipe.vae.decode = self._timed(type(pipe.vae).decode.__get__(pipe.vae), "vae_s")
        hook = pipe.transformer.register_forward_pre_hook(self._step_begins, with_kwargs=True)
        try:
            start = self._now()
            out = pipe(callback_on_step_end=self.step_end, **kwargs)
            self.total_s = self._now() - start
        finally:
            hook.remove()
            del pipe.encode_prompt, pipe.vae.decode       # the class methods show through again
        return out

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
    own schedule (`cache_schedule`) both count from the first step."""
    if cache is not None and cache not in CACHES:
        raise ValueError(f"cache={cache!r}: not one of {', '.join(sorted(CACHES))}")
    if fp8:
        require_fp8(device)
        if dtype != torch.bfloat16:
            raise ValueError(f"fp8: per-row FP8 scales need bfloat16 weights; dtype is {dtype}")
    recipe = load_recipe(recipe or spec.recipe)
    pipe = spec.build(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    options = {**spec.options, "compile": False, "dtype": str(dtype).replace("torch.", ""),
               "fp8": quantize_fp8(pipe.transformer) if fp8 else None, "cache": None}
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
                     "gna_call_s": gna.total_s, "graphs_compiled": compiled_while_measuring},   # 0: no compile timed
        "options": options,
        "totals": f"phases added up for {spec.steps} steps: text + each kind of step (dense, gna; -cached where the "
                  f"cache predicts it) x its count in a full run x its median + VAE decode + other; each measured in "
                  f"a real pipeline call of this run",
        "weights": "random at full size (speed only; fidelity is meaningless)", **environment(),
    }


# ---------------------------------------------------------------- full-size pipelines, random weights

def _hunyuan_video(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    from .tiny import clip_tokenizer, llama_tokenizer
    # hunyuanvideo-community/HunyuanVideo: text_encoder is llava-llama-3-8b's language model, text_encoder_2 CLIP-L
    llama = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=8, vocab_size=128320, rope_theta=500000.0, rms_norm_eps=1e-5,
                        max_position_embeddings=8192)
    clip = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                          max_position_embeddings=77, projection_dim=768, vocab_size=49408)
    pipe = HunyuanVideoPipeline(
        text_encoder=random_module(LlamaModel, llama, device, dtype), tokenizer=llama_tokenizer(256),
        transformer=build_random("hunyuan_video", device, dtype),
        vae=random_module(AutoencoderKLHunyuanVideo, {}, device, dtype),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=random_module(CLIPTextModel, clip, device, dtype), tokenizer_2=clip_tokenizer())
    pipe.vae.enable_tiling()            # the model card's setting: a 720p clip does not decode untiled
    return pipe


def _flux(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from .tiny import clip_tokenizer, t5_tokenizer
    # black-forest-labs/FLUX.1-dev: CLIP-L, T5-v1.1-XXL encoder, the 16-channel VAE
    t5 = T5Config(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64, vocab_size=32128,
                  feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    clip = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                          max_position_embeddings=77, projection_dim=768, vocab_size=49408)
    vae = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
               down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
               layers_per_block=2, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
               use_post_quant_conv=False)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                  max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096),
        vae=random_module(AutoencoderKL, vae, device, dtype),
        text_encoder=random_module(CLIPTextModel, clip, device, dtype), tokenizer=clip_tokenizer(),
        text_encoder_2=random_module(T5EncoderModel, t5, device, dtype), tokenizer_2=t5_tokenizer(512),
        transformer=build_random("flux", device, dtype))


PIPELINES: dict[str, PipelineSpec] = {
    "hunyuan_video": PipelineSpec(
        "hunyuan_video", _hunyuan_video,
        dict(height=768, width=1280, num_frames=117, prompt_template={"template": "{}", "crop_start": 0}),
        FULL_SIZE["hunyuan_video"].steps, "hunyuan-video-720p",
        {"vae_tiling": True, "resolution": "768x1280x117", "prompt_template": "bare (the template's 95 system "
         "tokens are not encoded; the transformer still sees 256 text slots)"}),
    "flux": PipelineSpec("flux", _flux, dict(height=4096, width=4096, guidance_scale=3.5),
                         FULL_SIZE["flux"].steps, "flux-dev-4k", {"vae_tiling": False, "resolution": "4096x4096"}),
}
