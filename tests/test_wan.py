"""Wan beyond the shared pipeline tests: Wan 2.2 A14B's two transformers, Wan 2.1 I2V's image tokens, Wan 2.2
TI2V's per-token timesteps, single-frame latents, and the shipped recipes' claims."""

import warnings

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

import gna_diffusers
from gna_diffusers.models.wan import WanGNAProcessor
from gna_diffusers.ops.params import GNAParams
from gna_diffusers.ops.tiles import choose_tiles
from gna_diffusers.tiny import TINY_PIPELINES
from spies import check_full_window_is_dense, counting_backend

warnings.filterwarnings("ignore")

CALLS = counting_backend("wan_spy")   # the grid of every GNA attention that reached a backend


def recipe(grid, window, dense_steps=0, blocks="all") -> dict:
    return {"model": "wan", "grid": list(grid), "dense_steps": dense_steps, "backend": "wan_spy",
            "layers": [{"blocks": blocks, "window": window}]}


def generate(pipe, call_args, steps=4, **extra):
    return pipe(prompt="a cat w1 w2", num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                output_type="latent", **call_args, **extra).frames


def attention_processors(transformer) -> dict:
    return {name: module.processor for name, module in transformer.named_modules() if hasattr(module, "processor")}


def test_wan_22_patches_both_transformers_and_counts_pipeline_steps() -> None:
    builder, call_args = TINY_PIPELINES["wan_22"]
    pipe = builder(0)
    experts = (pipe.transformer, pipe.transformer_2)
    before = [attention_processors(t) for t in experts]
    dense = generate(pipe, call_args)
    calls = []                                   # (expert, pipeline step, dense?) of every transformer call
    state = pipe.enable_gna(recipe((3, 4, 6), 2, dense_steps=3))
    hooks = [t.register_forward_hook(lambda m, a, o, e=e: calls.append((e, state.step, state.dense_now, len(CALLS))))
             for e, t in enumerate(experts)]
    try:
        for t in experts:
            assert all(isinstance(t.blocks[i].attn1.processor, WanGNAProcessor) for i in range(2))
            assert all(isinstance(t.blocks[i].attn2.processor, WanAttnProcessor) for i in range(2))
        start = len(CALLS)
        generate(pipe, call_args)
    finally:
        for hook in hooks:
            hook.remove()
        pipe.disable_gna()
    # the pipeline's own rule, from its scheduler: timesteps at or above the boundary go to the high-noise expert
    boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
    expected_expert = [0 if t >= boundary else 1 for t in pipe.scheduler.timesteps]
    assert expected_expert == [0, 0, 1, 1]       # the tiny pipeline splits its 4 steps between the experts
    assert [(e, step, dense) for e, step, dense, _ in calls] == [
        (expected_expert[step], step, step < 3) for step in range(4) for _ in range(2)]   # CFG: two calls a step
    # the low-noise expert's first call is pipeline step 2: dense, though it is that expert's first step; step 3 GNA
    per_call = [n - start for *_, n in calls]
    assert per_call == [0] * 6 + [2, 4]          # two GNA layers in each of the last step's two calls
    for t, processors in zip(experts, before):
        assert all(attention_processors(t)[name] is p for name, p in processors.items())
        assert not hasattr(t, "_gna")
    assert torch.equal(generate(pipe, call_args), dense)


def test_the_same_module_twice_is_patched_once() -> None:
    builder, call_args = TINY_PIPELINES["wan_22"]
    pipe = builder(0)
    pipe.transformer_2 = pipe.transformer        # a pipeline may hold one module under both names
    before = attention_processors(pipe.transformer)
    pipe.enable_gna(recipe((3, 4, 6), 2))
    pipe.disable_gna()
    assert all(attention_processors(pipe.transformer)[name] is p for name, p in before.items())


def _i2v_transformer() -> WanTransformer3DModel:
    """Wan 2.1 I2V layout: 16 noise + 20 conditioning channels in, CLIP image tokens through attn2's added K/V."""
    torch.manual_seed(0)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=36,
                                 out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2, image_dim=16,
                                 added_kv_proj_dim=32, rope_max_seq_len=32).eval()


