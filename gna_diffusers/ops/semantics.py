"""The per-dimension neighborhood rule of GNA_SEMANTICS.md, vectorised over coordinates.

Every backend derives its masks from `dim_windows`, so there is one definition of the function we compute (the tests
check it against a brute-force copy written independently from the document). The functions take torch tensors or
numpy arrays alike (only operators and `.clip`): the backends call them on tensors, the simulator on numpy arrays, so
`gna-diffusers simulate` never has to import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import numpy
    import torch

Array = Union["torch.Tensor", "numpy.ndarray"]  # integer coordinates, torch or numpy


def window_start_end(pos: Array, length: Union[Array, int], window: int, stride: int,
                     causal: bool) -> tuple[Array, Array]:
    """[start, end) of the keys seen by queries at `pos` on an axis of `length` (dilation already removed)."""
    group_first = (pos // stride) * stride
    if causal:
        leader = (group_first + stride - 1).clip(max=length - 1)
        start = (leader - (window - 1)).clip(min=0)
        end = (pos + 1).clip(max=length)
        return start, end
    leader = (group_first + stride // 2).clip(max=length - 1)
    start = (leader - window // 2).clip(min=0).clip(max=length - window)
    return start, start + window


@dataclass(frozen=True)
class DimWindows:
    """For each coordinate x of one axis: its dilation group, its position inside the group, and the [start, end)
    interval (group positions) of keys it sees as a query."""

    group: Array
    pos: Array
    start: Array
    end: Array


def group_length(length: int, dilation: int, group: Array) -> Array:
    """Length of each coordinate's dilation sub-grid: L // d, plus one for the first L % d groups."""
    return length // dilation + (group < length % dilation) * 1


def dim_windows(coords: Array, length: int, window: int, stride: int, dilation: int, causal: bool) -> DimWindows:
    """The windows of `coords`, the coordinates 0..length-1 of one axis (torch.arange or numpy.arange)."""
    group = coords % dilation
    pos = coords // dilation
    start, end = window_start_end(pos, group_length(length, dilation, group), window, stride, causal)
    return DimWindows(group, pos, start, end)


def neighbor_mask_1d(w: DimWindows, q: Array, k: Array) -> Array:
    """Boolean [len(q), len(k)]: key coordinate k is a neighbor of query coordinate q along this axis."""
    kp = w.pos[k][None, :]
    return (w.group[q][:, None] == w.group[k][None, :]) & (w.start[q][:, None] <= kp) & (kp < w.end[q][:, None])
