"""FLUX.2, Qwen-Image and HunyuanVideo 1.5 beyond the shared pipeline tests: reference-image and KV-cache layouts,
masked text, both attention streams of every layer against diffusers' own processors, grid readers that refuse."""

import warnings

import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_flux2 import Flux2KVAttnProcessor, Flux2KVParallelSelfAttnProcessor
from PIL import Image

import gna_diffusers
from gna_diffusers.backends import Backend, register_backend
from gna_diffusers.backends.reference import reference_forward
from gna_diffusers.tiny import TINY_PIPELINES
from spies import count_original_calls

warnings.filterwarnings("ignore")

SEEN: list = []   # (grid, extra tokens, masked extra tokens) of every GNA call that reached a backend


def recording_forward(inputs):
    extra = 0 if inputs.extra_key is None else inputs.extra_key.shape[1]
    masked = 0 if inputs.extra_mask is None else int((~inputs.extra_mask).sum())
    SEEN.append((inputs.params.grid, extra, masked))
    return reference_forward(inputs)


register_backend(Backend("recording", recording_forward, lambda inputs: None, priority=lambda device: -1))


def recipe(model: str, grid, window, dense_steps=0) -> dict:
    return {"model": model, "grid": list(grid), "dense_steps": dense_steps, "backend": "recording",
            "layers": [{"blocks": "all", "window": list(window)}]}


def latents(pipe, call_args, prompt="a cat w1 w2", **extra) -> torch.Tensor:
    out = pipe(prompt=prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent",
               **call_args, **extra)
    return out.images if hasattr(out, "images") else out.frames


def dense_full_small(pipe, call_args, model: str, grid, **extra) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pipeline's output dense, with a full window and with a 2-wide window; GNA left disabled."""
    dense = latents(pipe, call_args, **extra)
    try:
        pipe.enable_gna(recipe(model, grid, grid))
        full = latents(pipe, call_args, **extra)
        pipe.enable_gna(recipe(model, grid, [2] * len(grid)))
        small = latents(pipe, call_args, **extra)
    finally:
        pipe.disable_gna()
    return dense, full, small


def test_flux2_reference_image_tokens_are_dense_extra_keys() -> None:
    """Flux2Pipeline with a reference image: [text, grid, reference] tokens; grid queries see the reference tokens
    and all text besides their window, as in the dense model when the window is the whole grid."""
    builder, call_args = TINY_PIPELINES["flux2"]
    pipe = builder(0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    start = len(SEEN)
    dense, full, small = dense_full_small(pipe, call_args, "flux2", (12, 16), image=[image])
    torch.testing.assert_close(full, dense, atol=1e-4, rtol=1e-4)
    assert (small - dense).abs().max().item() > 1e-3
    assert set(SEEN[start:]) == {((12, 16), 16 + 32 * 32, 0)}   # 16 text + a 64 px reference image's tokens


def _kv_transformer():
    transformer = TINY_PIPELINES["flux2"][0](0).transformer
    for block in transformer.transformer_blocks:
        block.attn.set_processor(Flux2KVAttnProcessor())
    for block in transformer.single_transformer_blocks:
        block.attn.set_processor(Flux2KVParallelSelfAttnProcessor())
    return transformer


@torch.no_grad()
def _kv_run(transformer) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The Klein KV pipeline's two kinds of call: extract (reference tokens before the grid, cached) and cached."""
    torch.manual_seed(1)
    text, grid_tokens, refs = torch.randn(1, 16, 16), torch.randn(1, 96, 16), torch.randn(1, 32, 16)
    ids = lambda t, rows, cols: torch.cartesian_prod(torch.tensor([t]), torch.arange(rows), torch.arange(cols),
                                                     torch.arange(1))[None]
    text_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(16))[None]
    common = dict(encoder_hidden_states=text, txt_ids=text_ids, guidance=None, return_dict=False)
    extracted, cache = transformer(hidden_states=torch.cat([refs, grid_tokens], dim=1), timestep=torch.tensor([1.0]),
                                   img_ids=torch.cat([ids(10, 4, 8), ids(0, 8, 12)], dim=1), kv_cache_mode="extract",
                                   num_ref_tokens=32, **common)
    stored = [c.k_ref for c in cache.double_block_caches + cache.single_block_caches]
    cached = transformer(hidden_states=grid_tokens, timestep=torch.tensor([0.5]), img_ids=ids(0, 8, 12),
                         kv_cache=cache, kv_cache_mode="cached", **common)[0]
    return extracted, stored, cached


