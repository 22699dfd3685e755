"""The per-dimension neighborhood rule of GNA_SEMANTICS.md, vectorised over coordinates.

Every backend derives its masks from `dim_windows`, so there is one definition of the function we compute (the tests
check it against a brute-force copy written independently from the document).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def window_start_end(pos: torch.Tensor, length: torch.Tensor, window: int, stride: int,
                     causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """[start, end) of the keys seen by queries at `pos` on an axis of `length` (dilation already removed)."""
    group_first = (pos // stride) * stride
    if causal:
        leader = torch.minimum(group_first + stride - 1, length - 1)
        start = torch.clamp(leader - (window - 1), min=0)
        end = torch.minimum(pos + 1, length)
        return start, end
    leader = torch.minimum(group_first + stride // 2, length - 1)
    start = torch.minimum(torch.clamp(leader - window // 2, min=0), length - window)
    return start, start + window


@dataclass(frozen=True)
class DimWindows:
    """For each coordinate x of one axis: its dilation group, its position inside the group, and the [start, end)
    interval (group positions) of keys it sees as a query."""

    group: torch.Tensor
    pos: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor


def group_length(length: int, dilation: int, group: torch.Tensor) -> torch.Tensor:
    """Length of each coordinate's dilation sub-grid: L // d, plus one for the first L % d groups."""
    return length // dilation + (group < length % dilation).to(group.dtype)


def dim_windows(length: int, window: int, stride: int, dilation: int, causal: bool,
                device: torch.device | str = "cpu") -> DimWindows:
    x = torch.arange(length, device=device, dtype=torch.int64)
    group = x % dilation
    pos = x // dilation
    start, end = window_start_end(pos, group_length(length, dilation, group), window, stride, causal)
    return DimWindows(group, pos, start, end)


def neighbor_mask_1d(w: DimWindows, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean [len(q), len(k)]: key coordinate k is a neighbor of query coordinate q along this axis."""
    kp = w.pos[k][None, :]
    return (w.group[q][:, None] == w.group[k][None, :]) & (w.start[q][:, None] <= kp) & (kp < w.end[q][:, None])
