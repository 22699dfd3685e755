"""The reference backend against the brute-force oracle written from the semantics document."""

import math
import random

import pytest
import torch

import gna_diffusers
from brute_force import brute_attention, brute_mask


def random_config(rng: random.Random) -> dict:
    ndim = rng.randint(1, 3)
    grid = [rng.randint(2, {1: 17, 2: 9, 3: 6}[ndim]) for _ in range(ndim)]
    dilation = [rng.choice([1, 1, 2, 3]) for _ in grid]
    dilation = [d if 2 * d <= length else 1 for d, length in zip(dilation, grid)]
    window = [rng.randint(2, length // d) for length, d in zip(grid, dilation)]
    stride = [rng.choice([1, rng.randint(1, w), w]) for w in window]   # stride == window (blocked) often
    causal = [rng.random() < 0.3 for _ in grid]
    return dict(grid=grid, window=window, stride=stride, dilation=dilation, causal=causal)


@pytest.mark.parametrize("seed", range(150))
def test_reference_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cfg = random_config(rng)
    b, h, d = rng.randint(1, 2), rng.randint(1, 3), rng.choice([8, 16])
    n = math.prod(cfg["grid"])
    q, k, v = (torch.randn(b, n, h, d) for _ in range(3))
    extra = {}
    if rng.random() < 0.4:
        m = rng.randint(1, 6)
        extra = dict(extra_key=torch.randn(b, m, h, d), extra_value=torch.randn(b, m, h, d))
        if rng.random() < 0.6:
            extra["extra_mask"] = torch.rand(b, m) < 0.5
    out, lse = gna_diffusers.gna_attention(q, k, v, **cfg, **extra, backend="reference", return_lse=True)
    ref_out, ref_lse = brute_attention(q, k, v, cfg["grid"], cfg["window"], cfg["stride"], cfg["dilation"],
                                       cfg["causal"], **extra)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    torch.testing.assert_close(out, ref_out.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, ref_lse.float(), atol=1e-5, rtol=1e-5)


def test_every_noncausal_query_sees_exactly_window_keys() -> None:
    mask = brute_mask((7, 9), (3, 4), (2, 3), (1, 2), (False, False))
    assert (mask.sum(1) == 12).all()


@pytest.mark.parametrize("grid", [(37,), (6, 7), (3, 4, 5)])
def test_full_window_is_dense_attention(grid) -> None:
    torch.manual_seed(1)
    n = math.prod(grid)
    q, k, v = (torch.randn(2, n, 3, 16) for _ in range(3))
    out = gna_diffusers.gna_attention(q, k, v, grid=grid, window=grid, stride=[max(1, g // 2) for g in grid])
    dense = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                             v.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(out, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_keep_dtype(dtype) -> None:
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 48, 2, 16) for _ in range(3))
    out = gna_diffusers.gna_attention(q.to(dtype), k.to(dtype), v.to(dtype), grid=(6, 8), window=(3, 5))
    ref = gna_diffusers.gna_attention(q, k, v, grid=(6, 8), window=(3, 5))
    assert out.dtype == dtype
    assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2


def test_chunked_queries_match_unchunked(monkeypatch) -> None:
    """A tiny score budget forces one-query chunks; results must not change."""
    from gna_diffusers.backends import reference
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 60, 2, 8) for _ in range(3))
    full = gna_diffusers.gna_attention(q, k, v, grid=(6, 10), window=(3, 4), stride=(1, 2))
    monkeypatch.setattr(reference, "SCORE_BUDGET", 1)
    chunked = gna_diffusers.gna_attention(q, k, v, grid=(6, 10), window=(3, 4), stride=(1, 2))
    torch.testing.assert_close(chunked, full, atol=1e-6, rtol=1e-6)


def test_merge_attention_equals_union() -> None:
    torch.manual_seed(4)
    q, k, v = (torch.randn(1, 20, 2, 8) for _ in range(3))
    ek, ev = torch.randn(1, 5, 2, 8), torch.randn(1, 5, 2, 8)
    union = gna_diffusers.gna_attention(q, k, v, grid=(20,), window=5, extra_key=ek, extra_value=ev)
    a, lse_a = gna_diffusers.gna_attention(q, k, v, grid=(20,), window=5, return_lse=True)
    scores = torch.einsum("bnhd,bmhd->bhnm", q, ek) / math.sqrt(8)
    b = torch.einsum("bhnm,bmhd->bnhd", torch.softmax(scores, -1), ev)
    merged, _ = gna_diffusers.merge_attention(a, lse_a, b, torch.logsumexp(scores, -1).transpose(1, 2))
    torch.testing.assert_close(merged, union, atol=1e-5, rtol=1e-5)
