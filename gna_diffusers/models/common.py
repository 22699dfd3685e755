"""What every model's GNA processors share: the per-transformer state (grid, text length, dense-or-GNA now) and the
joint text + grid attention."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..ops.custom_op import gna_attention_op
from ..ops.params import GNAParams
from ..recipe import LayerGroup, Recipe


@dataclass
class GNAState:
    """Shared by one transformer's GNA processors; updated once per transformer forward by a pre-hook."""

    recipe: Recipe
    scheduler: Optional[Any] = None          # the pipeline's scheduler: its step_index drives the dense steps
    num_inference_steps: Optional[int] = None  # bare transformer with a fractional dense_steps
    grid: Optional[tuple[int, ...]] = None
    text_len: int = 0
    dense_now: bool = False
    step: int = 0
    _last_timestep: Optional[float] = None
    _resolved: dict = field(default_factory=dict)

    def params(self, group: LayerGroup) -> GNAParams:
        key = (id(group), self.grid)
        if key not in self._resolved:
            self._resolved[key] = self.recipe.resolve(group, self.grid)
        return self._resolved[key]

    def begin_forward(self, grid: tuple[int, ...], text_len: int, timestep: Optional[torch.Tensor]) -> None:
        """Record the grid and decide whether this call is a dense step."""
        self.grid, self.text_len = tuple(int(g) for g in grid), int(text_len)
        if self.scheduler is not None:
            index = getattr(self.scheduler, "step_index", None)
            order = getattr(self.scheduler, "order", 1) or 1
            begin = getattr(self.scheduler, "begin_index", None) or 0
            self.step = 0 if index is None else max(0, index - begin) // order
            total = max(1, len(self.scheduler.timesteps) // order)
        else:
            t = float(timestep.flatten()[0]) if timestep is not None else None
            if t is not None and self._last_timestep is not None and t != self._last_timestep:
                # a new denoising step; a timestep that goes back up starts a new run
                self.step = self.step + 1 if t < self._last_timestep else 0
            self._last_timestep = t
            total = self.num_inference_steps or 1
        self.dense_now = self.step < self.recipe.dense_step_count(total)


class GNAProcessorBase:
    """Holds the original processor (used for dense steps and anything GNA does not cover), the shared state and
    the recipe group of this layer; keeps diffusers' backend/parallel attributes so its dense path still works."""

    def __init__(self, original, state: GNAState, group: LayerGroup) -> None:
        self.original, self.state, self.group = original, state, group
        self._attention_backend = getattr(original, "_attention_backend", None)
        self._parallel_config = getattr(original, "_parallel_config", None)


def gna_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, params: GNAParams, backend: str,
           extra_key: Optional[torch.Tensor] = None, extra_value: Optional[torch.Tensor] = None,
           extra_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    return gna_attention_op(q, k, v, list(params.grid), list(params.window), list(params.stride),
                            list(params.dilation), list(params.causal), extra_key, extra_value, extra_mask,
                            q.shape[-1] ** -0.5, backend)


def joint_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, state: GNAState, params: GNAParams,
                    text_len: int, text_first: bool, text_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Attention over [text, grid] (or [grid, text]) tokens, [B, S, H, D]: grid queries see their neighborhood plus
    all (unmasked) text; text queries see everything, densely, as in the original model."""
    n = query.shape[1] - text_len
    if text_first:
        text_slice, grid_slice = slice(0, text_len), slice(text_len, None)
    else:
        grid_slice, text_slice = slice(0, n), slice(n, None)
    if text_len == 0:
        return gna_op(query, key, value, params, state.recipe.backend)
    grid_out = gna_op(query[:, grid_slice], key[:, grid_slice], value[:, grid_slice], params, state.recipe.backend,
                      key[:, text_slice], value[:, text_slice], text_mask)
    key_mask = None
    if text_mask is not None:
        grid_keys = torch.ones(text_mask.shape[0], n, dtype=torch.bool, device=text_mask.device)
        parts = [text_mask, grid_keys] if text_first else [grid_keys, text_mask]
        key_mask = torch.cat(parts, dim=1)[:, None, None, :]
    text_out = F.scaled_dot_product_attention(query[:, text_slice].transpose(1, 2), key.transpose(1, 2),
                                              value.transpose(1, 2), attn_mask=key_mask).transpose(1, 2)
    parts = [text_out, grid_out] if text_first else [grid_out, text_out]
    return torch.cat(parts, dim=1)
