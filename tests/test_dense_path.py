"""Dense steps on the fast path (valid keys only, unmasked, fastest SDPA kernel) and on the kernel path (the GNA op
with the window equal to the grid, the valid text as extra tokens) compute the original processors' function: whole
tiny pipelines, every step dense, against stock diffusers; padded prompts of different lengths in one batch included,
so dropping padded keys is checked against masking them. `dense_path: original` and disable_gna give stock diffusers'
output bit for bit."""

import pytest
import torch

import gna_diffusers
from gna_diffusers.backends import cutlass
from gna_diffusers.models import common
from gna_diffusers.models.common import dense_attention
from gna_diffusers.pipeline import transformers_and_scheduler
from gna_diffusers.tiny import TINY_PIPELINES
from spies import count_original_calls

GRIDS = {"flux": [16, 16], "hunyuan_video": [2, 8, 8], "cosmos": [3, 8, 8], "wan": [3, 4, 6], "wan_22": [3, 4, 6],
         "flux2": [12, 16], "qwen_image": [12, 16], "hunyuan_video15": [3, 8, 12]}
RECIPE_MODEL = {"wan_22": "wan"}   # tiny pipelines whose recipes name another model; the others are their own
PROMPTS = ["a cat w1 w2", "w3 w4 w5 w6 w7 w8 w9 a b c d"]   # different real lengths: different text padding
# models whose diffusers attention masks padded text: the batch above must reach them with padding of two lengths
# (FLUX.1/FLUX.2 attend to their padded text, Cosmos and Wan have no text in the patched self-attention)
MASKED_TEXT = {"hunyuan_video", "qwen_image", "hunyuan_video15"}


def _run(pipe, call_args):
    out = pipe(prompt=PROMPTS, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent",
               **call_args)
    latents = out.images if hasattr(out, "images") else out.frames
    assert torch.isfinite(latents).all()
    return latents


@pytest.mark.parametrize("model", sorted(GRIDS))
@pytest.mark.parametrize("dense_path", ["fast", "kernel", "original"])
def test_dense_steps_equal_stock(model: str, dense_path: str, monkeypatch) -> None:
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    stock = _run(pipe, call_args)
    recipe = {"model": RECIPE_MODEL.get(model, model), "grid": GRIDS[model], "dense_steps": 1000,
              "dense_path": dense_path, "backend": "reference",
              "layers": [{"blocks": "all", "window": [2] * len(GRIDS[model])}]}
    pipe.enable_gna(recipe)
    state = gna_diffusers.gna_state(pipe)
    seen = []   # (dense now?, real text tokens per entry, text length) of every transformer call, after GNA's hook
    hooks = [transformer.register_forward_pre_hook(lambda *_: seen.append((state.dense_now, state.text_valid,
                                                                            state.text_len)))
             for transformer in transformers_and_scheduler(pipe)[0]]
    gna_calls = []   # the GNA op's calls with the window equal to the grid: `dense_path: kernel`'s dense steps
    gna_op = common.gna_op

    def counted_gna_op(q, k, v, params, *rest):
        gna_calls.append(params.window == params.grid)
        return gna_op(q, k, v, params, *rest)

    monkeypatch.setattr(common, "gna_op", counted_gna_op)
    try:
        original_calls = count_original_calls(pipe)
        ours = _run(pipe, call_args)
    finally:
        pipe.disable_gna()
        for hook in hooks:
            hook.remove()
    assert seen and all(dense for dense, _, _ in seen)
    # the fast path really ran (the original processors never did), and the original path really ran them
    assert (original_calls[0] == 0) == (dense_path != "original")
    # the kernel path ran the GNA op, dense, on every patched layer's call (FLUX.2's KV-cache modes aside: none here)
    assert (len(gna_calls) > 0) == (dense_path == "kernel") and all(gna_calls)
    if dense_path != "original":   # fp32 on other kernels: the kernel path sums in another order (reference backend)
        tolerance = 1e-4 if dense_path == "kernel" else 2e-5
        torch.testing.assert_close(ours, stock, atol=tolerance, rtol=tolerance)
    else:
        assert torch.equal(ours, stock)
    assert torch.equal(_run(pipe, call_args), stock)
    # a dense path that ignored the text padding would differ: check the prompts really pad, to different lengths
    if model in MASKED_TEXT:
        assert any(valid is not None and len(set(valid)) == 2 and min(valid) < text_len
                   for _, valid, text_len in seen)


@torch.no_grad()
def test_hunyuan_video15_image_tokens_count_as_valid() -> None:
    """Image-to-video conditioning (non-zero image_embeds): the transformer counts every image token valid and moves
    the valid ones first; the fast dense path must keep them. Bare transformer, text and glyph padded differently."""
    transformer = TINY_PIPELINES["hunyuan_video15"][0](0).transformer
    torch.manual_seed(3)
    text_mask = (torch.arange(16) < torch.tensor([[5], [11]])).long()
    glyph_mask = (torch.arange(8) < torch.tensor([[0], [3]])).long()
    inputs = dict(hidden_states=torch.randn(2, 9, 3, 8, 12), timestep=torch.tensor([500.0, 500.0]),
                  encoder_hidden_states=torch.randn(2, 16, 16), encoder_attention_mask=text_mask,
                  encoder_hidden_states_2=torch.randn(2, 8, 16), encoder_attention_mask_2=glyph_mask,
                  image_embeds=torch.randn(2, 4, 8), return_dict=False)
    stock = transformer(**inputs)[0]
    gna_diffusers.enable_gna(transformer, {"model": "hunyuan_video15", "grid": [3, 8, 12], "dense_steps": 1000,
                                           "backend": "reference", "layers": [{"blocks": "all", "window": [2, 2, 2]}]})
    try:
        original_calls = count_original_calls(transformer)
        ours = transformer(**inputs)[0]
        assert gna_diffusers.gna_state(transformer).text_valid == (4 + 0 + 5, 4 + 3 + 11)
    finally:
        gna_diffusers.disable_gna(transformer)
    assert original_calls == [0] and torch.isfinite(ours).all()
    torch.testing.assert_close(ours, stock, atol=2e-5, rtol=2e-5)


