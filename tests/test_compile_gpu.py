"""torch.compile as users run it on the GPU, with the cutlass kernel inside: regional (diffusers'
`compile_repeated_blocks(fullgraph=True)`: no graph break in a GNA block) and whole-transformer compile, in inductor's
"max-autotune-no-cudagraphs" mode (the default mode is timed at full size by `compare --whole-pipeline --compile`).
Each must give the eager GNA output, not the dense one: a compile that dropped or bypassed GNA fails."""

import pytest
import torch
from diffusers import FluxTransformer2DModel

import gna_diffusers

pytestmark = pytest.mark.gpu

GRID = (16, 16)
TEXT = 8
RECIPE = {"model": "flux", "grid": list(GRID), "dense_steps": 0, "backend": "cutlass",
          "layers": [{"blocks": "all", "window": [3, 3]}]}


def _transformer() -> FluxTransformer2DModel:
    """FLUX.1's layout at the smallest size the kernel takes: 2 heads of 64 (RoPE axes 16+24+24), bf16. Values are
    scaled up so attention, not the residual, dominates the output: at diffusers' init a 3x3 window moves the output
    by 2% of its size, too close to bf16 rounding to tell GNA from dense."""
    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                   attention_head_dim=64, num_attention_heads=2, joint_attention_dim=32,
                                   pooled_projection_dim=32, guidance_embeds=False, axes_dims_rope=(16, 24, 24))
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(("to_v", "add_v_proj")):
                module.weight.mul_(20)
    return model.to("cuda", torch.bfloat16).eval()


def _inputs(seed: int) -> dict:
    generator = torch.Generator("cuda").manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(GRID[0]), torch.arange(GRID[1]), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device="cuda", dtype=torch.bfloat16)
    return dict(hidden_states=randn(1, GRID[0] * GRID[1], 16), encoder_hidden_states=randn(1, TEXT, 32),
                pooled_projections=randn(1, 32), timestep=torch.full((1,), 0.5, device="cuda", dtype=torch.bfloat16),
                img_ids=img_ids.to("cuda", torch.bfloat16), txt_ids=torch.zeros(TEXT, 3, device="cuda",
                                                                               dtype=torch.bfloat16))


@pytest.mark.parametrize("style", ["regional", "whole"])
@torch.no_grad()
def test_max_autotune_compile_keeps_gna(style: str) -> None:
    torch._dynamo.reset()
    transformer = _transformer()
    dense = [transformer(**_inputs(seed))[0].float() for seed in (1, 2)]
    gna_diffusers.enable_gna(transformer, RECIPE)
    try:
        eager = [transformer(**_inputs(seed))[0].float() for seed in (1, 2)]
        if style == "regional":
            transformer.compile_repeated_blocks(fullgraph=True, mode="max-autotune-no-cudagraphs")
            run = transformer
        else:
            run = torch.compile(transformer, mode="max-autotune-no-cudagraphs")
        compiled = [run(**_inputs(seed))[0].float() for seed in (1, 2)]   # the second reuses the compiled graphs
    finally:
        gna_diffusers.disable_gna(transformer)
    for got, want, full in zip(compiled, eager, dense):
        assert torch.isfinite(got).all()
        gna_effect = (want - full).abs().max().item()
        assert gna_effect > 0.05, "the window changes nothing: the check below could not tell GNA from dense"
        # bf16, and inductor fuses the linears and norms its own way: close to eager GNA, far from dense
        assert (got - want).abs().max().item() < 0.25 * gna_effect