def test_flux2_kv_cache_modes_match_diffusers() -> None:
    """Klein KV layouts on the bare transformer: extract ([text, refs, grid], refs attend only to themselves and are
    cached) and cached (the cached refs join the keys between text and grid) give diffusers' own KV processors'
    outputs and cache with a full window; the grid queries see text and references as extra keys."""
    transformer = _kv_transformer()
    dense_extract, dense_cache, dense_cached = _kv_run(transformer)
    gna_diffusers.enable_gna(transformer, recipe("flux2", (8, 12), (8, 12)))
    start = len(SEEN)
    try:
        extract, cache, cached = _kv_run(transformer)
        assert set(SEEN[start:]) == {((8, 12), 16 + 32, 0)}
        gna_diffusers.enable_gna(transformer, recipe("flux2", (8, 12), (2, 2)))
        small_cached = _kv_run(transformer)[2]
    finally:
        gna_diffusers.disable_gna(transformer)
    torch.testing.assert_close(extract, dense_extract, atol=1e-5, rtol=1e-5)
    for got, expected in zip(cache, dense_cache):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached, dense_cached, atol=1e-5, rtol=1e-5)
    assert (small_cached - dense_cached).abs().max().item() > 1e-3
    assert all(isinstance(block.attn.processor, Flux2KVAttnProcessor) for block in transformer.transformer_blocks)


@pytest.mark.parametrize("dense_path", ["fast", "original"])
def test_flux2_kv_cache_modes_dense_steps_match_diffusers(dense_path: str) -> None:
    """Dense steps of the Klein KV layouts: on the fast path the grid queries see every key (text, references, grid)
    and the references only themselves, as diffusers' KV processors compute it; on the original path they are
    diffusers' processors, bit for bit. No GNA call either way."""
    transformer = _kv_transformer()
    expected = _kv_run(transformer)
    gna_diffusers.enable_gna(transformer, {**recipe("flux2", (8, 12), (2, 2), dense_steps=1000),
                                           "dense_path": dense_path})
    start = len(SEEN)
    try:
        original_calls = count_original_calls(transformer)
        got = _kv_run(transformer)
        assert gna_diffusers.gna_state(transformer).dense_now
    finally:
        gna_diffusers.disable_gna(transformer)
    assert len(SEEN) == start and (original_calls[0] == 0) == (dense_path == "fast")
    extract, cache, cached = got
    for ours, stock in zip([extract, *cache, cached], [expected[0], *expected[1], expected[2]]):
        assert torch.isfinite(ours).all()
        if dense_path == "fast":
            torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(ours, stock)


def test_flux2_kv_arguments_without_kv_processors_run_the_original() -> None:
    """diffusers' standard FLUX.2 processors ignore KV-cache arguments (the references then sit before the grid as
    ordinary image tokens); GNA leaves those calls to them, so the output is exactly the original's."""
    transformer = TINY_PIPELINES["flux2"][0](0).transformer
    dense = _kv_run(transformer)
    gna_diffusers.enable_gna(transformer, recipe("flux2", (8, 12), (2, 2)))
    start = len(SEEN)
    try:
        gna = _kv_run(transformer)
    finally:
        gna_diffusers.disable_gna(transformer)
    assert len(SEEN) == start and torch.equal(gna[0], dense[0]) and torch.equal(gna[2], dense[2])


def test_qwen_image_padded_text_is_masked() -> None:
    """Two prompts of different lengths: the shorter one's padding is masked for the grid queries' extra keys and
    for the text queries, as diffusers masks it; a full window gives the dense output."""
    builder, call_args = TINY_PIPELINES["qwen_image"]
    pipe = builder(0)
    start = len(SEEN)
    dense, full, small = dense_full_small(pipe, call_args, "qwen_image", (12, 16), prompt=["a cat w1 w2", "a dog"])
    torch.testing.assert_close(full, dense, atol=1e-4, rtol=1e-4)
    assert (small - dense).abs().max().item() > 1e-3
    assert set(SEEN[start:]) == {((12, 16), 6, 2)}       # 6 text slots, 2 of them padding (of "a dog")


