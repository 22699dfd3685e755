"""A brute-force GNA written directly from GNA_SEMANTICS.md, with plain Python loops: the tests' independent oracle."""

from __future__ import annotations

import itertools
import math

import torch


def _left(w: int) -> int:
    return w // 2


def _start(i: int, w: int, s: int, length: int, causal: bool) -> int:
    if causal:
        leader = min((i // s) * s + s - 1, length - 1)
        return max(leader - (w - 1), 0)
    leader = min((i // s) * s + s // 2, length - 1)
    return min(max(leader - _left(w), 0), length - w)


def _end(i: int, start: int, w: int, length: int, causal: bool) -> int:
    return min(i + 1, length) if causal else start + w


def neighbor_1d(q: int, k: int, length: int, w: int, s: int, d: int, causal: bool) -> bool:
    if q % d != k % d:
        return False
    g = q % d
    glen = length // d + (1 if g < length % d else 0)
    qi, kj = q // d, k // d
    start = _start(qi, w, s, glen, causal)
    return start <= kj < _end(qi, start, w, glen, causal)


def brute_mask(grid, window, stride, dilation, causal) -> torch.Tensor:
    coords = list(itertools.product(*[range(length) for length in grid]))  # row-major, last fastest
    n = len(coords)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for a, qc in enumerate(coords):
        for b, kc in enumerate(coords):
            mask[a, b] = all(neighbor_1d(qc[i], kc[i], grid[i], window[i], stride[i], dilation[i], causal[i])
                             for i in range(len(grid)))
    return mask


def brute_attention(q, k, v, grid, window, stride, dilation, causal, extra_key=None, extra_value=None,
                    extra_mask=None, scale=None):
    """float64 softmax over neighborhood keys plus (unmasked) extra keys; returns (out, lse) like gna_attention."""
    b, n, h, d = q.shape
    scale = scale if scale is not None else 1 / math.sqrt(d)
    mask = brute_mask(grid, window, stride, dilation, causal)[None, None]          # [1, 1, N, N]
    qd, kd, vd = (t.double().transpose(1, 2) for t in (q, k, v))
    scores = (qd @ kd.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask, -math.inf)
    values = vd
    if extra_key is not None:
        ek, ev = extra_key.double().transpose(1, 2), extra_value.double().transpose(1, 2)
        es = (qd @ ek.transpose(-1, -2)) * scale
        if extra_mask is not None:
            es = es.masked_fill(~extra_mask[:, None, None, :], -math.inf)
        scores = torch.cat([scores, es], -1)
        values = torch.cat([vd, ev], 2)
    lse = torch.logsumexp(scores, -1)
    out = torch.softmax(scores, -1) @ values
    return out.transpose(1, 2), lse.transpose(1, 2)
