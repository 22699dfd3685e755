"""HunyuanVideo 1.5 (HunyuanVideo15Transformer3DModel): the video grid first, then one conditioning sequence, masked.

The transformer joins its conditions into that sequence per sample: valid image (SigLIP, image-to-video), valid ByT5
(glyph text), valid Qwen2.5-VL text, then the padding of each; the mask marks which are valid (text-to-video masks all
image tokens). Its processor widens the mask over the video tokens and builds an N x N mask from it (query valid and
key valid): valid queries see every valid key, padded text queries see nothing (SDPA gives them zeros). Only double-
stream blocks; RoPE on video tokens only; diffusers has no context-parallel plan for this model.
"""

from __future__ import annotations

from typing import Optional

import torch
from diffusers.models.embeddings import apply_rotary_emb

from .common import GNAProcessorBase, joint_attention
from .registry import argument


def _heads(attn, x: torch.Tensor) -> torch.Tensor:
    return x.unflatten(2, (attn.heads, -1))


class HunyuanVideo15GNAProcessor(GNAProcessorBase):
    """Video queries: GNA over the video grid plus the valid conditioning tokens. Conditioning queries: dense over
    the valid keys, zero where padded, as diffusers' N x N mask makes them. Dense steps: every query dense over the
    valid keys, padded conditioning queries zero (or the original processor, as the recipe's dense_path says)."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None,
                 image_rotary_emb=None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.state.original_dense or encoder_hidden_states is None or attention_mask is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        query, key, value = (_heads(attn, proj(hidden_states)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if image_rotary_emb is not None:       # RoPE on video tokens only
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        text_query, text_key, text_value = (_heads(attn, proj(encoder_hidden_states))
                                            for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        if attn.norm_added_q is not None:
            text_query = attn.norm_added_q(text_query)
        if attn.norm_added_k is not None:
            text_key = attn.norm_added_k(text_key)
        text_len = encoder_hidden_states.shape[1]
        text_mask = attention_mask.reshape(attention_mask.shape[0], -1)[:, -text_len:].bool()
        out = joint_attention(torch.cat([query, text_query], dim=1), torch.cat([key, text_key], dim=1),
                              torch.cat([value, text_value], dim=1), self.state, self.state.params(self.group),
                              text_len, text_first=False, text_mask=text_mask).flatten(2, 3).to(query.dtype)
        out, text_out = out[:, :-text_len], out[:, -text_len:] * text_mask[..., None].to(out.dtype)
        if getattr(attn, "to_out", None) is not None:
            out = attn.to_out[1](attn.to_out[0](out))
        if getattr(attn, "to_add_out", None) is not None:
            text_out = attn.to_add_out(text_out)
        return out, text_out


def read_video15_grid(transformer, args: tuple, kwargs: dict) -> tuple[tuple[int, int, int], int]:
    """Grid from the 5D latent [B, C, F, H, W] and the patch sizes; the conditioning sequence's length is the sum of
    the Qwen2.5-VL text, the ByT5 text and the image embeddings the transformer joins."""
    hidden_states = argument(args, kwargs, "hidden_states", 0)
    conditions = [argument(args, kwargs, name, position) for name, position in
                  (("encoder_hidden_states", 2), ("encoder_hidden_states_2", 5), ("image_embeds", 7))]
    config = transformer.config
    p, pt = config.patch_size, config.patch_size_t
    _, _, frames, height, width = hidden_states.shape
    return (frames // pt, height // p, width // p), sum(c.shape[1] for c in conditions if c is not None)


def read_video15_text_valid(transformer, args: tuple, kwargs: dict) -> tuple[int, ...]:
    """The real conditioning tokens per batch entry: the transformer moves the valid image, ByT5 and Qwen2.5-VL tokens
    to the front of its sequence (so they are a prefix), the image tokens all valid unless image_embeds is all zeros
    (text-to-video), as it decides."""
    text_mask = argument(args, kwargs, "encoder_attention_mask", 3)
    glyph_mask = argument(args, kwargs, "encoder_attention_mask_2", 6)
    image_embeds = argument(args, kwargs, "image_embeds", 7)
    counts = text_mask.bool().sum(dim=1) + glyph_mask.bool().sum(dim=1)
    counts = counts + image_embeds.shape[1] * (image_embeds != 0).any().long()
    return tuple(counts.tolist())
