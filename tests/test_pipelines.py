"""GNA inside tiny offline FLUX, HunyuanVideo, Cosmos, Wan, FLUX.2, Qwen-Image and HunyuanVideo 1.5 pipelines: the
real diffusers code paths, a few steps."""

import warnings

import pytest
import torch

import gna_diffusers
from gna_diffusers.backends import Backend, register_backend
from gna_diffusers.backends.reference import reference_forward
from gna_diffusers.compare import after_each_step
from gna_diffusers.tiny import TINY_PIPELINES

GRIDS = {"flux": [16, 16], "hunyuan_video": [2, 8, 8], "cosmos": [3, 8, 8], "wan": [3, 4, 6], "wan_22": [3, 4, 6],
         "cosmos_predict2": [4, 6], "cosmos_predict2_video": [3, 4, 6], "flux2": [12, 16], "qwen_image": [12, 16],
         "hunyuan_video15": [3, 8, 12]}
LAYERS = {"flux": 4, "hunyuan_video": 4, "cosmos": 2, "wan": 2, "wan_22": 2, "cosmos_predict2": 2,
          "cosmos_predict2_video": 2, "flux2": 4, "qwen_image": 2,
          "hunyuan_video15": 2}                                   # GNA attention modules a transformer call runs
CALLS_PER_STEP = {"flux": 1, "hunyuan_video": 1, "cosmos": 2, "wan": 2, "wan_22": 2, "cosmos_predict2": 2,
                  "cosmos_predict2_video": 2, "flux2": 1, "qwen_image": 1,
                  "hunyuan_video15": 2}     # transformer calls per step (Cosmos, Wan, HunyuanVideo 1.5: CFG)
RECIPE_MODEL = {"wan_22": "wan", "cosmos_predict2": "cosmos", "cosmos_predict2_video": "cosmos"}  # else the name
MODELS = sorted(GRIDS)

warnings.filterwarnings("ignore")

SPY_CALLS: list = []   # every GNA attention that really reached a backend: observed, not assumed


def spy_forward(inputs):
    SPY_CALLS.append(inputs.params.grid)
    return reference_forward(inputs)


register_backend(Backend("spy", spy_forward, lambda inputs: None, priority=lambda device: -1))


@pytest.fixture(scope="module", params=MODELS)
def tiny(request):
    builder, call_args = TINY_PIPELINES[request.param]
    return request.param, builder(0), call_args


def generate(pipe, call_args, steps=3, prompt="a cat w1 w2", **extra):
    out = pipe(prompt=prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
               output_type="latent", **call_args, **extra)
    latents = out.images if hasattr(out, "images") else out.frames
    assert torch.isfinite(latents).all()
    return latents


def recipe(model, window, dense_steps=0, **layer):
    return {"model": RECIPE_MODEL.get(model, model), "grid": GRIDS[model], "dense_steps": dense_steps,
            "backend": "spy", "layers": [{"blocks": "all", "window": window, **layer}]}


def test_full_window_equals_dense_and_small_window_differs(tiny) -> None:
    model, pipe, call_args = tiny
    dense = generate(pipe, call_args)
    pipe.enable_gna(recipe(model, GRIDS[model]))
    try:
        full = generate(pipe, call_args)
        assert gna_diffusers.gna_state(pipe).grid == tuple(GRIDS[model])
        torch.testing.assert_close(full, dense, atol=1e-4, rtol=1e-4)
        pipe.enable_gna(recipe(model, [2] * len(GRIDS[model]), stride=1))   # enabling again replaces the recipe
        small = generate(pipe, call_args)
        assert (small - dense).abs().max().item() > 1e-3
    finally:
        pipe.disable_gna()
    assert torch.equal(generate(pipe, call_args), dense)


