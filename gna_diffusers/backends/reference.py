"""Exact PyTorch GNA: the oracle. Float32 math, query chunks sized to a memory budget (never an N x N mask)."""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..ops.semantics import DimWindows, dim_windows, neighbor_mask_1d
from ..ops.inputs import GNAInputs
from .registry import Backend, register_backend

# Elements of float32 scores held at once per chunk (B * H * chunk * keys); 2**27 floats = 512 MiB.
SCORE_BUDGET = 1 << 27


def neighborhood_mask(inputs: GNAInputs, q_index: torch.Tensor,
                      windows: Optional[list[DimWindows]] = None) -> torch.Tensor:
    """[len(q_index), N] bool: key token j is in the neighborhood of query token q_index[r] (row-major tokens)."""
    p = inputs.params
    if windows is None:
        windows = grid_windows(inputs)
    tokens = torch.arange(p.tokens, device=inputs.device)
    mask = None
    inner = p.tokens
    for w, length in zip(windows, p.grid):
        inner //= length
        m = neighbor_mask_1d(w, (q_index // inner) % length, (tokens // inner) % length)
        mask = m if mask is None else mask & m
    return mask


def grid_windows(inputs: GNAInputs) -> list[DimWindows]:
    p = inputs.params
    return [dim_windows(torch.arange(p.grid[i], device=inputs.device), p.grid[i], p.window[i], p.stride[i],
                        p.dilation[i], p.causal[i])
            for i in range(p.ndim)]


def reference_forward(inputs: GNAInputs) -> tuple[torch.Tensor, torch.Tensor]:
    q = inputs.query.float().transpose(1, 2)  # [B, H, N, D]
    k = inputs.key.float().transpose(1, 2)
    v = inputs.value.float().transpose(1, 2)
    b, h, n, _ = q.shape
    has_extra = inputs.extra_key is not None
    if has_extra:
        ek = inputs.extra_key.float().transpose(1, 2)
        ev = inputs.extra_value.float().transpose(1, 2)
        m = ek.shape[2]
        extra_bias = torch.zeros(b, 1, 1, m, device=q.device)
        if inputs.extra_mask is not None:
            extra_bias = extra_bias.masked_fill(~inputs.extra_mask[:, None, None, :], -math.inf)
    else:
        m = 0
    chunk = max(1, min(n, SCORE_BUDGET // max(1, b * h * (n + m))))
    windows = grid_windows(inputs)
    out = torch.empty_like(q)
    lse = torch.empty(b, h, n, device=q.device, dtype=torch.float32)
    for s in range(0, n, chunk):
        idx = torch.arange(s, min(n, s + chunk), device=q.device)
        mask = neighborhood_mask(inputs, idx, windows)
        scores = (q[:, :, idx] @ k.transpose(-1, -2)) * inputs.scale
        scores = scores.masked_fill(~mask, -math.inf)
        if has_extra:
            scores = torch.cat([scores, (q[:, :, idx] @ ek.transpose(-1, -2)) * inputs.scale + extra_bias], dim=-1)
        row_lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        probs = torch.exp(scores - row_lse)
        o = probs[..., :n] @ v
        if has_extra:
            o = o + probs[..., n:] @ ev
        out[:, :, idx] = o
        lse[:, :, idx] = row_lse.squeeze(-1)
    return out.transpose(1, 2).to(inputs.query.dtype), lse.transpose(1, 2).contiguous()


def _why_not(inputs: GNAInputs) -> Optional[str]:
    return None


register_backend(Backend("reference", reference_forward, _why_not, priority=lambda device: 0))
