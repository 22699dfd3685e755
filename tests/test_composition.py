"""GNA composed with what users stack on a pipeline: torch.compile, diffusers' cache hooks, layerwise casting, group
offloading and model CPU offload, on the tiny offline pipelines. Each must keep GNA running (a spy backend counts the
calls) and leave the stock pipeline exactly as it was once everything is disabled again."""

import warnings

import pytest
import torch
from diffusers.hooks import (
    FasterCacheConfig,
    FirstBlockCacheConfig,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
)

from gna_diffusers.tiny import TINY_PIPELINES
from spies import counting_backend

warnings.filterwarnings("ignore")
GRIDS = {"flux": [16, 16], "hunyuan_video": [2, 8, 8]}
CALLS = counting_backend("composition-spy")


def _recipe(model: str, dense_steps: int = 1) -> dict:
    return {"model": model, "grid": GRIDS[model], "dense_steps": dense_steps, "backend": "composition-spy",
            "layers": [{"blocks": "all", "window": [2] * len(GRIDS[model])}]}


def _latents(pipe, call_args, steps: int = 4) -> torch.Tensor:
    out = pipe("a cat w1", num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
               output_type="latent", **call_args)
    latents = out.images if hasattr(out, "images") else out.frames
    assert torch.isfinite(latents).all()
    return latents


CACHES = {
    "first_block": lambda pipe: FirstBlockCacheConfig(threshold=0.2),
    "taylor_seer": lambda pipe: TaylorSeerCacheConfig(),
    "mag": lambda pipe: MagCacheConfig(mag_ratios=[1.0] * 4, num_inference_steps=4),
    "pyramid_attention_broadcast": lambda pipe: PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, current_timestep_callback=lambda: pipe.current_timestep),
    "faster": lambda pipe: FasterCacheConfig(
        spatial_attention_block_skip_range=2, current_timestep_callback=lambda: pipe.current_timestep,
        attention_weight_callback=lambda _: 0.3, is_guidance_distilled=True),
}


@pytest.mark.parametrize("model", sorted(GRIDS))
@pytest.mark.parametrize("cache", sorted(CACHES))
def test_cache_hooks_compose(model: str, cache: str) -> None:
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    pipe.set_progress_bar_config(disable=True)
    stock = _latents(pipe, call_args)
    pipe.enable_gna(_recipe(model, dense_steps=0))     # a cache may skip every step after the first
    pipe.transformer.enable_cache(CACHES[cache](pipe))
    before = len(CALLS)
    _latents(pipe, call_args)
    assert len(CALLS) > before, f"{cache}: GNA never ran under the cache hook"
    pipe.transformer.disable_cache()
    pipe.disable_gna()
    assert torch.equal(_latents(pipe, call_args), stock)


@pytest.mark.parametrize("enable", [
    lambda t: t.enable_layerwise_casting(storage_dtype=torch.bfloat16, compute_dtype=torch.float32),
    lambda t: t.enable_group_offload(onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
                                     offload_type="block_level", num_blocks_per_group=1),
], ids=["layerwise_casting", "group_offload"])
def test_memory_hooks_compose(enable) -> None:
    builder, call_args = TINY_PIPELINES["flux"]
    pipe = builder(0)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_gna(_recipe("flux"))
    plain = _latents(pipe, call_args)
    enable(pipe.transformer)
    before = len(CALLS)
    hooked = _latents(pipe, call_args)
    assert len(CALLS) > before
    # group offloading moves weights, not values; bf16 storage rounds the weights, so only a loose match there
    torch.testing.assert_close(hooked, plain, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("model", sorted(GRIDS))
def test_model_cpu_offload_composes(model: str) -> None:
    """`enable_model_cpu_offload` puts accelerate hooks on every component that move it to the execution device for
    its forward and back after; on CPU-only torch diffusers runs it when given device="cpu" (the hooks wrap every
    component and move nothing). GNA keeps running under them, gives the latents it gives without them, and is still
    on after the call ends, when diffusers puts the hooks back."""
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_gna(_recipe(model))
    plain = _latents(pipe, call_args)
    pipe.enable_model_cpu_offload(device="cpu")
    assert pipe._all_hooks and hasattr(pipe.transformer, "_hf_hook")
    for _ in range(2):
        before = len(CALLS)
        assert torch.equal(_latents(pipe, call_args), plain)
        assert len(CALLS) > before


def test_regional_compile_has_no_graph_break() -> None:
    """`compile_repeated_blocks(fullgraph=True)` refuses any graph break inside a block: the GNA processors, the
    dense fast path and the custom op compile whole, and give the eager result on dense and GNA steps."""
    builder, call_args = TINY_PIPELINES["flux"]
    pipe = builder(0)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_gna({**_recipe("flux"), "backend": "reference"})
    eager = _latents(pipe, call_args, steps=3)
    pipe.transformer.compile_repeated_blocks(fullgraph=True)
    torch.testing.assert_close(_latents(pipe, call_args, steps=3), eager, atol=1e-5, rtol=1e-5)
