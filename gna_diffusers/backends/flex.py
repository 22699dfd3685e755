"""GNA through torch FlexAttention on the tiled layout.

The BlockMask comes straight from tile arithmetic (ops/tiles.py), O(tiles), with unmasked ("full") blocks separated
from partial ones, so `mask_mod` only runs on partial blocks. Building it from a mask function instead needs memory
proportional to tokens^2 (112 GiB at 123K tokens). Extra dense tokens (text) are a second flex pass over the extra
keys, merged by log-sum-exp.
"""

from __future__ import annotations

import functools
import logging
from typing import Optional

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from ..ops.merge import merge_attention
from ..ops.layout import TiledLayout
from ..ops.params import GNAParams
from ..ops.semantics import window_start_end, group_length
from ..ops.tiles import block_table, choose_tile
from ..ops.inputs import GNAInputs
from .registry import Backend, register_backend

logger = logging.getLogger("gna_diffusers")

# Tile volume = FlexAttention block size. 128 matches the Triton kernel's query block on Hopper.
TILE_VOLUME = 128


# Dynamo caches compiled code per code object: every grid, head count and block mask is one more entry of the same
# `flex_attention` frame, and past the default limit of 8 it silently falls back to eager flex, which materialises
# every score (hundreds of GiB at 4K). Our calls raise the limit for themselves only.
RECOMPILE_LIMIT = 256


@functools.lru_cache(maxsize=None)
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


def _kernel_options(device: torch.device) -> Optional[dict]:
    """Hopper: TMA loads in the Triton kernel (measured 6% faster on H100, HunyuanVideo 30x48x80)."""
    return {"USE_TMA": True} if torch.cuda.get_device_capability(device)[0] == 9 else None


def run_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Compiled flex on CUDA; eager on CPU (compiled CPU flex cannot return the LSE), which the tests use."""
    if q.device.type != "cuda":
        return flex_attention(q, k, v, return_lse=True, **kwargs)
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        return _compiled_flex()(q, k, v, return_lse=True, kernel_options=_kernel_options(q.device), **kwargs)


def _query_windows(params: GNAParams, layout: TiledLayout, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[tiled_tokens, ndim] window [start, end) in group positions for every tiled query (padding clamped)."""
    coords = layout.coordinates(device)
    starts, ends = [], []
    for i, length in enumerate(params.grid):
        x = coords[:, i].clamp(max=length - 1)
        group = x % params.dilation[i]
        start, end = window_start_end(x // params.dilation[i], group_length(length, params.dilation[i], group),
                                      params.window[i], params.stride[i], params.causal[i])
        starts.append(start)
        ends.append(end)
    return torch.stack(starts, 1).to(torch.int32), torch.stack(ends, 1).to(torch.int32)


