"""The time a user clocks: a real `pipe(prompt)` call, every phase named, stock diffusers against GNA in one run.

Full-size pipelines are built from the published configs with random weights (text encoders, in-memory tokenizers,
scheduler, transformer, VAE), so they run where the weights cannot be downloaded; speed only, never fidelity. A few
steps of each kind are measured inside real pipeline calls; the total for the pipeline's default step count is the
measured phases added up: text encoding + dense steps + GNA steps + VAE decode + everything else in the call.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Union

import torch

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


class PhaseTimer:
    """Times one pipeline call phase by phase (the GPU synchronised at every boundary).

    Text encoding is `encode_prompt`, the VAE phase is `vae.decode`, a step runs from its first transformer call to
    the pipeline's step-end callback (so preparing latents and timesteps counts as `other`), and `other` is the whole
    call less the named phases."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.text_s = self.vae_s = self.total_s = 0.0
        self.steps: list[tuple[str, float]] = []       # (mode, seconds) per denoising step
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
        self.steps.append(("dense" if state is None or state.dense_now else "gna", self._now() - self._step_start))
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

    def median_step(self, mode: str) -> Optional[float]:
        times = [s for m, s in self.steps if m == mode]
        return statistics.median(times) if times else None


COMPILE_SETTING = "regional: transformer.compile_repeated_blocks(fullgraph=True), default mode"


def compile_regionally(transformer: torch.nn.Module) -> None:
    """diffusers' regional compilation: each repeated block class is compiled once and reused by every block, so a
    60-block transformer compiles in a fraction of the whole-model time at the same step speed; GNA processors live
    inside those blocks and must trace without a graph break (fullgraph). Models without `_repeated_blocks` are
    compiled whole."""
    if getattr(transformer, "_repeated_blocks", None):
        transformer.compile_repeated_blocks(fullgraph=True)
    else:
        transformer.compile()


def time_whole_pipeline(spec: PipelineSpec, device: torch.device, dtype: torch.dtype = torch.bfloat16,
                        measured_steps: int = 2, compile_transformer: bool = False,
                        recipe: Union[str, Mapping, Recipe, None] = None) -> dict:
    """Stock diffusers and GNA (the recipe, dense steps on its dense path) in one run, phase by phase.

    Each side gets a warm-up call (kernels built, autotuning done, `torch.compile` traced for every mode; the first
    one decodes too, so neither side's measured VAE decode pays first-use costs) and then
    one measured call of `measured_steps` steps per kind: stock runs `measured_steps` dense steps; GNA runs
    `measured_steps` dense steps then `measured_steps` GNA steps. Totals for `spec.steps` steps add the phases."""
    pipe = spec.build(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    if compile_transformer:
        compile_regionally(pipe.transformer)
    recipe = load_recipe(recipe or spec.recipe)

    def run(steps: int, output_type: str = "pt") -> PhaseTimer:
        timer = PhaseTimer(pipe)
        with torch.no_grad():
            timer.call(prompt=PROMPT, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                       output_type=output_type, **spec.call_args)
        return timer

    run(1)        # warm-up, stock, decoded too: the VAE's first decode pays cuDNN autotuning (FLUX 4K: 4.7 s vs 2.9)
    stock = run(measured_steps)
    enable_gna(pipe, dataclasses.replace(recipe, dense_steps=1))
    run(2, "latent")                                              # warm-up: one dense, one GNA step
    enable_gna(pipe, dataclasses.replace(recipe, dense_steps=measured_steps))
    gna = run(2 * measured_steps)
    grid = gna_state(pipe).grid
    disable_gna(pipe)
    dense_steps = recipe.dense_step_count(spec.steps)
    dense_step, gna_dense_step, gna_step = stock.median_step("dense"), gna.median_step("dense"), gna.median_step("gna")
    total_dense = stock.text_s + spec.steps * dense_step + stock.vae_s + stock.other_s
    total_gna = (gna.text_s + dense_steps * gna_dense_step + (spec.steps - dense_steps) * gna_step + gna.vae_s
                 + gna.other_s)
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
        "step_speedup": dense_step / gna_step,
        "measured": {"stock_steps": stock.steps, "gna_steps": gna.steps, "stock_call_s": stock.total_s,
                     "gna_call_s": gna.total_s},
        "options": {**spec.options, "compile": COMPILE_SETTING if compile_transformer else False,
                    "dtype": str(dtype).replace("torch.", "")},
        "totals": f"phases added up for {spec.steps} steps: text + dense_steps x dense step + GNA steps x GNA step "
                  f"+ VAE decode + other; each measured in a real pipeline call of this run",
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
