"""Compiled flex on the GPU (block mask really used) against the fp32 reference, bf16 inputs."""

import random

import pytest
import torch

import gna_diffusers

pytestmark = pytest.mark.gpu


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("grid,window,stride,heads", [
    ((30, 48, 80), (18, 24, 24), (16, 8, 8), 2),   # HunyuanVideo worked example, heads cut to fit the reference
    ((256, 256), (80, 80), (16, 16), 2),           # FLUX-4K worked example
    ((33, 45, 80), (18, 24, 24), (16, 8, 8), 1),   # non-divisible grid: partial tiles
])
def test_flex_worked_examples(grid, window, stride, heads) -> None:
    torch.manual_seed(0)
    n = 1
    for length in grid:
        n *= length
    q, k, v = (torch.randn(1, n, heads, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ek, ev = (torch.randn(1, 77, heads, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    mask = torch.rand(1, 77, device="cuda") < 0.7
    kw = dict(grid=grid, window=window, stride=stride, extra_key=ek, extra_value=ev, extra_mask=mask)
    out, lse = gna_diffusers.gna_attention(q, k, v, **kw, backend="flex", return_lse=True)
    ref, ref_lse = gna_diffusers.gna_attention(q.float(), k.float(), v.float(), **{
        **kw, "extra_key": ek.float(), "extra_value": ev.float()}, backend="reference", return_lse=True)
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < 1e-2
    assert (lse - ref_lse).abs().max().item() < 5e-2


@pytest.mark.parametrize("seed", range(6))
def test_flex_random_gpu(seed: int) -> None:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    ndim = rng.randint(2, 3)
    grid = [rng.randint(9, 24) for _ in range(ndim)]
    dilation = [rng.choice([1, 2]) for _ in grid]
    window = [rng.randint(2, length // d) for length, d in zip(grid, dilation)]
    stride = [rng.randint(1, w) for w in window]
    causal = [rng.random() < 0.3 for _ in grid]
    n = 1
    for length in grid:
        n *= length
    dtype = rng.choice([torch.bfloat16, torch.float16])
    q, k, v = (torch.randn(2, n, 3, 64, device="cuda", dtype=dtype) for _ in range(3))
    kw = dict(grid=grid, window=window, stride=stride, dilation=dilation, causal=causal)
    out = gna_diffusers.gna_attention(q, k, v, **kw, backend="flex")
    ref = gna_diffusers.gna_attention(q.float(), k.float(), v.float(), **kw, backend="reference")
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < 1e-2
