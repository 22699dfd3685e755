"""FLUX.1 (FluxTransformer2DModel): joint attention with the T5 text tokens first, then the image grid."""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import _get_qkv_projections

from .common import GNAProcessorBase, joint_attention
from .registry import argument


class FluxGNAProcessor(GNAProcessorBase):
    """Image queries: GNA over the image grid plus every text token. Text queries: dense. Dense steps: the original."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None,
                 image_rotary_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.state.original_dense or attention_mask is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        query, key, value, enc_query, enc_key, enc_value = _get_qkv_projections(attn, hidden_states,
                                                                                encoder_hidden_states)
        query, key, value = (t.unflatten(-1, (-1, attn.head_dim)) for t in (query, key, value))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if attn.added_kv_proj_dim is not None:
            enc_query, enc_key, enc_value = (t.unflatten(-1, (-1, attn.head_dim))
                                             for t in (enc_query, enc_key, enc_value))
            enc_query, enc_key = attn.norm_added_q(enc_query), attn.norm_added_k(enc_key)
            query = torch.cat([enc_query, query], dim=1)
            key = torch.cat([enc_key, key], dim=1)
            value = torch.cat([enc_value, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        # single-stream blocks get text and image already joined: the text length comes from the transformer's input
        # (divided among the ranks under context parallelism)
        text_len = encoder_hidden_states.shape[1] if encoder_hidden_states is not None else \
            self.state.text_len // (dist.get_world_size(self.state.ulysses) if self.state.ulysses else 1)
        out = joint_attention(query, key, value, self.state, self.state.params(self.group), text_len,
                              text_first=True).flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return out
        enc_out, out = out.split_with_sizes([text_len, out.shape[1] - text_len], dim=1)
        out = attn.to_out[1](attn.to_out[0](out.contiguous()))
        return out, attn.to_add_out(enc_out.contiguous())


def read_flux_grid(transformer, args: tuple, kwargs: dict) -> tuple[tuple[int, int], int]:
    """Grid from img_ids (rows, cols of the packed latent); text length from encoder_hidden_states."""
    hidden_states = argument(args, kwargs, "hidden_states", 0)
    encoder_hidden_states = argument(args, kwargs, "encoder_hidden_states", 1)
    img_ids = kwargs.get("img_ids")
    if img_ids is None:
        raise ValueError("FLUX GNA needs the transformer's img_ids keyword argument to learn the image grid")
    if img_ids.ndim == 3:
        img_ids = img_ids[0]
    rows, cols = (int(v) + 1 for v in img_ids[:, 1:3].amax(dim=0).tolist())
    if rows * cols != hidden_states.shape[1]:
        raise ValueError(f"FLUX img_ids describe a {rows}x{cols} grid but hidden_states has {hidden_states.shape[1]} "
                         f"tokens; GNA needs a full row-major image grid")
    return (rows, cols), encoder_hidden_states.shape[1] if encoder_hidden_states is not None else 0
