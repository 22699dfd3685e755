"""Wan 2.1 / 2.2 (WanTransformer3DModel): `attn1` is self-attention over the video tokens alone, (F/pt, H/ph, W/pw)
row-major; `attn2` (cross-attention to umT5 text, plus CLIP image tokens in Wan 2.1 I2V) is left alone."""

from __future__ import annotations

from typing import Optional

import torch
from diffusers.models.transformers.transformer_wan import _get_qkv_projections

from .common import GNAProcessorBase, grid_attention
from .registry import argument, latent_grid


def _rotary(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on [B, S, H, D] with interleaved pairs, exactly as WanAttnProcessor applies it (there it is a
    closure, so it cannot be imported)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class WanGNAProcessor(GNAProcessorBase):
    """GNA over the video grid for the self-attention; dense steps and cross-attention use the original."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None,
                 rotary_emb: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        if self.state.original_dense or encoder_hidden_states is not None or attention_mask is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query, key = attn.norm_q(query), attn.norm_k(key)     # RMSNorm across all heads, before the head split
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if rotary_emb is not None:
            query, key = _rotary(query, *rotary_emb), _rotary(key, *rotary_emb)
        out = grid_attention(query, key, value, self.state, self.state.params(self.group))
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def read_wan_grid(transformer, args: tuple, kwargs: dict) -> tuple[tuple[int, ...], int]:
    """Grid from the 5D latent and the config's patch size; no text in the self-attention's sequence."""
    return latent_grid(argument(args, kwargs, "hidden_states", 0), transformer.config.patch_size), 0