def test_dense_steps_are_dense_then_gna(tiny) -> None:
    model, pipe, call_args = tiny
    calls_after_step = []

    def record(pipe_, step, timestep, kwargs):
        calls_after_step.append(len(SPY_CALLS) - start)
        return kwargs

    pipe.enable_gna(recipe(model, [2] * len(GRIDS[model]), dense_steps=2))
    start = len(SPY_CALLS)
    try:
        with after_each_step(pipe, record) as hook:
            generate(pipe, call_args, steps=4, **hook)
        per_step = LAYERS[model] * CALLS_PER_STEP[model]
        assert calls_after_step == [0, 0, per_step, 2 * per_step]
        # the count resets at the next call, and a fraction of the steps works too
        calls_after_step.clear()
        start = len(SPY_CALLS)
        pipe.enable_gna(recipe(model, [2] * len(GRIDS[model]), dense_steps=0.5))
        with after_each_step(pipe, record) as hook:
            generate(pipe, call_args, steps=2, **hook)
        assert calls_after_step == [0, per_step]
        # all steps dense on the original path: exactly the original pipeline (the fast dense path is the same
        # function on other kernels: tests/test_dense_path.py)
        pipe.enable_gna({**recipe(model, [2] * len(GRIDS[model]), dense_steps=3), "dense_path": "original"})
        with_gna = generate(pipe, call_args, steps=3)
    finally:
        pipe.disable_gna()
    assert torch.equal(with_gna, generate(pipe, call_args, steps=3))


def test_batch_two_with_guidance(tiny) -> None:
    model, pipe, call_args = tiny
    extra = {"flux": dict(true_cfg_scale=2.0, negative_prompt="blurry"), "hunyuan_video": dict(),
             "cosmos": dict(guidance_scale=3.0), "wan": dict(guidance_scale=3.0), "wan_22": dict(guidance_scale=3.0),
             "cosmos_predict2": dict(guidance_scale=3.0), "cosmos_predict2_video": dict(guidance_scale=3.0),
             "flux2": dict(), "qwen_image": dict(true_cfg_scale=2.0, negative_prompt="blurry"),
             "hunyuan_video15": dict()}[model]
    prompts = ["a cat w1 w2", "w3 w4 a dog"]
    dense = generate(pipe, call_args, prompt=prompts, **extra)
    assert dense.shape[0] == 2
    pipe.enable_gna(recipe(model, GRIDS[model]))
    try:
        full = generate(pipe, call_args, prompt=prompts, **extra)
        pipe.enable_gna(recipe(model, [2] * len(GRIDS[model])))
        start = len(SPY_CALLS)
        small = generate(pipe, call_args, prompt=prompts, **extra)
        guided_calls = {"flux": 2, "hunyuan_video": 1, "cosmos": 2,   # FLUX true CFG: two calls a step
                        "wan": 2, "wan_22": 2, "cosmos_predict2": 2, "cosmos_predict2_video": 2,
                        "flux2": 1, "qwen_image": 2, "hunyuan_video15": 2}[model]
        assert len(SPY_CALLS) - start == LAYERS[model] * guided_calls * 3
    finally:
        pipe.disable_gna()
    torch.testing.assert_close(full, dense, atol=1e-4, rtol=1e-4)
    assert (small - dense).abs().max().item() > 1e-3


def test_layer_selection_leaves_other_layers_dense(tiny) -> None:
    model, pipe, call_args = tiny
    blocks = {"flux": "single:0-1", "hunyuan_video": "double:1", "cosmos": [1],
              "wan": [1], "wan_22": [1], "cosmos_predict2": [1], "cosmos_predict2_video": [1],
              "flux2": "single:0-1", "qwen_image": [1], "hunyuan_video15": "blocks:1"}[model]
    pipe.enable_gna({**recipe(model, [2] * len(GRIDS[model])),
                     "layers": [{"blocks": blocks, "window": [2] * len(GRIDS[model])}]})
    start = len(SPY_CALLS)
    try:
        generate(pipe, call_args, steps=1)
        selected = {"flux": 2, "hunyuan_video": 1, "cosmos": 1,
                    "wan": 1, "wan_22": 1, "cosmos_predict2": 1, "cosmos_predict2_video": 1,
                    "flux2": 2, "qwen_image": 1, "hunyuan_video15": 1}[model]
        assert len(SPY_CALLS) - start == selected * CALLS_PER_STEP[model]
    finally:
        pipe.disable_gna()


