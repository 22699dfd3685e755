"""Comparison tool: metrics and timing against independent expectations, the report files and their plots, the
full-size builders (shrunk)."""

import json
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

from gna_diffusers import compare
from gna_diffusers.full_size import FULL_SIZE, build_random
from gna_diffusers.pipeline import disable_gna, enable_gna


def test_psnr_of_known_noise() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((1, 3, 64, 64))
    b = a + 0.01 * rng.standard_normal(a.shape)         # mse ~ 1e-4 -> ~40 dB
    expected = 10 * math.log10(1 / np.mean((a - b) ** 2))
    got = compare.fidelity(torch.from_numpy(b), torch.from_numpy(a))
    assert got["psnr"] == pytest.approx(expected, rel=1e-6)
    assert 38 < got["psnr"] < 42
    assert compare.fidelity(torch.from_numpy(a), torch.from_numpy(a))["psnr"] == math.inf


def test_ssim_identical_is_one_and_drops_with_noise() -> None:
    torch.manual_seed(1)
    a = torch.rand(1, 3, 48, 48)
    assert compare.fidelity(a, a)["ssim"] == pytest.approx(1.0)
    light = compare.fidelity((a + 0.02 * torch.randn_like(a)).clamp(0, 1), a)["ssim"]
    heavy = compare.fidelity((a + 0.2 * torch.randn_like(a)).clamp(0, 1), a)["ssim"]
    assert 1.0 > light > heavy > 0


def test_video_fidelity_is_the_mean_over_frames() -> None:
    torch.manual_seed(2)
    ref = torch.rand(1, 4, 3, 32, 32)
    out = ref.clone()
    out[0, 1] = (out[0, 1] + 0.05 * torch.randn_like(out[0, 1])).clamp(0, 1)
    got = compare.fidelity(out, ref)
    noisy = compare.fidelity(out[:, 1], ref[:, 1])["ssim"]
    assert got["ssim"] == pytest.approx((3 + noisy) / 4)    # three identical frames score 1
    assert got["psnr"] == math.inf                         # three identical frames: the mean is infinite, as it should be


def test_weights_that_are_not_here_give_none_and_why() -> None:
    model, why = compare.lpips_metric()
    assert (model is None) == bool(why)
    if model is None:
        assert why.startswith("LPIPS not computed: ")
    score, why = compare.clip_scorer("gna-diffusers-test/no-such-clip")
    assert score is None and why.startswith("CLIP score not computed: ") and "no-such-clip" in why


def test_median_seconds_measures_a_known_duration() -> None:
    seconds = compare.median_seconds(lambda: time.sleep(0.02), reps=3)
    assert 0.019 < seconds < 0.08


RANDOM_WEIGHTS_ROWS = [
    {"model": "flux", "recipe": "flux-dev-4k", "backend": "cutlass", "steps": 50, "dense_steps": 15,
     "dense_step_s": 4.0, "gna_step_s": 1.0, "total_dense_s": 200.0, "total_gna_s": 95.0, "speedup": 200 / 95,
     "totals": "extrapolated from measured per-step medians"},
    {"model": "cosmos", "recipe": "cosmos-7b-text2world", "backend": "flex", "steps": 35, "dense_steps": 0,
     "dense_step_s": 2.0, "gna_step_s": 0.5, "total_dense_s": 70.0, "total_gna_s": 17.5, "speedup": 4.0},
]


def test_random_weight_report_plots_times_and_no_fidelity(tmp_path) -> None:
    written = compare.write_report(tmp_path, RANDOM_WEIGHTS_ROWS, note="random")
    assert tmp_path / "times.png" in written and Image.open(tmp_path / "times.png").size[0] > 600
    assert not (tmp_path / "fidelity.png").exists()                 # nothing measured, nothing drawn
    table = (tmp_path / "report.md").read_text()
    assert "| flux | flux-dev-4k | cutlass |" in table and "psnr" not in table


def test_phases_add_up_to_each_run() -> None:
    row = {"steps": 50, "dense_steps": 15, "text_encode_s": 1.5, "dense_step_s": 4.0, "gna_step_s": 1.0,
           "vae_decode_s": 20.0, "other_s": 0.5}
    phases = compare.phase_seconds(row)
    assert list(phases["dense"]) == ["text encode", "dense steps", "VAE decode", "other"]
    assert list(phases["GNA"]) == ["text encode", "dense steps", "GNA steps", "VAE decode", "other"]
    assert sum(phases["dense"].values()) == pytest.approx(1.5 + 50 * 4.0 + 20.0 + 0.5)
    assert sum(phases["GNA"].values()) == pytest.approx(1.5 + 15 * 4.0 + 35 * 1.0 + 20.0 + 0.5)
    assert compare.phase_seconds({"steps": 50, "dense_step_s": 4.0}) is None


def test_pipeline_report_files(tmp_path) -> None:
    rows = [{"model": "flux", "recipe": "a", "steps": 3, "dense_steps": 1, "dense_step_s": 0.2, "gna_step_s": 0.1,
             "text_encode_s": 0.05, "vae_decode_s": 0.3, "speedup": 2.0, "psnr": 30.0, "ssim": 0.9, "lpips": None,
             "dense_step_times_s": [0.2, 0.21, 0.19], "gna_step_times_s": [0.2, 0.1, 0.1]},
            {"model": "flux", "recipe": "b", "steps": 3, "dense_steps": 1, "dense_step_s": 0.2, "gna_step_s": 0.05,
             "speedup": 3.0, "psnr": math.inf, "ssim": 1.0}]
    runs = {"dense": [{"output": torch.rand(1, 3, 16, 16)}], "a": [{"output": torch.rand(1, 3, 16, 16)}],
            "b": [{"output": torch.rand(1, 4, 3, 16, 16)}]}
    written = compare.write_report(tmp_path, rows, runs, note="test")
    assert json.loads((tmp_path / "report.json").read_text())["rows"][1]["recipe"] == "b"
    assert "| flux | a |" in (tmp_path / "report.md").read_text()
    assert {p.name for p in written} == {"report.json", "report.md", "times.png", "fidelity.png", "strip_0.png"}
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
              "wan": dict(num_layers=1, num_attention_heads=2, attention_head_dim=32, text_dim=64, ffn_dim=64),
              "cosmos_predict2": dict(num_layers=1, num_attention_heads=2, attention_head_dim=32, text_embed_dim=64,
                                      adaln_lora_dim=8, concat_padding_mask=False),
              "cosmos_predict2_video": dict(num_layers=1, num_attention_heads=2, attention_head_dim=32,
                                            text_embed_dim=64, adaln_lora_dim=8, concat_padding_mask=False),
              "flux2": dict(num_layers=1, num_single_layers=1, num_attention_heads=2, attention_head_dim=32,
                            joint_attention_dim=64, axes_dims_rope=(8, 8, 8, 8)),
              "qwen_image": dict(num_layers=1, num_attention_heads=2, attention_head_dim=32, joint_attention_dim=64,
                                 axes_dims_rope=(8, 12, 12)),
              "hunyuan_video15": dict(num_layers=1, num_refiner_layers=1, num_attention_heads=2, attention_head_dim=32,
                                      text_embed_dim=64, text_embed_2_dim=32, image_embed_dim=16,
                                      rope_axes_dim=(8, 12, 12))}[model]
    transformer = build_random(model, torch.device("cpu"), torch.float32, shrink)
    inputs = spec.make_inputs(0.05, torch.device("cpu"), torch.float32, 1)
    width = 64
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
        state = enable_gna(transformer, {"model": spec.model, "grid": list(load_grid(model)), "dense_steps": 0,
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
