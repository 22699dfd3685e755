"""Whole-pipeline timing on the tiny offline pipelines: every phase of a real call is measured and they add up; with a
cache, each kind of step is counted as a full run does it; FP8 is refused without an FP8 GPU."""

import dataclasses
import inspect
import math
from collections import Counter

import pytest
import torch

from gna_diffusers import compare
from gna_diffusers.errors import GPURequiredError
from gna_diffusers.recipe import load_recipe
from gna_diffusers.tiny import TINY_PIPELINES
from gna_diffusers.whole_pipeline import (
    CACHES,
    GIB,
    PIPELINES,
    PhaseTimer,
    PipelineSpec,
    cache_schedule,
    fp8_layers,
    require_memory,
    time_whole_pipeline,
    weight_bytes,
)
from spies import counting_backend

GRIDS = {"flux": [16, 16], "hunyuan_video": [2, 8, 8], "cosmos": [3, 8, 8], "wan": [3, 4, 6], "cosmos_predict2": [4, 6],
         "cosmos_predict2_video": [3, 4, 6], "flux2": [12, 16], "qwen_image": [12, 16], "hunyuan_video15": [3, 8, 12]}
RECORD_KEYS = {"model", "gpu", "steps", "dense_steps", "text_encode_s", "dense_step_s", "gna_step_s", "vae_decode_s",
               "other_s", "total_dense_s", "total_gna_s", "speedup", "options"}


def _spec(model: str) -> PipelineSpec:
    builder, call_args = TINY_PIPELINES[model]
    key = "cosmos" if model.startswith("cosmos") else model          # Cosmos-Predict2 recipes say `model: cosmos`
    recipe = {"model": key, "grid": GRIDS[model], "dense_steps": 0.3, "backend": "reference",
              "layers": [{"blocks": "all", "window": [2] * len(GRIDS[model])}]}
    return PipelineSpec(key, lambda device, dtype: builder(0).to(device), call_args, 10, recipe, {"tiny": True})


@pytest.mark.parametrize("model", sorted(GRIDS))
def test_phases_add_up(model: str) -> None:
    spec = _spec(model)
    record = time_whole_pipeline(spec, torch.device("cpu"), torch.float32)
    assert RECORD_KEYS <= set(record)
    assert record["grid"] == GRIDS[model]
    assert record["dense_steps"] == 3
    assert [m for m, _ in record["measured"]["stock_steps"]] == ["dense", "dense"]
    assert [m for m, _ in record["measured"]["gna_steps"]] == ["dense", "dense", "gna", "gna"]
    for key in ("text_encode_s", "dense_step_s", "gna_step_s", "gna_dense_step_s", "vae_decode_s"):
        assert 0 < record[key] < 60 and math.isfinite(record[key]), key
    assert record["other_s"] >= 0
    expected = (record["text_encode_s"] + 10 * record["dense_step_s"] + record["vae_decode_s"] + record["other_s"])
    assert record["total_dense_s"] == pytest.approx(expected)
    assert record["speedup"] == pytest.approx(record["total_dense_s"] / record["total_gna_s"])


def test_timer_names_every_phase() -> None:
    """The named phases and `other` add up to the call's wall time, and the pipeline's methods come back."""
    builder, call_args = TINY_PIPELINES["flux"]
    pipe = builder(0)
    pipe.set_progress_bar_config(disable=True)
    timer = PhaseTimer(pipe)
    timer.call(prompt="a cat", num_inference_steps=3, generator=torch.Generator().manual_seed(0), **call_args)
    assert len(timer.steps) == 3 and timer.text_s > 0 and timer.vae_s > 0
    assert timer.text_s + timer.vae_s + sum(s for _, s in timer.steps) + timer.other_s == pytest.approx(timer.total_s)
    assert "encode_prompt" not in vars(pipe) and "decode" not in vars(pipe.vae)


# ---------------------------------------------------------------- options: a cache, FP8 linears

SPY_CALLS = counting_backend("whole-pipeline-spy")


