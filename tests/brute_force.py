"""A brute-force GNA written directly from GNA_SEMANTICS.md, with plain Python loops: the tests' independent oracle."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gna_diffusers import GNAParams, TiledLayout


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


def token_index(params: GNAParams, layout: TiledLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """(row-major token of each tiled position, padding clamped onto a real token; which positions are real)."""
    c = layout.coordinates()
    index = torch.zeros(len(c), dtype=torch.long)
    for i, length in enumerate(params.grid):
        index = index * length + c[:, i].clamp(max=length - 1)
    return index, layout.valid()


def token_level_tiles(params: GNAParams, q_layout: TiledLayout, kv_layout: TiledLayout):
    """(any pair attended, all real pairs attended with no padded key) per tile pair, from the brute-force mask."""
    mask = brute_mask(params.grid, params.window, params.stride, params.dilation, params.causal)
    qi, qv = token_index(params, q_layout)
    ki, kv = token_index(params, kv_layout)
    tm = mask[qi][:, ki] & qv[:, None] & kv[None, :]
    tm = tm.reshape(q_layout.num_tiles, q_layout.tile_volume, kv_layout.num_tiles, kv_layout.tile_volume)
    q_real = qv.reshape(q_layout.num_tiles, -1)
    any_pair = tm.any(3).any(1)
    all_pairs = ((tm | ~q_real[:, :, None, None]).all(3).all(1) & kv.reshape(kv_layout.num_tiles, -1).all(1)
                 & q_real.any(1)[:, None])
    return any_pair, all_pairs


# One small problem with every option at once (dilation, causal, stride, extra tokens under a mask, a batch entry
# that sees no extra token) for tests of the call path rather than of the arithmetic.
MIXED_SHAPE = dict(grid=(6, 8), window=(3, 5), stride=(1, 2), dilation=(2, 1), causal=(False, True))


def mixed_inputs(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 48, 2, 16, generator=gen) for _ in range(3))
    ek, ev = (torch.randn(2, 5, 2, 16, generator=gen) for _ in range(2))
    mask = torch.tensor([[True, False, True, True, False], [False] * 5])  # the second entry sees no extra token
    return dict(query=q, key=k, value=v, extra_key=ek, extra_value=ev, extra_mask=mask)


def brute_mixed(inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """brute_attention of `mixed_inputs`-like inputs with MIXED_SHAPE."""
    return brute_attention(inputs["query"], inputs["key"], inputs["value"], MIXED_SHAPE["grid"], MIXED_SHAPE["window"],
                           MIXED_SHAPE["stride"], MIXED_SHAPE["dilation"], MIXED_SHAPE["causal"], inputs["extra_key"],
                           inputs["extra_value"], inputs["extra_mask"])