@torch.no_grad()
def test_wan_i2v_full_window_is_dense_and_image_tokens_stay_in_cross_attention() -> None:
    transformer = _i2v_transformer()
    inputs = dict(hidden_states=torch.randn(1, 36, 3, 8, 12), timestep=torch.tensor([700.0]),
                  encoder_hidden_states=torch.randn(1, 512, 32),          # umT5's 512 slots, as the processor assumes
                  encoder_hidden_states_image=torch.randn(1, 5, 16))
    cross = [block.attn2.processor for block in transformer.blocks]

    def cross_attention_untouched() -> None:
        assert [block.attn2.processor for block in transformer.blocks] == cross
    check_full_window_is_dense(transformer, inputs, recipe, (3, 4, 6), CALLS, layers=2,
                               while_on=cross_attention_untouched)


@torch.no_grad()
def test_per_token_timesteps_count_steps_by_their_noise_level() -> None:
    """Wan 2.2 TI2V gives each token its own timestep, 0 for the clean first frame: steps follow the largest."""
    transformer = TINY_PIPELINES["wan"][0](0).transformer
    x, text = torch.randn(1, 16, 3, 8, 12), torch.randn(1, 16, 32)
    state = gna_diffusers.enable_gna(transformer, recipe((3, 4, 6), 2, dense_steps=1))
    seen = []
    try:
        for t in (900.0, 900.0, 500.0, 100.0, 900.0):
            timestep = torch.full((1, 3 * 4 * 6), t)
            timestep[:, :4 * 6] = 0.0                                   # the conditioning frame
            transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=text)
            seen.append(state.dense_now)
    finally:
        gna_diffusers.disable_gna(transformer)
    assert seen == [True, True, False, False, True]


@torch.no_grad()
def test_a_single_frame_is_a_2d_grid() -> None:
    """Wan used as an image model (num_frames=1): the grid is (H, W); a 3D recipe cannot apply and says why."""
    transformer = TINY_PIPELINES["wan"][0](0).transformer
    inputs = dict(hidden_states=torch.randn(1, 16, 1, 8, 12), timestep=torch.tensor([500.0]),
                  encoder_hidden_states=torch.randn(1, 16, 32))
    dense = transformer(**inputs)[0]
    try:
        state = gna_diffusers.enable_gna(transformer, recipe((4, 6), [4, 6]))
        full = transformer(**inputs)[0]
        assert state.grid == (4, 6)
        gna_diffusers.enable_gna(transformer, recipe((21, 45, 80), [10, 24, 24]))
        with pytest.raises(gna_diffusers.RecipeError, match=r"grid \(4, 6\) has 2 dimensions"):
            transformer(**inputs)
    finally:
        gna_diffusers.disable_gna(transformer)
    torch.testing.assert_close(full, dense, atol=1e-5, rtol=1e-5)


def test_unsupported_transformer_names_wan_among_the_supported() -> None:
    with pytest.raises(ValueError, match="supported transformers: .*WanTransformer3DModel"):
        gna_diffusers.enable_gna(torch.nn.Linear(2, 2), "wan-720p")
    with pytest.raises(gna_diffusers.RecipeError, match="for model 'wan'"):
        TINY_PIPELINES["cosmos"][0](0).enable_gna("wan-720p")


@pytest.mark.parametrize("name,grid,block_sparse,tile_bound", [
    ("wan-720p", (21, 45, 80), False, 10.04),        # 1280x720, 81 frames
    ("wan-720p-fast", (21, 45, 80), False, 12.47),
    ("wan-768p", (21, 48, 80), True, 10.00),         # 1280x768, 81 frames
    ("wan-480p", (21, 30, 52), False, 6.00),         # 832x480, 81 frames
    ("wan-ti2v-5b-720p", (31, 22, 40), False, 7.63),  # 1280x704, 121 frames, 16x VAE
])
def test_wan_recipes_are_what_their_files_say(name, grid, block_sparse, tile_bound) -> None:
    r = gna_diffusers.load_recipe(name)
    group = r.layers[0]
    assert r.model == "wan" and r.grid == grid and r.dense_steps == 0.3
    sim = gna_diffusers.simulate(r.grid, group.window, group.stride)
    assert sim.fully_block_sparse == block_sparse
    assert sim.tile_bound == pytest.approx(tile_bound, abs=0.005)
    if name == "wan-720p":
        # the bar: ~8.5x on self-attention; the kernel's own tile choice keeps the bound above 10x
        q, kv = choose_tiles(GNAParams.make(r.grid, group.window, group.stride))
        assert gna_diffusers.simulate(r.grid, group.window, group.stride, q_tile=q, kv_tile=kv).tile_bound > 10
