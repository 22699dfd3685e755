"""`gna_attention`: the one public operator. Validates, picks a backend, returns out (and the log-sum-exp); and the
same function as a torch custom op, so `torch.compile` treats it as one opaque node instead of breaking the graph at
every attention call (the backends compile or launch their own kernels inside).

While torch.compile or export traces, `gna_attention` itself goes through the op (one node returning out, or out and
the log-sum-exp), so a compiled function calling it compiles whole: tracing could not follow a compiled kernel's
launch. The processors' entry `gna_attention_op` takes the custom op only where something needs it: tracing, and
inputs only the dispatcher handles (tensor subclasses such as FakeTensor, meta tensors, inputs autograd would
record). A plain eager call skips it: the op's dispatch alone cost ~65 us of host time per call on the 2-core CPU
machine, more than the rest of the call (scripts/host_overhead.py)."""

from __future__ import annotations

from typing import Optional, Union

import torch

from .backends.registry import select_backend
from .ops.inputs import make_inputs
from .ops.params import BoolOrTuple, GNAParams, IntOrTuple


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
    if torch.compiler.is_compiling():
        # the backends launch kernels tracing cannot follow: one opaque node (validation runs inside, per call)
        p = GNAParams.make(grid, window, stride, dilation, causal)
        args = (query, key, value, list(p.grid), list(p.window), list(p.stride), list(p.dilation), list(p.causal),
                extra_key, extra_value, extra_mask, scale, backend)
        return _gna_attention_lse_op(*args) if return_lse else _gna_attention_op(*args)
    inputs = make_inputs(query, key, value, grid=grid, window=window, stride=stride, dilation=dilation,
                         causal=causal, extra_key=extra_key, extra_value=extra_value, extra_mask=extra_mask,
                         scale=scale)
    if not isinstance(backend, str):
        raise TypeError(f"backend={backend!r} must be a string")
    out, lse = select_backend(backend, inputs).forward(inputs)
    return (out, lse) if return_lse else out


def gna_attention_op(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, grid: list[int],
                     window: list[int], stride: list[int], dilation: list[int], causal: list[bool],
                     extra_key: Optional[torch.Tensor], extra_value: Optional[torch.Tensor],
                     extra_mask: Optional[torch.Tensor], scale: Optional[float], backend: str) -> torch.Tensor:
    """`gna_attention` (out only) with per-dimension lists, as the model processors call it: the custom op where
    something needs the dispatcher (module docstring), else the function itself."""
    tensors = (query, key, value, extra_key, extra_value)
    if (torch.compiler.is_compiling() or type(query) is not torch.Tensor or query.is_meta
            or (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))):
        return _gna_attention_op(query, key, value, grid, window, stride, dilation, causal, extra_key, extra_value,
                                 extra_mask, scale, backend)
    return gna_attention(query, key, value, grid=tuple(grid), window=tuple(window), stride=tuple(stride),
                         dilation=tuple(dilation), causal=tuple(causal), extra_key=extra_key,
                         extra_value=extra_value, extra_mask=extra_mask, scale=scale, backend=backend)


# Both ops return contiguous tensors, as their fake implementations say (a compiled graph checks the strides).

@torch.library.custom_op("gna_diffusers::gna_attention", mutates_args=())
def _gna_attention_op(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, grid: list[int],
                      window: list[int], stride: list[int], dilation: list[int], causal: list[bool],
                      extra_key: Optional[torch.Tensor], extra_value: Optional[torch.Tensor],
                      extra_mask: Optional[torch.Tensor], scale: Optional[float], backend: str) -> torch.Tensor:
    return gna_attention(query, key, value, grid=tuple(grid), window=tuple(window), stride=tuple(stride),
                         dilation=tuple(dilation), causal=tuple(causal), extra_key=extra_key,
                         extra_value=extra_value, extra_mask=extra_mask, scale=scale, backend=backend).contiguous()


@_gna_attention_op.register_fake
def _(query, key, value, grid, window, stride, dilation, causal, extra_key, extra_value, extra_mask, scale, backend):
    return query.new_empty(query.shape)


@torch.library.custom_op("gna_diffusers::gna_attention_lse", mutates_args=())
def _gna_attention_lse_op(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, grid: list[int],
                          window: list[int], stride: list[int], dilation: list[int], causal: list[bool],
                          extra_key: Optional[torch.Tensor], extra_value: Optional[torch.Tensor],
                          extra_mask: Optional[torch.Tensor], scale: Optional[float],
                          backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse = gna_attention(query, key, value, grid=tuple(grid), window=tuple(window), stride=tuple(stride),
                             dilation=tuple(dilation), causal=tuple(causal), extra_key=extra_key,
                             extra_value=extra_value, extra_mask=extra_mask, scale=scale, return_lse=True,
                             backend=backend)
    return out.contiguous(), lse.contiguous()


@_gna_attention_lse_op.register_fake
def _(query, key, value, grid, window, stride, dilation, causal, extra_key, extra_value, extra_mask, scale, backend):
    return query.new_empty(query.shape), query.new_empty(query.shape[:3], dtype=torch.float32)
