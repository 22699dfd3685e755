"""`gna_attention` as a torch custom op, so `torch.compile` treats it as one opaque node instead of breaking the graph
at every attention call (the backends compile or launch their own kernels inside)."""

from __future__ import annotations

from typing import Optional

import torch

from .attention import gna_attention


@torch.library.custom_op("gna_diffusers::gna_attention", mutates_args=())
def gna_attention_op(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, grid: list[int],
                     window: list[int], stride: list[int], dilation: list[int], causal: list[bool],
                     extra_key: Optional[torch.Tensor], extra_value: Optional[torch.Tensor],
                     extra_mask: Optional[torch.Tensor], scale: float, backend: str) -> torch.Tensor:
    return gna_attention(query, key, value, grid=tuple(grid), window=tuple(window), stride=tuple(stride),
                         dilation=tuple(dilation), causal=tuple(causal), extra_key=extra_key,
                         extra_value=extra_value,
                         extra_mask=extra_mask, scale=scale, backend=backend)


@gna_attention_op.register_fake
def _(query, key, value, grid, window, stride, dilation, causal, extra_key, extra_value, extra_mask, scale, backend):
    return torch.empty_like(query)
