"""The validated inputs of one GNA call: every check `gna_attention` makes, in one place below the backends, which
read `GNAInputs` and never re-validate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .params import GNAParams


@dataclass(frozen=True)
class GNAInputs:
    """Validated inputs of one `gna_attention` call; backends read, never modify, these."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    params: GNAParams
    extra_key: Optional[torch.Tensor]
    extra_value: Optional[torch.Tensor]
    extra_mask: Optional[torch.Tensor]
    scale: float

    @property
    def device(self) -> torch.device:
        return self.query.device

    @property
    def head_dim(self) -> int:
        return self.query.shape[-1]


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
