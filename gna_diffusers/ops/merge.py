"""Attention over the union of two disjoint key sets from the attentions over each (their log-sum-exps weigh them)."""

from __future__ import annotations

import torch


def merge_attention(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
                    lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine attentions over two disjoint key sets into attention over their union ([B, N, H, D], [B, N, H])."""
    lse = torch.logaddexp(lse_a, lse_b)
    # a side with no keys has lse = -inf; exp(-inf - finite) = 0, as wanted
    wa = torch.exp(lse_a - lse).unsqueeze(-1)
    wb = torch.exp(lse_b - lse).unsqueeze(-1)
    out = out_a.float() * wa + out_b.float() * wb
    return out.to(out_a.dtype), lse
