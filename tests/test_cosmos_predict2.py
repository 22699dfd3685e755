"""Cosmos-Predict2 / 2.5 configurations of CosmosTransformer3DModel beyond the shared pipeline tests: the 2.5 text
projection and image context (attn2 with CosmosAttnProcessor2_5), the 2.5 pipeline, per-frame timesteps, and the
shipped recipes' claims."""

import warnings

import pytest
import torch
from diffusers import CosmosTransformer3DModel, UniPCMultistepScheduler
from diffusers.models.transformers.transformer_cosmos import CosmosAttnProcessor2_0, CosmosAttnProcessor2_5
from diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict import Cosmos2_5_PredictBasePipeline

import gna_diffusers
from gna_diffusers.models.cosmos import CosmosGNAProcessor
from gna_diffusers.tiny import AlwaysSafe, TINY_PIPELINES, _wan_vae
from spies import check_full_window_is_dense, counting_backend

warnings.filterwarnings("ignore")

CALLS = counting_backend("cosmos2_spy")   # the grid of every GNA attention that reached a backend


def recipe(grid, window, dense_steps=0) -> dict:
    return {"model": "cosmos", "grid": list(grid), "dense_steps": dense_steps, "backend": "cosmos2_spy",
            "layers": [{"blocks": "all", "window": window}]}


def _predict25_transformer(image_context: bool) -> CosmosTransformer3DModel:
    """Cosmos-Predict2.5 layout: condition-mask channel, a projection of the concatenated Qwen2.5-VL layers to the
    text width; with `image_context`, Transfer2.5's image tokens reach attn2 (CosmosAttention, processor 2.5)."""
    torch.manual_seed(0)
    extra = dict(img_context_dim_in=24, img_context_num_tokens=4, img_context_dim_out=32) if image_context else {}
    return CosmosTransformer3DModel(in_channels=17, out_channels=16, num_attention_heads=2, attention_head_dim=16,
                                    num_layers=2, mlp_ratio=2, text_embed_dim=32, adaln_lora_dim=4,
                                    max_size=(4, 32, 32), patch_size=(1, 2, 2), rope_scale=(1.0, 3.0, 3.0),
                                    concat_padding_mask=False, extra_pos_embed_type=None,
                                    use_crossattn_projection=True, crossattn_proj_in_channels=48,
                                    encoder_hidden_states_channels=32, **extra).eval()


@torch.no_grad()
def test_image_context_stays_in_cross_attention_and_full_window_is_dense() -> None:
    transformer = _predict25_transformer(image_context=True)
    timestep = torch.full((1, 1, 3, 1, 1), 0.6)
    timestep[:, :, 0] = 1e-4                      # a conditioning frame, as video2world gives it
    inputs = dict(hidden_states=torch.randn(1, 16, 3, 8, 12), condition_mask=torch.zeros(1, 1, 3, 8, 12),
                  timestep=timestep, encoder_hidden_states=(torch.randn(1, 16, 48), torch.randn(1, 4, 24)))
    cross = [block.attn2.processor for block in transformer.transformer_blocks]
    assert all(isinstance(p, CosmosAttnProcessor2_5) for p in cross)

    def gna_in_self_attention_only() -> None:
        assert all(isinstance(block.attn1.processor, CosmosGNAProcessor) for block in transformer.transformer_blocks)
        assert [block.attn2.processor for block in transformer.transformer_blocks] == cross
    check_full_window_is_dense(transformer, inputs, recipe, (3, 4, 6), CALLS, layers=2,
                               while_on=gna_in_self_attention_only)
    assert all(isinstance(block.attn1.processor, CosmosAttnProcessor2_0) for block in transformer.transformer_blocks)


def _predict25_pipeline() -> Cosmos2_5_PredictBasePipeline:
    """The 2.5 pipeline with prompt embeddings given directly: its Qwen2.5-VL text encoder is not needed offline."""
    return Cosmos2_5_PredictBasePipeline(
        text_encoder=None, tokenizer=None, transformer=_predict25_transformer(image_context=False), vae=_wan_vae(),
        scheduler=UniPCMultistepScheduler(use_karras_sigmas=True, use_flow_sigmas=True,
                                          prediction_type="flow_prediction", sigma_max=200.0, sigma_min=0.01),
        safety_checker=AlwaysSafe())


def test_predict25_pipeline_full_window_is_dense_and_steps_follow_its_scheduler() -> None:
    pipe = _predict25_pipeline()
    torch.manual_seed(1)
    embeds = dict(prompt_embeds=torch.randn(1, 16, 48), negative_prompt_embeds=torch.randn(1, 16, 48))
    modes = []

    def run(steps: int = 3) -> torch.Tensor:
        def record(pipe_, step, timestep, kwargs):
            state = gna_diffusers.gna_state(pipe_)
            modes.append(None if state is None else state.dense_now)
            return kwargs
        return pipe(height=64, width=96, num_frames=9, num_inference_steps=steps, output_type="latent",
                    generator=torch.Generator().manual_seed(0), callback_on_step_end=record, **embeds).frames

    dense = run()
    pipe.enable_gna(recipe((3, 4, 6), [3, 4, 6]))
    try:
        full = run()
        pipe.enable_gna(recipe((3, 4, 6), 2, dense_steps=1))
        modes.clear()
        start = len(CALLS)
        small = run()
        assert modes == [True, False, False] and len(CALLS) - start == 2 * 2 * 2   # 2 steps x CFG x 2 layers
    finally:
        pipe.disable_gna()
    torch.testing.assert_close(full, dense, atol=1e-4, rtol=1e-4)
    assert (small - dense).abs().max().item() > 1e-3
    assert torch.equal(run(), dense)


@torch.no_grad()
def test_per_frame_timesteps_count_steps_by_their_noise_level() -> None:
    """video2world gives the conditioning frames a near-zero timestep: a bare transformer's steps follow the rest."""
    transformer = TINY_PIPELINES["cosmos_predict2_video"][0](0).transformer
    inputs = dict(hidden_states=torch.randn(1, 16, 3, 8, 12), condition_mask=torch.zeros(1, 1, 3, 8, 12),
                  encoder_hidden_states=torch.randn(1, 16, 32))
    state = gna_diffusers.enable_gna(transformer, recipe((3, 4, 6), 2, dense_steps=1))
    seen = []
    try:
        for t in (0.9, 0.9, 0.5, 0.1, 0.9):
            timestep = torch.full((1, 1, 3, 1, 1), t)
            timestep[:, :, 0] = 1e-4
            transformer(timestep=timestep, **inputs)
            seen.append(state.dense_now)
    finally:
        gna_diffusers.disable_gna(transformer)
    assert seen == [True, True, False, False, True]


@pytest.mark.parametrize("name,grid,block_sparse,tile_bound", [
    ("cosmos-predict2-video2world", (24, 44, 80), True, 12.22),   # 704x1280, 93 frames
    ("cosmos-predict2-text2image", (48, 85), False, 4.18),         # 768x1360, one frame
])
def test_cosmos_predict2_recipes_are_what_their_files_say(name, grid, block_sparse, tile_bound) -> None:
    r = gna_diffusers.load_recipe(name)
    group = r.layers[0]
    assert r.model == "cosmos" and r.grid == grid and r.dense_steps == 0.3
    sim = gna_diffusers.simulate(r.grid, group.window, group.stride)
    assert sim.fully_block_sparse == block_sparse
    assert sim.tile_bound == pytest.approx(tile_bound, abs=0.005)
