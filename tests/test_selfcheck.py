"""The first-use self-check that gates the sm100a kernel (backends/selfcheck.py), on the CPU: a correct kernel passes
and its verdict is cached per device and kernel digest; a wrong one fails with one warning and `auto` stays on the next
backend; $GNA_SM100_SELFCHECK forces or skips the check or turns the kernel off."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

from gna_diffusers.backends import cutlass, selfcheck
from gna_diffusers.backends.reference import neighborhood_mask, reference_forward
from gna_diffusers.backends.registry import select_backend
from gna_diffusers.ops.inputs import make_inputs
from gna_diffusers.ops.params import GNAParams

CPU = torch.device("cpu")


class Counting:
    """A kernel stand-in that counts its calls."""

    def __init__(self, forward):
        self.forward, self.calls = forward, 0

    def __call__(self, inputs):
        self.calls += 1
        return self.forward(inputs)


def dense_instead_of_neighborhood(inputs):
    """A wrong kernel: every query sees the whole grid (the mask and the box ignored)."""
    p = inputs.params
    dense = GNAParams.make(p.grid, p.grid, 1, 1, False)
    return reference_forward(dataclasses.replace(inputs, params=dense))


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(selfcheck, "_verdicts", {})
    monkeypatch.delenv(selfcheck.ENV, raising=False)


def run(cache, kernel, key="cpu|digest|bfloat16|d64"):
    return selfcheck.check(cache, key, kernel, reference_forward, CPU, torch.bfloat16, 64, "the test kernel")


def test_correct_kernel_passes_once_and_the_verdict_is_cached(tmp_path, monkeypatch):
    cache = tmp_path / "selfcheck.json"
    kernel = Counting(reference_forward)
    assert run(cache, kernel) is None
    assert kernel.calls == len(selfcheck.PROBLEMS)
    record = json.loads(cache.read_text())["cpu|digest|bfloat16|d64"]
    assert record["passed"] is True and record["problems"] == len(selfcheck.PROBLEMS)
    assert run(cache, kernel) is None and kernel.calls == len(selfcheck.PROBLEMS)  # this process: no rerun
    monkeypatch.setattr(selfcheck, "_verdicts", {})  # a new process reads the cache
    assert run(cache, kernel) is None and kernel.calls == len(selfcheck.PROBLEMS)
    assert run(cache, kernel, key="cpu|newdigest|bfloat16|d64") is None  # new kernel sources: checked again
    assert kernel.calls == 2 * len(selfcheck.PROBLEMS)


def kernel_numerics(inputs):
    """A correct kernel in the compiled kernels' number formats: float32 scores, sums and accumulation, probabilities
    (against the row max) rounded to the input dtype for the PV product, the output rounded to the dtype."""
    n = inputs.params.tokens
    q, k, v = (t.float().transpose(1, 2) for t in (inputs.query, inputs.key, inputs.value))
    scores = (q @ k.transpose(-1, -2) * inputs.scale).masked_fill(~neighborhood_mask(inputs, torch.arange(n)),
                                                                   -float("inf"))
    if inputs.extra_key is not None:
        ek, ev = (t.float().transpose(1, 2) for t in (inputs.extra_key, inputs.extra_value))
        extra = q @ ek.transpose(-1, -2) * inputs.scale
        if inputs.extra_mask is not None:
            extra = extra.masked_fill(~inputs.extra_mask[:, None, None, :], -float("inf"))
        scores, v = torch.cat([scores, extra], dim=-1), torch.cat([v, ev], dim=2)
    row_max = scores.amax(dim=-1, keepdim=True)
    probs = torch.exp(scores - row_max)
    row_sum = probs.sum(dim=-1, keepdim=True)
    out = (probs.to(inputs.query.dtype).float() @ v) / row_sum
    lse = (row_max + row_sum.log()).squeeze(-1)
    return out.transpose(1, 2).to(inputs.query.dtype), lse.transpose(1, 2).contiguous()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_a_correct_kernel_in_16_bit_numerics_passes(tmp_path, dtype, head_dim):
    """Rounding the probabilities and the output to 16 bits, as every kernel does, stays within the tolerances:
    outputs of magnitude 2-4 are then one bf16 ulp (0.0156) off, as the Hopper kernel's were on these problems."""
    key = f"cpu|digest|{str(dtype).replace('torch.', '')}|d{head_dim}"
    assert selfcheck.check(tmp_path / "s.json", key, kernel_numerics, reference_forward, CPU, dtype, head_dim,
                           "the 16-bit test kernel") is None


def test_wrong_kernel_fails_with_one_warning(tmp_path, caplog):
    cache = tmp_path / "selfcheck.json"
    with caplog.at_level(logging.WARNING, logger="gna_diffusers"):
        reason = run(cache, dense_instead_of_neighborhood)
        assert run(cache, dense_instead_of_neighborhood) == reason
    assert reason is not None and "2d border tiles" in reason and "max |out - reference|" in reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "failed its self-check" in warnings[0].getMessage()
    assert json.loads(cache.read_text())["cpu|digest|bfloat16|d64"]["passed"] is False


