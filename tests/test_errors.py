"""Bad input gets ValueError/TypeError naming the argument."""

import pytest
import torch

import gna_diffusers


def qkv(n=48, b=1, h=2, d=8, dtype=torch.float32):
    return [torch.randn(b, n, h, d, dtype=dtype) for _ in range(3)]


def call(**overrides):
    q, k, v = qkv()
    kw = dict(grid=(6, 8), window=(3, 3))
    kw.update(overrides)
    return gna_diffusers.gna_attention(overrides.pop("query", q), overrides.pop("key", k), v,
                                       **{k_: v_ for k_, v_ in kw.items() if k_ not in ("query", "key")})


@pytest.mark.parametrize("overrides,exc,needle", [
    (dict(grid=(6, 7)), ValueError, "grid"),                                   # prod(grid) != tokens
    (dict(grid=(6, 8, 1, 1)), ValueError, "grid"),
    (dict(grid=(6, "8")), TypeError, "grid"),
    (dict(window=(7, 3)), ValueError, "window"),                               # larger than the grid
    (dict(window=(3, 3), dilation=(1, 3)), ValueError, "dilation"),           # window * dilation > grid
    (dict(window=(1, 3)), ValueError, "window"),
    (dict(window=(3, 3), stride=(4, 1)), ValueError, "stride"),               # stride > window
    (dict(stride=(0, 1)), ValueError, "stride"),
    (dict(dilation=(0, 1)), ValueError, "dilation"),
    (dict(window=(3, 3, 3)), ValueError, "window"),                           # wrong number of values
    (dict(window=3.0), TypeError, "window"),
    (dict(causal=(1, 0)), TypeError, "causal"),
    (dict(scale=-1.0), ValueError, "scale"),
    (dict(backend="nope"), ValueError, "backend"),
    (dict(extra_key=torch.randn(1, 4, 2, 8)), ValueError, "extra_value"),
    (dict(extra_key=torch.randn(1, 4, 2, 8), extra_value=torch.randn(1, 4, 2, 4)), ValueError, "extra_value"),
    (dict(extra_key=torch.randn(1, 4, 2, 8), extra_value=torch.randn(1, 4, 2, 8),
          extra_mask=torch.ones(1, 5, dtype=torch.bool)), ValueError, "extra_mask"),
    (dict(extra_key=torch.randn(1, 4, 2, 8), extra_value=torch.randn(1, 4, 2, 8),
          extra_mask=torch.ones(1, 4)), ValueError, "extra_mask"),
    (dict(extra_mask=torch.ones(1, 4, dtype=torch.bool)), ValueError, "extra_mask"),
])
def test_bad_parameters(overrides, exc, needle) -> None:
    with pytest.raises(exc, match=needle):
        call(**overrides)


def test_bad_tensors() -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match="key"):
        gna_diffusers.gna_attention(q, k[:, :40], v, grid=(6, 8), window=3)
    with pytest.raises(ValueError, match="key.*dtype"):
        gna_diffusers.gna_attention(q, k.half(), v, grid=(6, 8), window=3)
    with pytest.raises(ValueError, match="query.*dtype"):
        gna_diffusers.gna_attention(q.long(), k.long(), v.long(), grid=(6, 8), window=3)
    with pytest.raises(ValueError, match="query"):
        gna_diffusers.gna_attention(q[0], k[0], v[0], grid=(6, 8), window=3)
    with pytest.raises(TypeError, match="query"):
        gna_diffusers.gna_attention(q.numpy(), k, v, grid=(6, 8), window=3)


def test_explicit_backend_that_cannot_run() -> None:
    q, k, v = qkv(d=12)
    with pytest.raises(ValueError, match="backend='flex' cannot run.*head_dim=12"):
        gna_diffusers.gna_attention(q, k, v, grid=(6, 8), window=3, backend="flex")