def _key_positions(params: GNAParams, layout: TiledLayout, device: torch.device) -> torch.Tensor:
    """[tiled_tokens, ndim] group position of every tiled key; padding lands past every window's end."""
    return (layout.coordinates(device) // torch.tensor(params.dilation, device=device)).to(torch.int32)


def _dilation_group(layout: TiledLayout, device: torch.device) -> torch.Tensor:
    """[tiled_tokens] int32 index of the dilation group (combined over dimensions) of every tiled position."""
    return torch.arange(layout.num_groups, device=device, dtype=torch.int32).repeat_interleave(
        layout.tiles_per_group * layout.tile_volume)


@functools.lru_cache(maxsize=64)
def gna_block_mask(params: GNAParams, q_tile: tuple[int, ...], kv_tile: tuple[int, ...],
                   device: torch.device) -> tuple[BlockMask, TiledLayout, TiledLayout]:
    """BlockMask over the tiled layouts (cached per grid, params, tiles and device), plus the two layouts.

    Padded keys sit at group positions >= the group's length, which no window reaches. Blocks of different dilation
    groups are never visited, but `mask_mod` still checks the group: eager flex (CPU) evaluates it everywhere."""
    q_layout = TiledLayout.make(params.grid, q_tile, params.dilation)
    kv_layout = TiledLayout.make(params.grid, kv_tile, params.dilation)
    table = block_table(params, q_layout, kv_layout).to(device)
    partial, full = table == 1, table == 2

    def blocks(selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.argsort(selected.to(torch.int8), dim=1, descending=True, stable=True)
        return selected.sum(1).to(torch.int32)[None, None], order.to(torch.int32)[None, None]

    q_start, q_end = _query_windows(params, q_layout, device)
    k_pos = _key_positions(params, kv_layout, device)
    q_group = _dilation_group(q_layout, device)
    k_group = _dilation_group(kv_layout, device)
    ndim = params.ndim

    def mask_mod(b, h, q_idx, kv_idx):
        keep = q_group[q_idx] == k_group[kv_idx]
        for i in range(ndim):
            keep = keep & (q_start[q_idx, i] <= k_pos[kv_idx, i]) & (k_pos[kv_idx, i] < q_end[q_idx, i])
        return keep

    kv_num, kv_idx = blocks(partial)
    full_num, full_idx = blocks(full)
    mask = BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx,
                                    BLOCK_SIZE=(q_layout.tile_volume, kv_layout.tile_volume), mask_mod=mask_mod,
                                    seq_lengths=(q_layout.tiled_tokens, kv_layout.tiled_tokens))
    return mask, q_layout, kv_layout


def flex_gna_tiled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockMask,
                   scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention on tensors already in tiled layout, [B, N, H, D] -> (out [B, N, H, D], lse [B, N, H] fp32)."""
    out, lse = run_flex(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=mask, scale=scale)
    return out.transpose(1, 2), lse.float().transpose(1, 2)


def extra_attention(q: torch.Tensor, extra_key: torch.Tensor, extra_value: torch.Tensor,
                    extra_mask: Optional[torch.Tensor], scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense attention of every query over the extra tokens alone (masked ones dropped), with its LSE."""
    score_mod = None
    if extra_mask is not None:
        def score_mod(score, b, h, q_idx, kv_idx):
            return torch.where(extra_mask[b, kv_idx], score, -float("inf"))
    out, lse = run_flex(q.transpose(1, 2), extra_key.transpose(1, 2), extra_value.transpose(1, 2),
                        score_mod=score_mod, scale=scale)
    return out.transpose(1, 2), lse.float().transpose(1, 2)


def flex_forward(inputs: GNAInputs, q_tile: Optional[tuple[int, ...]] = None,
                 kv_tile: Optional[tuple[int, ...]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    params = inputs.params
    if q_tile is None:
        q_tile = kv_tile = choose_tile(params, TILE_VOLUME)
    mask, q_layout, kv_layout = gna_block_mask(params, tuple(q_tile), tuple(kv_tile or q_tile), inputs.device)
    out, lse = flex_gna_tiled(q_layout.to_tiled(inputs.query), kv_layout.to_tiled(inputs.key),
                              kv_layout.to_tiled(inputs.value), mask, inputs.scale)
    out = q_layout.from_tiled(out)
    lse = q_layout.from_tiled(lse.unsqueeze(-1)).squeeze(-1)
    if inputs.extra_key is not None:
        out_x, lse_x = extra_attention(inputs.query, inputs.extra_key, inputs.extra_value, inputs.extra_mask,
                                       inputs.scale)
        out, lse = merge_attention(out, lse, out_x, lse_x)
    return out, lse


def _why_not(inputs: GNAInputs) -> Optional[str]:
    d = inputs.head_dim
    if d < 16 or d & (d - 1):
        return f"head_dim={d}; flex needs a power of two >= 16"
    return None


register_backend(Backend("flex", flex_forward, _why_not,
                         priority=lambda device: 20 if device.type == "cuda" else -1))