def test_bare_transformer_counts_steps_by_timestep() -> None:
    builder, _ = TINY_PIPELINES["cosmos"]
    transformer = builder(0).transformer
    state = gna_diffusers.enable_gna(transformer, recipe("cosmos", [2, 2, 2], dense_steps=1))
    start = len(SPY_CALLS)
    x = torch.randn(1, 4, 3, 16, 16)
    text = torch.randn(1, 16, 32)
    try:
        for t in (900.0, 900.0, 500.0, 100.0, 900.0):
            transformer(hidden_states=x, timestep=torch.tensor([t]), encoder_hidden_states=text)
            assert state.dense_now == (t == 900.0)
    finally:
        gna_diffusers.disable_gna(transformer)
    assert len(SPY_CALLS) - start == 2 * LAYERS["cosmos"]


def test_recipe_model_mismatch_and_unsupported_model() -> None:
    pipe = TINY_PIPELINES["flux"][0](0)
    with pytest.raises(gna_diffusers.RecipeError, match="for model 'cosmos'"):
        pipe.enable_gna("cosmos-7b-text2world")
    with pytest.raises(ValueError, match="supported transformers: .*FluxTransformer2DModel"):
        gna_diffusers.enable_gna(torch.nn.Linear(2, 2), "flux-dev-4k")
    with pytest.raises(ValueError, match="fraction"):
        gna_diffusers.enable_gna(pipe.transformer, "flux-dev-4k")


def test_shipped_recipe_scales_to_the_tiny_grid(tiny) -> None:
    model, pipe, call_args = tiny
    name = {"flux": "flux-dev-4k", "hunyuan_video": "hunyuan-video-720p", "cosmos": "cosmos-7b-text2world",
            "wan": "wan-720p", "wan_22": "wan-720p", "cosmos_predict2": "cosmos-predict2-text2image",
            "cosmos_predict2_video": "cosmos-predict2-video2world",
            "flux2": "flux2-dev-4k", "qwen_image": "qwen-image-4k", "hunyuan_video15": "hunyuan-video15-720p"}[model]
    state = pipe.enable_gna(name)
    try:
        generate(pipe, call_args, steps=2)
        assert state.grid == tuple(GRIDS[model]) and not state.dense_now   # the second of two steps is GNA
    finally:
        pipe.disable_gna()


@torch.no_grad()   # inference only, as in pipelines: the GNA op has no backward
def test_compiled_transformer_keeps_gna_in_one_graph_without_recompiles() -> None:
    """GNA is a custom op inside the compiled graph; the pre-hook runs eagerly, so steps do not recompile."""
    builder, _ = TINY_PIPELINES["cosmos"]
    transformer = builder(0).transformer
    inputs = dict(hidden_states=torch.randn(1, 4, 3, 16, 16), encoder_hidden_states=torch.randn(1, 16, 32))
    gna_diffusers.enable_gna(transformer, recipe("cosmos", [2, 2, 2]))
    try:
        explained = torch._dynamo.explain(transformer)(timestep=torch.tensor([500.0]), **inputs)
        assert explained.graph_break_count <= 1                  # the eager pre-hook, not one per attention
        ops = [str(n.target) for g in explained.graphs for n in g.graph.nodes]
        assert sum("gna_diffusers.gna_attention" in op for op in ops) == LAYERS["cosmos"]
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        gna_diffusers.enable_gna(transformer, recipe("cosmos", [2, 2, 2], dense_steps=1))
        compiled = torch.compile(transformer, backend="aot_eager")
        start = len(SPY_CALLS)
        for t in (900.0, 700.0, 500.0, 300.0):                     # 1 dense step, then 3 GNA steps
            out = compiled(timestep=torch.tensor([t]), **inputs)[0]
        assert len(SPY_CALLS) - start == 3 * LAYERS["cosmos"]
        torch.testing.assert_close(out, transformer(timestep=torch.tensor([300.0]), **inputs)[0], atol=1e-5,
                                   rtol=1e-5)
        frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert frames <= 4, f"{frames} graphs compiled for 4 steps: the step index leaked into the graph"
    finally:
        gna_diffusers.disable_gna(transformer)
