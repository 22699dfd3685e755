"""Cosmos-1.0 (CosmosTransformer3DModel): `attn1` is video self-attention over (T, H/2, W/2); `attn2` (cross-attention
to T5) is left alone."""

from __future__ import annotations

from typing import Optional

import torch
from diffusers.models.embeddings import apply_rotary_emb

from .common import GNAProcessorBase, grid_attention
from .registry import argument, latent_grid


class CosmosGNAProcessor(GNAProcessorBase):
    """GNA over the video grid for the self-attention; dense steps and cross-attention use the original."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None,
                 image_rotary_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.state.original_dense or encoder_hidden_states is not None or attention_mask is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        query, key, value = (proj(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2)
                             for proj in (attn.to_q, attn.to_k, attn.to_v))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
            key = apply_rotary_emb(key, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
        # grouped-query attention: repeat KV heads up to the query heads, as diffusers does
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
        value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
        out = grid_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), self.state,
                             self.state.params(self.group))
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def read_cosmos_grid(transformer, args: tuple, kwargs: dict) -> tuple[tuple[int, ...], int]:
    """Grid from the 5D latent and the config's patch size (2D for Cosmos-Predict2 text2image's single frame)."""
    return latent_grid(argument(args, kwargs, "hidden_states", 0), transformer.config.patch_size), 0
