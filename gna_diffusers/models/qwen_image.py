"""Qwen-Image (QwenImageTransformer2DModel): double-stream joint attention, the text first, padded text masked through
`encoder_hidden_states_mask`. The image stream is the generated image's grid, followed by the condition images' tokens
in the edit pipelines (`img_shapes` lists them after the generated image): those follow the grid as dense tokens."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.distributed as dist
from diffusers.models.transformers.transformer_qwenimage import apply_rotary_emb_qwen

from .common import GNAProcessorBase, joint_attention
from .registry import argument


def _whole_text_mask(mask: torch.Tensor, group) -> torch.Tensor:
    """Under Ulysses each rank gets its slice of the text mask (diffusers' plan splits it); GNA sees the whole text."""
    parts = [torch.empty_like(mask) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, mask.contiguous(), group=group)
    return torch.cat(parts, dim=1)


class QwenImageGNAProcessor(GNAProcessorBase):
    """Image queries: GNA over the image grid plus the valid text (and any condition-image tokens). Text queries:
    dense, with the same mask. Dense steps: every query dense over the valid keys (or the original processor, as the
    recipe's dense_path says)."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: Optional[torch.Tensor] = None,
                 encoder_hidden_states_mask: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None, image_rotary_emb=None) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
        if self.state.original_dense or encoder_hidden_states is None \
                or attention_mask is not None:       # the original explains what it refuses
            return self.original(attn, hidden_states, encoder_hidden_states, encoder_hidden_states_mask,
                                 attention_mask, image_rotary_emb)
        head_dim = attn.inner_dim // attn.heads
        query, key, value = (proj(hidden_states).unflatten(-1, (-1, head_dim))
                             for proj in (attn.to_q, attn.to_k, attn.to_v))
        text_query, text_key, text_value = (proj(encoder_hidden_states).unflatten(-1, (-1, head_dim))
                                            for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if attn.norm_added_q is not None:
            text_query = attn.norm_added_q(text_query)
        if attn.norm_added_k is not None:
            text_key = attn.norm_added_k(text_key)
        if image_rotary_emb is not None:
            image_freqs, text_freqs = image_rotary_emb
            query, key = (apply_rotary_emb_qwen(t, image_freqs, use_real=False) for t in (query, key))
            text_query, text_key = (apply_rotary_emb_qwen(t, text_freqs, use_real=False)
                                    for t in (text_query, text_key))
        text_len = encoder_hidden_states.shape[1]
        text_mask = None if encoder_hidden_states_mask is None else encoder_hidden_states_mask.bool()
        world = 1
        if self.state.ulysses is not None:
            world = dist.get_world_size(self.state.ulysses)
            if text_mask is not None:
                text_mask = _whole_text_mask(text_mask, self.state.ulysses)
        params = self.state.params(self.group)
        tail = world * hidden_states.shape[1] - params.tokens      # condition-image tokens after the grid
        out = joint_attention(torch.cat([text_query, query], dim=1), torch.cat([text_key, key], dim=1),
                              torch.cat([text_value, value], dim=1), self.state, params, text_len, text_first=True,
                              text_mask=text_mask, tail_len=tail)
        out = out.flatten(2, 3).to(query.dtype)
        text_out, out = out[:, :text_len], out[:, text_len:]
        out = attn.to_out[0](out.contiguous())
        if len(attn.to_out) > 1:
            out = attn.to_out[1](out)
        return out, attn.to_add_out(text_out.contiguous())


def read_qwen_image_grid(transformer, args: tuple, kwargs: dict) -> tuple[tuple[int, ...], int]:
    """Grid from img_shapes: the first (frames, rows, cols) of the first sample is the generated image, (rows, cols)
    for an image (later entries are condition images); text length from encoder_hidden_states."""
    hidden_states = argument(args, kwargs, "hidden_states", 0)
    encoder_hidden_states = argument(args, kwargs, "encoder_hidden_states", 1)
    img_shapes = argument(args, kwargs, "img_shapes", 4)
    if not img_shapes:
        raise ValueError("Qwen-Image GNA needs the transformer's img_shapes argument to learn the image grid")
    # per sample a list of shapes, or (older form) one shape; diffusers' RoPE reads the first sample, so do we
    shapes = img_shapes[0] if isinstance(img_shapes[0], list) else [img_shapes[0]]
    frames, rows, cols = (int(v) for v in shapes[0])
    tokens = sum(math.prod(shape) for shape in shapes)
    if tokens != hidden_states.shape[1]:
        raise ValueError(f"img_shapes={shapes} describe {tokens} tokens but hidden_states has {hidden_states.shape[1]}")
    return ((rows, cols) if frames == 1 else (frames, rows, cols)), encoder_hidden_states.shape[1]


def read_qwen_text_valid(transformer, args: tuple, kwargs: dict) -> Optional[tuple[int, ...]]:
    """The real prompt tokens per batch entry, when the text mask keeps a prefix of the text as the pipelines' padding
    does; None without a mask (nothing padded) or for a mask that keeps other tokens (then it is applied as given)."""
    mask = argument(args, kwargs, "encoder_hidden_states_mask", 2)
    if mask is None:
        return None
    mask = mask.bool()
    counts = mask.sum(dim=1)
    prefix = (mask == (torch.arange(mask.shape[1], device=mask.device) < counts[:, None])).all()
    *valid, is_prefix = torch.cat([counts, prefix[None].long()]).tolist()   # one device sync
    return tuple(valid) if is_prefix else None
