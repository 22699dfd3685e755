"""Dense steps on the fast path (valid keys only, unmasked, fastest SDPA kernel) compute the original processors'
function: whole tiny pipelines, every step dense, against stock diffusers; padded prompts of different lengths in one
batch included, so dropping padded keys is checked against masking them."""

import pytest
import torch

import gna_diffusers
from gna_diffusers.models.common import dense_attention
from gna_diffusers.tiny import TINY_PIPELINES

GRIDS = {"flux": [16, 16], "hunyuan_video": [2, 8, 8], "cosmos": [3, 8, 8], "wan": [3, 4, 6], "wan_22": [3, 4, 6]}
RECIPE_MODEL = {"wan_22": "wan"}   # tiny pipelines whose recipes name another model; the others are their own
PROMPTS = ["a cat w1 w2", "w3 w4 w5 w6 w7 w8 w9 a b c d"]   # different real lengths: different text padding


def _run(pipe, call_args):
    out = pipe(PROMPTS, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent",
               **call_args)
    latents = out.images if hasattr(out, "images") else out.frames
    assert torch.isfinite(latents).all()
    return latents


@pytest.mark.parametrize("model", sorted(GRIDS))
@pytest.mark.parametrize("dense_path", ["fast", "original"])
def test_dense_steps_equal_stock(model: str, dense_path: str) -> None:
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    stock = _run(pipe, call_args)
    recipe = {"model": RECIPE_MODEL.get(model, model), "grid": GRIDS[model], "dense_steps": 1000,
              "dense_path": dense_path, "backend": "reference",
              "layers": [{"blocks": "all", "window": [2] * len(GRIDS[model])}]}
    pipe.enable_gna(recipe)
    try:
        ours = _run(pipe, call_args)
        assert gna_diffusers.gna_state(pipe).dense_now
    finally:
        pipe.disable_gna()
    torch.testing.assert_close(ours, stock, atol=2e-5, rtol=2e-5)
    # a dense path that ignored the text padding would differ: check the prompts really pad differently
    if model == "hunyuan_video" and dense_path == "fast":
        pipe.enable_gna(recipe)
        try:
            _run(pipe, call_args)
            valid = gna_diffusers.gna_state(pipe).text_valid
        finally:
            pipe.disable_gna()
        assert valid is not None and len(set(valid)) == 2


def test_valid_keys_equal_key_mask() -> None:
    """Dropping each batch entry's trailing padded keys is the masked attention, for every query."""
    b, s, h, d = 3, 40, 2, 16
    q, k, v = (torch.randn(b, s, h, d, dtype=torch.float64) for _ in range(3))
    valid = [40, 23, 31]
    mask = torch.arange(s)[None, :] < torch.tensor(valid)[:, None]
    torch.testing.assert_close(dense_attention(q, k, v, valid_keys=valid), dense_attention(q, k, v, key_mask=mask))
    torch.testing.assert_close(dense_attention(q, k, v, valid_keys=[23] * 3),
                               dense_attention(q, k, v, key_mask=torch.arange(s).expand(b, s) < 23))