class Witness:
    """What each transformer forward really ran, seen from outside the cache and GNA: how many blocks ran their body
    (any child module called) out of how many, and how many GNA calls the spy backend got."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        blocks = [m for m in transformer.modules() if type(m).__name__.endswith("TransformerBlock")]
        assert len(blocks) == 4                                  # 2 double + 2 single blocks in every tiny model
        self.blocks = len(blocks)
        self.forwards: list[dict] = []
        self.handles = [transformer.register_forward_pre_hook(self._forward)]
        for block in blocks:
            for child in block.children():
                self.handles.append(child.register_forward_pre_hook(lambda m, a, block=block: self._ran(block)))

    def _forward(self, module, args) -> None:
        self.forwards.append({"ran": set(), "gna_calls_before": len(SPY_CALLS)})

    def _ran(self, block) -> None:
        self.forwards[-1]["ran"].add(id(block))

    def kinds(self, dense_steps: int) -> list[str]:
        """Each forward's kind, from what ran; every tiny pipeline makes one forward a step."""
        ends = [f["gna_calls_before"] for f in self.forwards[1:]] + [len(SPY_CALLS)]
        kinds = []
        for step, (forward, end) in enumerate(zip(self.forwards, ends)):
            ran, gna_ran = len(forward["ran"]), end > forward["gna_calls_before"]
            assert ran in (0, self.blocks), f"step {step}: {ran} of {self.blocks} blocks ran"
            if ran:                                              # a computed step runs GNA exactly after the dense ones
                assert gna_ran == (step >= dense_steps), step
            else:
                assert not gna_ran, step
            kinds.append(("dense" if step < dense_steps else "gna") + ("" if ran else "-cached"))
        return kinds

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("model", ["flux", "hunyuan_video"])
def test_cache_steps_and_counts_are_what_a_full_run_does(model: str) -> None:
    """The cache's 50-step counts in the record, and the labels the timer gives each step, equal what a 50-step call
    of the same pipeline with the same cache and recipe (15 dense steps) runs, counted block by block."""
    spec = dataclasses.replace(_spec(model), steps=50)
    record = time_whole_pipeline(spec, torch.device("cpu"), torch.float32, measured_steps=1,
                                 cache="taylor_seer_lite")
    config = CACHES["taylor_seer_lite"]()
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    pipe.set_progress_bar_config(disable=True)
    pipe.transformer.enable_cache(config)
    recipe = {**spec.recipe, "backend": "whole-pipeline-spy"}
    for side, dense_steps in (("stock", 50), ("gna", 15)):
        if side == "gna":
            pipe.enable_gna(recipe)
        witness = Witness(pipe.transformer)
        timer = PhaseTimer(pipe, cache_schedule(config, 50))
        timer.call(prompt="a cat", num_inference_steps=50, generator=torch.Generator().manual_seed(0),
                   output_type="latent", **call_args)
        witness.remove()
        ran = witness.kinds(dense_steps)
        assert len(ran) == 50 and [kind for kind, _ in timer.steps] == ran
        counts = {kind: step["count"] for kind, step in record["steps_by_kind"][side].items()}
        assert counts == dict(Counter(ran)) and sum(counts.values()) == 50
    assert set(counts) == {"dense", "dense-cached", "gna", "gna-cached"}       # the recipe and the cache interleave
    assert record["options"]["cache"]["computed_steps"] == [i for i, k in enumerate(ran) if not k.endswith("cached")]


