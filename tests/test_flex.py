"""flex backend against the reference oracle on small random configurations (CPU: eager flex)."""

import random
import warnings

import pytest
import torch

import gna_diffusers
from gna_diffusers.backends.flex import flex_forward
from gna_diffusers.ops.inputs import make_inputs


def random_config(rng: random.Random) -> dict:
    ndim = rng.randint(1, 3)
    grid = [rng.randint(3, 8) for _ in range(ndim)]
    dilation = [rng.choice([1, 1, 2]) if length >= 4 else 1 for length in grid]
    window = [rng.randint(2, length // d) for length, d in zip(grid, dilation)]
    return dict(grid=grid, window=window, stride=[rng.randint(1, w) for w in window], dilation=dilation,
                causal=[rng.random() < 0.3 for _ in grid])


@pytest.mark.parametrize("seed", range(40))
def test_flex_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cfg = random_config(rng)
    ndim = len(cfg["grid"])
    q_tile = tuple(rng.choice([1, 2, 4]) for _ in range(ndim))
    kv_tile = tuple(rng.choice([1, 2, 4]) for _ in range(ndim))
    n = 1
    for length in cfg["grid"]:
        n *= length
    q, k, v = (torch.randn(2, n, 2, 16) for _ in range(3))
    if rng.random() < 0.5:
        m = rng.randint(1, 5)
        cfg.update(extra_key=torch.randn(2, m, 2, 16), extra_value=torch.randn(2, m, 2, 16),
                   extra_mask=torch.rand(2, m) < 0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, lse = flex_forward(make_inputs(q, k, v, **cfg), q_tile, kv_tile)
    ref_out, ref_lse = gna_diffusers.gna_attention(q, k, v, **cfg, backend="reference", return_lse=True)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, ref_lse, atol=1e-5, rtol=1e-5)


def test_flex_explicit_on_cpu_and_auto_prefers_reference() -> None:
    q, k, v = (torch.randn(1, 36, 2, 16) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = gna_diffusers.gna_attention(q, k, v, grid=(6, 6), window=3, backend="flex")
    ref = gna_diffusers.gna_attention(q, k, v, grid=(6, 6), window=3, backend="auto")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_flex_refuses_odd_head_dim() -> None:
    q = torch.randn(1, 36, 2, 24)
    with pytest.raises(ValueError, match="head_dim=24"):
        gna_diffusers.gna_attention(q, q, q, grid=(6, 6), window=3, backend="flex")