@torch.no_grad()
def test_qwen_image_masks_that_are_not_padding_are_applied_as_given() -> None:
    """Qwen-Image takes any text mask (diffusers does not assume contiguous ones): a mask with holes is no padding
    to drop, so the fast dense path masks with it; a padding mask is dropped. Both as stock diffusers computes."""
    transformer = TINY_PIPELINES["qwen_image"][0](0).transformer
    torch.manual_seed(4)
    holes = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    padding = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    inputs = dict(hidden_states=torch.randn(2, 12 * 16, 16), encoder_hidden_states=torch.randn(2, 6, 16),
                  timestep=torch.tensor([0.5, 0.5]), img_shapes=[[(1, 12, 16)]] * 2, return_dict=False)
    for mask, valid in ((holes, None), (padding, (3, 5))):
        stock = transformer(encoder_hidden_states_mask=mask, **inputs)[0]
        gna_diffusers.enable_gna(transformer, {"model": "qwen_image", "grid": [12, 16], "dense_steps": 1000,
                                               "backend": "reference",
                                               "layers": [{"blocks": "all", "window": [2, 2]}]})
        try:
            original_calls = count_original_calls(transformer)
            ours = transformer(encoder_hidden_states_mask=mask, **inputs)[0]
            assert gna_diffusers.gna_state(transformer).text_valid == valid
        finally:
            gna_diffusers.disable_gna(transformer)
        assert original_calls == [0] and torch.isfinite(ours).all()
        torch.testing.assert_close(ours, stock, atol=2e-5, rtol=2e-5)


def test_valid_keys_equal_key_mask() -> None:
    """Dropping each batch entry's padded keys is the masked attention, for every query: trailing padding
    ([grid, text]) and padding inside the sequence ([text, grid], `padding_end`)."""
    b, s, h, d = 3, 40, 2, 16
    q, k, v = (torch.randn(b, s, h, d, dtype=torch.float64) for _ in range(3))
    valid = [40, 23, 31]
    mask = torch.arange(s)[None, :] < torch.tensor(valid)[:, None]
    torch.testing.assert_close(dense_attention(q, k, v, valid_keys=valid), dense_attention(q, k, v, key_mask=mask))
    torch.testing.assert_close(dense_attention(q, k, v, valid_keys=[23] * 3),
                               dense_attention(q, k, v, key_mask=torch.arange(s).expand(b, s) < 23))
    text_valid = [12, 3, 7]                       # [text of 12, grid of 28]: padding from each entry's count to 12
    mask = (torch.arange(s)[None, :] < torch.tensor(text_valid)[:, None]) | (torch.arange(s)[None, :] >= 12)
    torch.testing.assert_close(dense_attention(q, k, v, valid_keys=text_valid, padding_end=12),
                               dense_attention(q, k, v, key_mask=mask))
    torch.testing.assert_close(dense_attention(q, k, v, valid_keys=[7] * 3, padding_end=12),
                               dense_attention(q, k, v, key_mask=mask[2:3].expand(b, s)))


@pytest.mark.parametrize("dense_path", ["fast", "kernel", "original"])
def test_dense_kernel_backend_is_taken_where_measured(dense_path: str, monkeypatch) -> None:
    """`dense_path: kernel` with backend auto runs our kernel only where the compiled Hopper kernel serves the
    inputs (bf16/fp16, head_dim 64/128 on sm90a); elsewhere, and under Ulysses, the SDPA dense path; a backend the
    recipe names is used as named."""
    def state(backend: str = "auto", ulysses=None) -> common.GNAState:
        recipe = gna_diffusers.load_recipe({"model": "flux", "grid": [16, 16], "dense_path": dense_path,
                                            "backend": backend, "layers": [{"blocks": "all", "window": [4, 4]}]})
        return common.GNAState(recipe, ulysses=ulysses)

    bf16 = torch.empty(1, 8, 2, 128, dtype=torch.bfloat16)
    kernel = dense_path == "kernel"
    assert common.dense_kernel_backend(state(), bf16) is None                   # CPU: no compiled kernel
    assert common.dense_kernel_backend(state("reference"), bf16) == ("reference" if kernel else None)
    def on_arch(arch: str) -> None:   # the tensors stay on the CPU; the device reads as `arch` to both checks
        monkeypatch.setattr(common, "arch_of", lambda device: arch)
        monkeypatch.setattr(cutlass, "arch_of", lambda device: arch)

    on_arch("sm90a")
    assert common.dense_kernel_backend(state(), bf16) == ("auto" if kernel else None)
    assert common.dense_kernel_backend(state(ulysses=object()), bf16) is None
    assert common.dense_kernel_backend(state(), bf16.float()) is None
    assert common.dense_kernel_backend(state(), torch.empty(1, 8, 2, 32, dtype=torch.bfloat16)) is None
    on_arch("sm100a")
    assert common.dense_kernel_backend(state(), bf16) is None
