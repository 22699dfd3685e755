"""Whole-pipeline timing on the tiny offline pipelines: every phase of a real call is measured and they add up."""

import math

import pytest
import torch

from gna_diffusers.tiny import TINY_PIPELINES
from gna_diffusers.whole_pipeline import PhaseTimer, PipelineSpec, time_whole_pipeline

GRIDS = {"flux": [16, 16], "hunyuan_video": [2, 8, 8], "cosmos": [3, 8, 8]}
RECORD_KEYS = {"model", "gpu", "steps", "dense_steps", "text_encode_s", "dense_step_s", "gna_step_s", "vae_decode_s",
               "other_s", "total_dense_s", "total_gna_s", "speedup", "options"}


def _spec(model: str) -> PipelineSpec:
    builder, call_args = TINY_PIPELINES[model]
    recipe = {"model": model, "grid": GRIDS[model], "dense_steps": 0.3, "backend": "reference",
              "layers": [{"blocks": "all", "window": [2] * len(GRIDS[model])}]}
    return PipelineSpec(model, lambda device, dtype: builder(0).to(device), call_args, 10, recipe, {"tiny": True})


@pytest.mark.parametrize("model", ["flux", "hunyuan_video"])
def test_phases_add_up(model: str) -> None:
    spec = _spec(model)
    record = time_whole_pipeline(spec, torch.device("cpu"), torch.float32)
    assert RECORD_KEYS <= set(record)
    assert record["dense_steps"] == 3
    assert [m for m, _ in record["measured"]["stock_steps"]] == ["dense", "dense"]
    assert [m for m, _ in record["measured"]["gna_steps"]] == ["dense", "dense", "gna", "gna"]
    for key in ("text_encode_s", "dense_step_s", "gna_step_s", "gna_dense_step_s", "vae_decode_s"):
        assert 0 < record[key] < 60 and math.isfinite(record[key]), key
    assert record["other_s"] >= 0
    expected = (record["text_encode_s"] + 10 * record["dense_step_s"] + record["vae_decode_s"] + record["other_s"])
    assert record["total_dense_s"] == pytest.approx(expected)
    assert record["speedup"] == pytest.approx(record["total_dense_s"] / record["total_gna_s"])


def test_timer_names_every_phase() -> None:
    """The named phases and `other` add up to the call's wall time, and the pipeline's methods come back."""
    builder, call_args = TINY_PIPELINES["flux"]
    pipe = builder(0)
    pipe.set_progress_bar_config(disable=True)
    timer = PhaseTimer(pipe)
    timer.call(prompt="a cat", num_inference_steps=3, generator=torch.Generator().manual_seed(0), **call_args)
    assert len(timer.steps) == 3 and timer.text_s > 0 and timer.vae_s > 0
    assert timer.text_s + timer.vae_s + sum(s for _, s in timer.steps) + timer.other_s == pytest.approx(timer.total_s)
    assert "encode_prompt" not in vars(pipe) and "decode" not in vars(pipe.vae)