def test_a_kernel_that_raises_fails(tmp_path):
    def broken(inputs):
        raise RuntimeError("GNA cutlass forward (sm100a): kernel launch failed")

    assert "raised RuntimeError" in run(tmp_path / "s.json", broken)


def test_environment_forces_skips_or_turns_off(tmp_path, monkeypatch):
    cache = tmp_path / "selfcheck.json"
    kernel = Counting(dense_instead_of_neighborhood)
    assert run(cache, kernel) is not None
    calls = kernel.calls
    monkeypatch.setenv(selfcheck.ENV, "skip")
    assert run(cache, kernel) is None and kernel.calls == calls
    monkeypatch.setenv(selfcheck.ENV, "off")
    assert run(cache, Counting(reference_forward)) == f"{selfcheck.ENV}=off"
    monkeypatch.setenv(selfcheck.ENV, "force")
    monkeypatch.setattr(selfcheck, "_verdicts", {})
    fixed = Counting(reference_forward)
    assert run(cache, fixed) is None and fixed.calls == len(selfcheck.PROBLEMS)  # the cached failure is ignored
    monkeypatch.setenv(selfcheck.ENV, "sometimes")
    with pytest.raises(ValueError, match="GNA_SM100_SELFCHECK='sometimes'; allowed: auto, force, skip, off"):
        run(cache, fixed)


def test_auto_uses_the_sm100_kernel_only_after_the_check(tmp_path, monkeypatch, caplog):
    """The backend on a (simulated) compute-capability-10.0 device: an injected wrong kernel fails the check and
    `auto` takes the next backend; a correct one passes and `auto` takes cutlass."""
    monkeypatch.setattr(cutlass, "arch_of", lambda device: "sm100a")
    monkeypatch.setattr(cutlass, "extension", lambda *args, **kwargs: object())
    monkeypatch.setenv("GNA_KERNEL_CACHE", str(tmp_path))
    x = torch.randn(1, 64, 2, 64, dtype=torch.bfloat16)
    inputs = make_inputs(x, x, x, grid=(8, 8), window=(4, 4))
    monkeypatch.setattr(cutlass, "cutlass_forward", lambda inputs, *build: dense_instead_of_neighborhood(inputs))
    with caplog.at_level(logging.WARNING, logger="gna_diffusers"):
        assert select_backend("auto", inputs).name != "cutlass"
        assert select_backend("auto", inputs).name != "cutlass"
    assert sum("failed its self-check" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match="first-use self-check"):
        select_backend("cutlass", inputs)
    monkeypatch.setattr(selfcheck, "_verdicts", {})
    monkeypatch.setattr(cutlass, "sources_digest", lambda: "fixedkernel")
    monkeypatch.setattr(cutlass, "cutlass_forward", lambda inputs, *build: reference_forward(inputs))
    assert select_backend("auto", inputs).name == "cutlass"
    assert any(v["passed"] for v in json.loads((tmp_path / "selfcheck.json").read_text()).values())


def test_each_schedule_is_checked_before_auto_trusts_it(tmp_path, monkeypatch):
    """Each sm100a build (schedule) has a verdict of its own, from the self-check run through that build: a correct
    one-tile-per-CTA build vouches nothing for a wrong persistent one, which keeps `auto` off cutlass for the problems
    that would use it; the persistent build is checked with its CTAs capped, so each walks several tiles."""
    monkeypatch.setattr(cutlass, "arch_of", lambda device: "sm100a")
    monkeypatch.setattr(cutlass, "extension", lambda *args, **kwargs: object())
    monkeypatch.setattr(cutlass, "SCHEDULE", None)
    monkeypatch.setenv("GNA_KERNEL_CACHE", str(tmp_path))
    builds = set()

    def kernel(inputs, schedule, max_ctas):
        builds.add((schedule, max_ctas))
        return (dense_instead_of_neighborhood if schedule == "persistent" else reference_forward)(inputs)

    monkeypatch.setattr(cutlass, "cutlass_forward", kernel)
    x = torch.randn(1, 256, 2, 64, dtype=torch.bfloat16)
    bordered = make_inputs(x, x, x, grid=(16, 16), window=(5, 5))  # masked border tiles
    dense = make_inputs(x, x, x, grid=(16, 16), window=(16, 16))   # every visited tile unmasked
    assert [cutlass.schedule_for(i.params) for i in (bordered, dense)] == ["single", "persistent"]
    assert select_backend("auto", bordered).name == "cutlass"
    assert select_backend("auto", dense).name != "cutlass"
    assert builds == {("single", None), ("persistent", cutlass.SELFCHECK_MAX_CTAS)}
    verdicts = json.loads((tmp_path / "selfcheck.json").read_text())
    assert sorted((key.rsplit("|", 1)[1], v["passed"]) for key, v in verdicts.items()) == [("persistent", False),
                                                                                          ("single", True)]
