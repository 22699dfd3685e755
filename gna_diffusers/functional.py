"""`gna_attention`: the one public operator. Validates, picks a backend, returns out (and the log-sum-exp); and the
same function as a torch custom op, so `torch.compile` treats it as one opaque node instead of breaking the graph at
every attention call (the backends compile or launch their own kernels inside)."""

from __future__ import annotations

from typing import Optional, Union

import torch

from .backends.registry import select_backend
from .ops.inputs import make_inputs
from .ops.params import BoolOrTuple, IntOrTuple


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
