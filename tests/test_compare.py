"""Comparison tool: metrics against independent expectations, the report files, the full-size builders (shrunk)."""

import json
import math

import pytest
import torch

from gna_diffusers import compare
from gna_diffusers.full_size import FULL_SIZE, build_random
from gna_diffusers.pipeline import disable_gna, enable_gna


def test_psnr_of_known_noise() -> None:
    torch.manual_seed(0)
    a = torch.rand(1, 3, 64, 64)
    b = a + 0.01 * torch.randn_like(a)               # mse ~ 1e-4 -> ~40 dB
    expected = 10 * math.log10(1 / ((a - b) ** 2).mean().item())
    assert compare.psnr(a, b) == pytest.approx(expected, rel=1e-5)
    assert 38 < compare.psnr(a, b) < 42
    assert compare.psnr(a, a) == math.inf


def test_ssim_identical_is_one_and_drops_with_noise() -> None:
    torch.manual_seed(1)
    a = torch.rand(1, 3, 48, 48)
    assert compare.ssim(a, a) == pytest.approx(1.0)
    light = compare.ssim(a, (a + 0.02 * torch.randn_like(a)).clamp(0, 1))
    heavy = compare.ssim(a, (a + 0.2 * torch.randn_like(a)).clamp(0, 1))
    assert 1.0 > light > heavy > 0


def test_video_fidelity_is_the_mean_over_frames() -> None:
    torch.manual_seed(2)
    ref = torch.rand(1, 4, 3, 32, 32)
    out = ref.clone()
    out[0, 1] = (out[0, 1] + 0.05 * torch.randn_like(out[0, 1])).clamp(0, 1)
    got = compare.fidelity(out, ref)
    frames = [compare.ssim(out[0, i:i + 1], ref[0, i:i + 1]) for i in range(4)]
    assert got["ssim"] == pytest.approx(sum(frames) / 4)
    assert got["psnr"] == math.inf                   # three identical frames: the mean is infinite, as it should be


def test_report_files(tmp_path) -> None:
    rows = [{"model": "flux", "recipe": "a", "speedup": 2.0, "psnr": 30.0, "ssim": 0.9},
            {"model": "flux", "recipe": "b", "speedup": 3.0, "psnr": 25.0, "ssim": 0.8}]
    runs = {"dense": [{"output": torch.rand(1, 3, 16, 16)}], "a": [{"output": torch.rand(1, 3, 16, 16)}],
            "b": [{"output": torch.rand(1, 4, 3, 16, 16)}]}
    written = compare.write_report(tmp_path, rows, runs, note="test")
    assert json.loads((tmp_path / "report.json").read_text())["rows"][1]["recipe"] == "b"
    assert "| flux | b |" in (tmp_path / "report.md").read_text()
    for path in written:
        assert path.exists() and path.stat().st_size > 0


@pytest.mark.parametrize("model", sorted(FULL_SIZE))
def test_full_size_architecture_shrunk_runs_with_gna(model) -> None:
    """The full-size configs, shrunk in depth and width, build on CPU and run dense and with their shipped recipe."""
    spec = FULL_SIZE[model]
    shrink = {"flux": dict(num_layers=1, num_single_layers=1, num_attention_heads=2, attention_head_dim=32,
                           joint_attention_dim=64, pooled_projection_dim=16, axes_dims_rope=(8, 12, 12)),
              "hunyuan_video": dict(num_layers=1, num_single_layers=1, num_refiner_layers=1, num_attention_heads=2,
                                    attention_head_dim=32, text_embed_dim=64, pooled_projection_dim=16,
                                    rope_axes_dim=(8, 12, 12)),
              "cosmos": dict(num_layers=1, num_attention_heads=2, attention_head_dim=32, text_embed_dim=64,
                             adaln_lora_dim=8, concat_padding_mask=False),
              "flux2": dict(num_layers=1, num_single_layers=1, num_attention_heads=2, attention_head_dim=32,
                            joint_attention_dim=64, axes_dims_rope=(8, 8, 8, 8)),
              "qwen_image": dict(num_layers=1, num_attention_heads=2, attention_head_dim=32, joint_attention_dim=64,
                                 axes_dims_rope=(8, 12, 12)),
              "hunyuan_video15": dict(num_layers=1, num_refiner_layers=1, num_attention_heads=2, attention_head_dim=32,
                                      text_embed_dim=64, text_embed_2_dim=32, image_embed_dim=16,
                                      rope_axes_dim=(8, 12, 12))}[model]
    transformer = build_random(model, torch.device("cpu"), torch.float32, shrink)
    inputs = spec.make_inputs(0.05, torch.device("cpu"), torch.float32, 1)
    width = {"flux": 64, "hunyuan_video": 64, "cosmos": 64, "flux2": 64, "qwen_image": 64, "hunyuan_video15": 64}[model]
    if "encoder_hidden_states" in inputs:
        inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"][..., :width]
    if model == "flux":
        inputs["pooled_projections"] = inputs["pooled_projections"][..., :16]
    if model == "hunyuan_video":
        inputs["pooled_projections"] = inputs["pooled_projections"][..., :16]
    if model == "hunyuan_video15":
        inputs["encoder_hidden_states_2"] = inputs["encoder_hidden_states_2"][..., :32]
        inputs["image_embeds"] = inputs["image_embeds"][..., :16]
    with torch.no_grad():
        dense = transformer(**inputs)[0]
        state = enable_gna(transformer, {"model": model, "grid": list(load_grid(model)), "dense_steps": 0,
                                         "layers": [{"blocks": "all", "window": 2}]})
        gna = transformer(**inputs)[0]
        disable_gna(transformer)
    assert state.grid is not None and torch.isfinite(gna).all()
    if spec.text_key_mask is not None:               # what compare's attention-share estimate masks: the joint text
        assert spec.text_key_mask(inputs).shape == (1, state.text_len)
    assert gna.shape == dense.shape and not torch.equal(gna, dense)


def load_grid(model: str) -> tuple:
    from gna_diffusers import load_recipe
    return load_recipe(FULL_SIZE[model].recipe).grid