def test_cache_record_measures_each_kind_and_adds_up() -> None:
    spec = dataclasses.replace(_spec("hunyuan_video"), steps=50)
    record = time_whole_pipeline(spec, torch.device("cpu"), torch.float32, measured_steps=1,
                                 cache="taylor_seer_lite")
    # measured calls under the shortened warm-up: two full steps, then a predicted one, on each side
    assert [k for k, _ in record["measured"]["stock_steps"]] == ["dense", "dense", "dense-cached"]
    assert [k for k, _ in record["measured"]["gna_steps"]] == ["dense", "dense", "dense-cached", "gna", "gna-cached"]
    for side, text, vae, other, total in (("stock", "text_encode_s", "vae_decode_s", "other_s", "total_dense_s"),
                                          ("gna", "gna_text_encode_s", "gna_vae_decode_s", "gna_other_s",
                                           "total_gna_s")):
        kinds = record["steps_by_kind"][side]
        for kind, step in kinds.items():
            assert 0 < step["step_s"] < 60 and math.isfinite(step["step_s"]), (side, kind)
        steps = sum(step["count"] * step["step_s"] for step in kinds.values())
        assert record[total] == pytest.approx(record[text] + steps + record[vae] + record[other])
    phases = compare.phase_seconds(record)
    assert sum(phases["dense"].values()) == pytest.approx(record["total_dense_s"])
    assert sum(phases["GNA"].values()) == pytest.approx(record["total_gna_s"])
    assert "GNA steps, cached" in phases["GNA"] and "dense steps, cached" in phases["dense"]
    gna = record["steps_by_kind"]["gna"]
    assert record["total_gna_original_dense_s"] == pytest.approx(
        record["total_gna_s"] + gna["dense"]["count"] * (record["dense_step_s"] - record["gna_dense_step_s"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="FP8 may run on this machine")
def test_fp8_refused_without_an_fp8_gpu() -> None:
    with pytest.raises(GPURequiredError) as err:
        time_whole_pipeline(_spec("flux"), torch.device("cpu"), fp8=True)
    message = str(err.value)
    assert "\n" not in message
    for needle in ("--fp8", "compute capability 8.9", "found no CUDA GPU"):
        assert needle in message


def test_fp8_takes_the_linears_scaled_mm_can_run_but_the_output_projection() -> None:
    transformer = TINY_PIPELINES["hunyuan_video"][0](0).transformer
    taken, kept = fp8_layers(transformer)
    linears = {name: m for name, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}
    kept_names = [name for names in kept.values() for name in names]
    assert sorted(taken + kept_names) == sorted(linears) and not set(taken) & set(kept_names)
    assert "proj_out" in kept_names and "transformer_blocks.0.attn.to_q" in taken
    odd = [name for name, m in linears.items() if m.in_features % 16 or m.out_features % 16]
    assert odd and set(odd) <= set(kept_names)                 # tiny's 8-wide pooled projection, for one
    assert all(linears[name].in_features % 16 == 0 and linears[name].out_features % 16 == 0 for name in taken)


# ---------------------------------------------------------------- full-size specs, built on the meta device

def _value(obj, path: str):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


# what each transformer consumes from each text encoder: (encoder's width, transformer config key); FLUX.2 stacks the
# hidden states of three Mistral layers (the pipeline's default `text_encoder_out_layers`)
MISTRAL_LAYERS = len(inspect.signature(__import__("diffusers").Flux2Pipeline.__call__)
                     .parameters["text_encoder_out_layers"].default)
TEXT = {
    "hunyuan_video": [("text_encoder.config.hidden_size", 1, "text_embed_dim"),
                      ("text_encoder_2.config.hidden_size", 1, "pooled_projection_dim")],
    "flux": [("text_encoder_2.config.d_model", 1, "joint_attention_dim"),
             ("text_encoder.config.hidden_size", 1, "pooled_projection_dim")],
    "cosmos": [("text_encoder.config.d_model", 1, "text_embed_dim")],
    "wan": [("text_encoder.config.d_model", 1, "text_dim")],
    "hunyuan_video15": [("text_encoder.config.hidden_size", 1, "text_embed_dim"),
                        ("text_encoder_2.config.d_model", 1, "text_embed_2_dim")],
    "flux2": [("text_encoder.config.text_config.hidden_size", MISTRAL_LAYERS, "joint_attention_dim")],
    "qwen_image": [("text_encoder.config.text_config.hidden_size", 1, "joint_attention_dim")],
}
TEXT.update(hunyuan_video_129f=TEXT["hunyuan_video"], cosmos_predict2=TEXT["cosmos"],
            cosmos_predict2_video=TEXT["cosmos"])
# transformer input channels from VAE latent channels: 2x2 packing (x4), HunyuanVideo 1.5's latents + condition
# latents + mask, a video2world condition-mask channel
CHANNELS = {"flux": lambda c: 4 * c, "flux2": lambda c: 4 * c, "qwen_image": lambda c: 4 * c,
            "hunyuan_video15": lambda c: 2 * c + 1, "cosmos_predict2_video": lambda c: c + 1}
# weights in GiB (bf16) per spec, from the meta builds: the table a GPU run's memory is planned with
WEIGHTS_GIB = {"hunyuan_video": 38.5, "hunyuan_video_129f": 38.5, "flux": 31.4, "cosmos": 22.7, "wan": 37.4,
               "hunyuan_video15": 31.4, "flux2": 103.7, "qwen_image": 53.7, "cosmos_predict2": 12.9,
               "cosmos_predict2_video": 12.9}


def _compression(vae) -> tuple[int, int]:
    """(time, space) compression of a VAE, read from its config."""
    config = vae.config
    if "temperal_downsample" in config:                          # Wan 2.1 and Qwen-Image VAEs
        return 2 ** sum(config.temperal_downsample), 2 ** len(config.temperal_downsample)
    if "spatial_compression_ratio" in config:                    # HunyuanVideo (1.5), Cosmos
        return config.temporal_compression_ratio, config.spatial_compression_ratio
    return 1, 2 ** (len(config.block_out_channels) - 1)          # FLUX.1 / FLUX.2 image VAEs


@pytest.fixture(scope="module")
def meta_pipes() -> dict:
    return {name: spec.build(torch.device("meta"), torch.bfloat16) for name, spec in PIPELINES.items()}


def test_every_spec_builds_on_meta_with_no_memory(meta_pipes) -> None:
    assert set(meta_pipes) == set(TEXT) == set(WEIGHTS_GIB)
    for name, pipe in meta_pipes.items():
        for component, module in pipe.components.items():
            if isinstance(module, torch.nn.Module):
                tensors = list(module.parameters()) + list(module.buffers())
                assert all(t.is_meta for t in tensors), (name, component)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_full_size_components_agree(name: str, meta_pipes) -> None:
    """Text widths, latent channels, the recipe's grid at the call's resolution, the default step count: each from
    two independent places, so a wrong resolution or config number fails here."""
    spec, pipe = PIPELINES[name], meta_pipes[name]
    transformer = pipe.transformer.config
    for width, factor, key in TEXT[name]:
        assert factor * _value(pipe, width) == transformer[key], (width, key)
    latent = pipe.vae.config.get("latent_channels") or pipe.vae.config.z_dim
    assert transformer.in_channels == CHANNELS.get(name, lambda c: c)(latent)

    time, space = _compression(pipe.vae)
    args = spec.call_args
    size = [args["height"], args["width"]]
    assert all(n % space == 0 for n in size), size
    latent_grid = [n // space for n in size]
    if "num_frames" in args:
        assert (args["num_frames"] - 1) % time == 0
        latent_grid.insert(0, (args["num_frames"] - 1) // time + 1)
    if name in ("flux", "flux2", "qwen_image"):                 # the pipeline packs 2x2 latents into a token
        patch = [2, 2]
    elif isinstance(transformer.patch_size, (tuple, list)):     # Wan, Cosmos: (time, height, width)
        patch = list(transformer.patch_size)[-len(latent_grid):]
    else:
        patch = [transformer.patch_size_t, transformer.patch_size, transformer.patch_size]
    assert all(n % p == 0 for n, p in zip(latent_grid, patch)), (latent_grid, patch)
    assert [n // p for n, p in zip(latent_grid, patch)] == list(load_recipe(spec.recipe).grid)

    steps = inspect.signature(type(pipe).__call__).parameters["num_inference_steps"].default
    assert spec.steps == steps
    assert spec.model == load_recipe(spec.recipe).model
    for key, value in args.items():                             # each call argument is one the pipeline takes
        assert key in inspect.signature(type(pipe).__call__).parameters, key
    assert set(spec.offload) <= set(pipe.components)


def test_weights_table_and_memory_guard(meta_pipes) -> None:
    h200, h100 = int(139.8 * GIB), int(79.6 * GIB)
    for name, pipe in meta_pipes.items():
        weights = weight_bytes(pipe)
        assert sum(weights.values()) / GIB == pytest.approx(WEIGHTS_GIB[name], abs=0.05), name
        require_memory(PIPELINES[name], weights, h200)           # every spec runs on one H200
    flux2 = weight_bytes(meta_pipes["flux2"])
    with pytest.raises(GPURequiredError) as err:                 # FLUX.2 without streaming its text encoder
        require_memory(dataclasses.replace(PIPELINES["flux2"], offload=()), flux2, h200)
    assert "103.7 GiB" in str(err.value) and "139.8 GiB" in str(err.value)
    with pytest.raises(GPURequiredError):                        # Qwen-Image: 53.7 GiB kept + activations > H100
        require_memory(PIPELINES["qwen_image"], weight_bytes(meta_pipes["qwen_image"]), h100)
    require_memory(PIPELINES["wan"], weight_bytes(meta_pipes["wan"]), h100)
