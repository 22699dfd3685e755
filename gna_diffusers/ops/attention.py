"""`gna_attention`: the one public operator. Validates, picks a backend, returns out (and the log-sum-exp)."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from ..backends.registry import GNAInputs, select_backend
from .params import BoolOrTuple, GNAParams, IntOrTuple

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_tensor(name: str, t, like: Optional[torch.Tensor] = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected 4 dims [batch, tokens, heads, head_dim]")
    if t.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"{name} has dtype {t.dtype}; allowed: float32, float16, bfloat16")
    if like is not None:
        if t.dtype != like.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but query has {like.dtype}; they must match")
        if t.device != like.device:
            raise ValueError(f"{name} is on {t.device} but query is on {like.device}; they must match")


def make_inputs(query, key, value, *, grid, window, stride=1, dilation=1, causal=False, extra_key=None,
                extra_value=None, extra_mask=None, scale=None) -> GNAInputs:
    """Validate everything `gna_attention` takes; raise ValueError/TypeError naming argument, value and rule."""
    _check_tensor("query", query)
    _check_tensor("key", key, query)
    _check_tensor("value", value, query)
    if key.shape != query.shape or value.shape != query.shape:
        raise ValueError(f"query {tuple(query.shape)}, key {tuple(key.shape)} and value {tuple(value.shape)} "
                         f"must have the same shape [batch, tokens, heads, head_dim]")
    params = GNAParams.make(grid, window, stride, dilation, causal)
    b, n, h, d = query.shape
    if params.tokens != n:
        raise ValueError(f"grid={params.grid} holds {params.tokens} tokens but query has {n} "
                         f"(dim 1 of [batch, tokens, heads, head_dim]); prod(grid) must equal tokens")
    if (extra_key is None) != (extra_value is None):
        raise ValueError("extra_key and extra_value must be given together "
                         f"(got extra_key={'a tensor' if extra_key is not None else None}, "
                         f"extra_value={'a tensor' if extra_value is not None else None})")
    if extra_key is not None:
        _check_tensor("extra_key", extra_key, query)
        _check_tensor("extra_value", extra_value, query)
        m = extra_key.shape[1]
        if extra_key.shape != (b, m, h, d) or extra_value.shape != extra_key.shape:
            raise ValueError(f"extra_key {tuple(extra_key.shape)} and extra_value {tuple(extra_value.shape)} must "
                             f"both be [batch={b}, M, heads={h}, head_dim={d}]")
    if extra_mask is not None:
        if extra_key is None:
            raise ValueError("extra_mask was given without extra_key/extra_value")
        if not isinstance(extra_mask, torch.Tensor):
            raise TypeError(f"extra_mask must be a torch.Tensor, not {type(extra_mask).__name__}")
        if extra_mask.dtype != torch.bool:
            raise ValueError(f"extra_mask has dtype {extra_mask.dtype}; it must be torch.bool (True = attend)")
        if tuple(extra_mask.shape) != (b, extra_key.shape[1]):
            raise ValueError(f"extra_mask has shape {tuple(extra_mask.shape)}; expected [batch, M] = "
                             f"{(b, extra_key.shape[1])}")
        if extra_mask.device != query.device:
            raise ValueError(f"extra_mask is on {extra_mask.device} but query is on {query.device}")
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale={scale!r} must be a positive finite float (or None for 1/sqrt(head_dim))")
    return GNAInputs(query, key, value, params, extra_key, extra_value, extra_mask, float(scale))


def gna_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, grid, window: IntOrTuple,
                  stride: IntOrTuple = 1, dilation: IntOrTuple = 1, causal: BoolOrTuple = False,
                  extra_key: Optional[torch.Tensor] = None, extra_value: Optional[torch.Tensor] = None,
                  extra_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                  return_lse: bool = False, backend: str = "auto",
                  ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Generalized Neighborhood Attention over a 1-3D token grid (GNA_SEMANTICS.md), NATTEN na1d/2d/3d semantics.

    query/key/value: [batch, tokens, heads, head_dim], tokens row-major over `grid`. Every grid query sees its
    neighborhood plus all `extra_key/extra_value` tokens (dropping those where `extra_mask` is False). Returns `out`
    in the input dtype, and with `return_lse` also the natural-log log-sum-exp [batch, tokens, heads] in float32.
    """
    inputs = make_inputs(query, key, value, grid=grid, window=window, stride=stride, dilation=dilation,
                         causal=causal, extra_key=extra_key, extra_value=extra_value, extra_mask=extra_mask,
                         scale=scale)
    if not isinstance(backend, str):
        raise TypeError(f"backend={backend!r} must be a string")
    out, lse = select_backend(backend, inputs).forward(inputs)
    return (out, lse) if return_lse else out


def merge_attention(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
                    lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine attentions over two disjoint key sets into attention over their union ([B, N, H, D], [B, N, H])."""
    lse = torch.logaddexp(lse_a, lse_b)
    # a side with no keys has lse = -inf; exp(-inf - finite) = 0, as wanted
    wa = torch.exp(lse_a - lse).unsqueeze(-1)
    wb = torch.exp(lse_b - lse).unsqueeze(-1)
    out = out_a.float() * wa + out_b.float() * wb
    return out.to(out_a.dtype), lse