@torch.no_grad()
def test_qwen_image_condition_image_tokens_follow_the_grid() -> None:
    """The edit pipelines' layout: img_shapes lists the generated image, then condition images whose tokens follow
    the grid; they are dense extra keys of the grid queries, and a full window gives the dense output."""
    transformer = TINY_PIPELINES["qwen_image"][0](0).transformer
    torch.manual_seed(2)
    inputs = dict(hidden_states=torch.randn(1, 12 * 16 + 4 * 6, 16), encoder_hidden_states=torch.randn(1, 5, 16),
                  timestep=torch.tensor([0.5]), img_shapes=[[(1, 12, 16), (1, 4, 6)]], return_dict=False)
    dense = transformer(**inputs)[0]
    gna_diffusers.enable_gna(transformer, recipe("qwen_image", (12, 16), (12, 16)))
    start = len(SEEN)
    try:
        full = transformer(**inputs)[0]
    finally:
        gna_diffusers.disable_gna(transformer)
    torch.testing.assert_close(full, dense, atol=1e-5, rtol=1e-5)
    assert set(SEEN[start:]) == {((12, 16), 5 + 24, 0)}


@pytest.mark.parametrize("model,grid,prompt", [("flux2", (12, 16), "a cat w1 w2"),
                                               ("qwen_image", (12, 16), ["a cat w1 w2", "a dog"]),
                                               ("hunyuan_video15", (3, 8, 12), 'a sign saying "hi" w1')])
def test_both_streams_of_every_layer_match_the_original(model, grid, prompt) -> None:
    """With a full window, every GNA attention module returns what diffusers' processor returns, image/video stream
    and text stream alike, including HunyuanVideo 1.5's padded conditioning queries (zeros under its N x N mask) and
    its glyph text."""
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    outputs: list = []
    hooks = [block.attn.register_forward_hook(lambda module, args, out: outputs.append(out))
             for stack in ("transformer_blocks", "single_transformer_blocks")
             for block in getattr(pipe.transformer, stack, [])]
    try:
        latents(pipe, call_args, prompt=prompt)
        dense, outputs[:] = list(outputs), []
        pipe.enable_gna(recipe(model, grid, grid))
        latents(pipe, call_args, prompt=prompt)
    finally:
        pipe.disable_gna()
        for hook in hooks:
            hook.remove()
    assert len(outputs) == len(dense) > 0
    for got, expected in zip(outputs, dense):
        for g, e in zip(*((x,) if isinstance(x, torch.Tensor) else x for x in (got, expected))):
            torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_grid_readers_refuse_what_is_not_a_grid() -> None:
    flux2 = TINY_PIPELINES["flux2"][0](0).transformer
    gna_diffusers.enable_gna(flux2, recipe("flux2", (8, 12), (2, 2)))
    ids = torch.cartesian_prod(torch.arange(1), torch.arange(8), torch.arange(12), torch.arange(1))
    text_ids = torch.zeros(1, 4, 4, dtype=torch.long)
    inputs = dict(hidden_states=torch.randn(1, 96, 16), encoder_hidden_states=torch.randn(1, 4, 16),
                  timestep=torch.tensor([0.5]), txt_ids=text_ids, guidance=torch.tensor([4.0]))
    try:
        with pytest.raises(ValueError, match="not one row-major 8x12 grid"):
            flux2(img_ids=ids.flip(0)[None], **inputs)             # column order reversed
        with pytest.raises(ValueError, match="no token at time 0"):
            flux2(img_ids=(ids + torch.tensor([1, 0, 0, 0]))[None], **inputs)
        with pytest.raises(ValueError, match="img_ids has 48 positions but hidden_states has 96"):
            flux2(img_ids=ids[None, :48], **inputs)
    finally:
        gna_diffusers.disable_gna(flux2)
    qwen = TINY_PIPELINES["qwen_image"][0](0).transformer
    gna_diffusers.enable_gna(qwen, recipe("qwen_image", (12, 16), (2, 2)))
    try:
        with pytest.raises(ValueError, match=r"img_shapes=\[\(1, 12, 12\)\] describe 144 tokens but hidden_states "
                                             r"has 192"):
            qwen(hidden_states=torch.randn(1, 192, 16), encoder_hidden_states=torch.randn(1, 5, 16),
                 timestep=torch.tensor([0.5]), img_shapes=[[(1, 12, 12)]])
    finally:
        gna_diffusers.disable_gna(qwen)


def test_unsupported_classes_and_mismatched_recipes_are_named() -> None:
    with pytest.raises(ValueError, match="supported transformers: .*Flux2Transformer2DModel.*"
                                         "HunyuanVideo15Transformer3DModel.*QwenImageTransformer2DModel"):
        gna_diffusers.enable_gna(torch.nn.Linear(2, 2), "flux2-dev-4k")
    pipe = TINY_PIPELINES["qwen_image"][0](0)
    with pytest.raises(gna_diffusers.RecipeError, match="for model 'flux2', but this transformer is "
                                                        "QwenImageTransformer2DModel"):
        pipe.enable_gna("flux2-dev-4k")
