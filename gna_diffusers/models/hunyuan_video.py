"""HunyuanVideo (HunyuanVideoTransformer3DModel): the video grid first, the padded text appended with a key mask."""

from __future__ import annotations

from typing import Optional

import torch
from diffusers.models.embeddings import apply_rotary_emb

from .common import GNAProcessorBase, joint_attention
from .registry import argument


def _heads(attn, x: torch.Tensor) -> torch.Tensor:
    return x.unflatten(2, (attn.heads, -1))


class HunyuanVideoGNAProcessor(GNAProcessorBase):
    """Video queries: GNA over the video grid plus the unpadded text. Text queries: dense, masked as in diffusers."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None,
                 image_rotary_emb: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.state.original_dense or encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        text_len = encoder_hidden_states.shape[1]
        joined = attn.add_q_proj is None        # single-stream blocks project video and text together
        if joined:
            hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)
        query, key, value = (_heads(attn, proj(hidden_states)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:       # RoPE on video tokens only
            video = query.shape[1] - (text_len if joined else 0)
            query = torch.cat([apply_rotary_emb(query[:, :video], image_rotary_emb, sequence_dim=1),
                               query[:, video:]], dim=1)
            key = torch.cat([apply_rotary_emb(key[:, :video], image_rotary_emb, sequence_dim=1), key[:, video:]],
                            dim=1)
        if not joined:
            enc_query = _heads(attn, attn.add_q_proj(encoder_hidden_states))
            enc_key = _heads(attn, attn.add_k_proj(encoder_hidden_states))
            enc_value = _heads(attn, attn.add_v_proj(encoder_hidden_states))
            if attn.norm_added_q is not None:
                enc_query = attn.norm_added_q(enc_query)
            if attn.norm_added_k is not None:
                enc_key = attn.norm_added_k(enc_key)
            query = torch.cat([query, enc_query], dim=1)
            key = torch.cat([key, enc_key], dim=1)
            value = torch.cat([value, enc_value], dim=1)
        text_mask = None
        if attention_mask is not None:
            # the mask always spans the whole sequence; under context parallelism text_len is this rank's share
            text_mask = attention_mask.reshape(attention_mask.shape[0], -1)[:, -self.state.text_len:].bool()
        out = joint_attention(query, key, value, self.state, self.state.params(self.group), text_len,
                              text_first=False, text_mask=text_mask).flatten(2, 3).to(query.dtype)
        out, enc_out = out[:, :-text_len], out[:, -text_len:]
        if getattr(attn, "to_out", None) is not None:
            out = attn.to_out[1](attn.to_out[0](out))
        if getattr(attn, "to_add_out", None) is not None:
            enc_out = attn.to_add_out(enc_out)
        return out, enc_out


def read_video_grid(transformer, args: tuple, kwargs: dict) -> tuple[tuple[int, int, int], int]:
    """Grid from the 5D latent [B, C, F, H, W] and the patch sizes; text length from encoder_hidden_states."""
    hidden_states = argument(args, kwargs, "hidden_states", 0)
    encoder_hidden_states = argument(args, kwargs, "encoder_hidden_states", 2)
    config = transformer.config
    p, pt = config.patch_size, config.patch_size_t
    _, _, frames, height, width = hidden_states.shape
    return (frames // pt, height // p, width // p), encoder_hidden_states.shape[1]


def read_text_valid(transformer, args: tuple, kwargs: dict) -> tuple[int, ...]:
    """The real prompt tokens per batch entry: diffusers counts the encoder mask's ones and masks every later text
    token of the joint [video, text] sequence, so the real keys are a prefix of it."""
    mask = argument(args, kwargs, "encoder_attention_mask", 3)
    return tuple(int(n) for n in mask.sum(dim=1).tolist())
