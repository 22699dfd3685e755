"""FLUX.2 (Flux2Transformer2DModel): joint attention with the text first, then the image stream.

The image stream is the generated image's grid, possibly with reference-image tokens (image editing) next to it:
`Flux2Pipeline` appends them after the grid ([text, grid, refs]); the Klein KV pipeline's first step puts them before
the grid ([text, refs, grid], with the refs attending only to themselves) and caches their keys and values, which
later steps insert between text and grid. In every layout grid queries see their neighborhood plus all text and all
reference tokens, as extra dense keys; text and reference queries attend as in diffusers. Double-stream blocks
(`Flux2Attention`) and parallel single-stream blocks (`Flux2ParallelSelfAttention`) get a processor each.
"""

from __future__ import annotations

import inspect
from typing import Optional

import torch
import torch.distributed as dist
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux2 import (
    Flux2KVLayerCache,
    Flux2ParallelSelfAttnProcessor,
    Flux2KVParallelSelfAttnProcessor,
    _get_qkv_projections,
)

from .common import GNAProcessorBase, dense_attention, gna_op, joint_attention
from .registry import argument

KV_MODES = (None, "extract", "cached")


def _rope(query: torch.Tensor, key: torch.Tensor, image_rotary_emb) -> tuple[torch.Tensor, torch.Tensor]:
    if image_rotary_emb is None:
        return query, key
    return (apply_rotary_emb(query, image_rotary_emb, sequence_dim=1),
            apply_rotary_emb(key, image_rotary_emb, sequence_dim=1))


class _Flux2Attention(GNAProcessorBase):
    """The attention both block types share, once q, k, v ([B, S, H, D], RoPE applied) are made."""

    def __init__(self, original, state, group) -> None:
        super().__init__(original, state, group)
        # diffusers drops KV-cache arguments a processor does not take; only the KV processors act on them
        self.kv_aware = "kv_cache_mode" in inspect.signature(original.__call__).parameters

    def _uses_original(self, attention_mask: Optional[torch.Tensor], kv_cache_mode: Optional[str]) -> bool:
        """Dense steps the recipe keeps on the original path, explicit masks and KV-cache arguments the original
        processor would ignore (then the layout may hold reference tokens before the grid, which only the original's
        dense attention handles) run the original processor; KV-cache modes are checked here."""
        if kv_cache_mode is not None and not self.kv_aware:
            return True
        if kv_cache_mode not in KV_MODES:
            raise ValueError(f"kv_cache_mode={kv_cache_mode!r}: FLUX.2 GNA knows {KV_MODES}")
        if kv_cache_mode is not None and self.state.ulysses is not None:
            raise ValueError(f"kv_cache_mode={kv_cache_mode!r} under Ulysses context parallelism: diffusers' KV-cache "
                             f"attention does not shard, so GNA does not either; run the KV pipeline on one GPU")
        return self.state.original_dense or attention_mask is not None

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, text_len: int,
                kv_cache: Optional[Flux2KVLayerCache], kv_cache_mode: Optional[str],
                num_ref_tokens: int) -> torch.Tensor:
        """[B, S, H, D] -> [B, S, H*D] for the sequence [text, image stream] of this rank; on dense steps the grid
        queries see every key the text queries see."""
        params = self.state.params(self.group)
        grid_len = params.tokens
        dense = self.state.dense_now
        if kv_cache_mode == "extract" and num_ref_tokens > 0:
            # [text, refs, grid]: the refs' keys and values are cached for later steps and see only themselves
            refs = slice(text_len, text_len + num_ref_tokens)
            if kv_cache is not None:
                kv_cache.store(key[:, refs].clone(), value[:, refs].clone())
            dense_len = text_len + num_ref_tokens
            grid = dense_attention(query[:, dense_len:], key, value) if dense else \
                gna_op(query[:, dense_len:], key[:, dense_len:], value[:, dense_len:], params,
                       self.state.recipe.backend, key[:, :dense_len], value[:, :dense_len])
            text = dense_attention(query[:, :text_len], key, value)
            ref = dense_attention(query[:, refs], key[:, refs], value[:, refs])
            out = torch.cat([text, ref, grid], dim=1)
        elif kv_cache_mode == "cached" and kv_cache is not None:
            # [text, grid] queries; the cached refs' keys and values join between text and grid
            ref_key, ref_value = kv_cache.get()
            extra_key = torch.cat([key[:, :text_len], ref_key], dim=1)
            extra_value = torch.cat([value[:, :text_len], ref_value], dim=1)
            all_key = torch.cat([extra_key, key[:, text_len:]], dim=1)
            all_value = torch.cat([extra_value, value[:, text_len:]], dim=1)
            if dense:
                out = dense_attention(query, all_key, all_value)
            else:
                grid = gna_op(query[:, text_len:], key[:, text_len:], value[:, text_len:], params,
                              self.state.recipe.backend, extra_key, extra_value)
                out = torch.cat([dense_attention(query[:, :text_len], all_key, all_value), grid], dim=1)
        else:
            # [text, grid, refs]; under Ulysses this rank holds a slice of each part, the refs counted whole
            world = dist.get_world_size(self.state.ulysses) if self.state.ulysses is not None else 1
            tail = world * query.shape[1] - self.state.text_len - grid_len
            out = joint_attention(query, key, value, self.state, params, text_len, text_first=True, tail_len=tail)
        return out.flatten(2, 3).to(query.dtype)


class Flux2GNAProcessor(_Flux2Attention):
    """Double-stream blocks (`Flux2Attention`): text and image projected apart, attended together."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None, image_rotary_emb=None,
                 kv_cache: Optional[Flux2KVLayerCache] = None, kv_cache_mode: Optional[str] = None,
                 num_ref_tokens: int = 0):
        if self._uses_original(attention_mask, kv_cache_mode) or encoder_hidden_states is None:
            kv = {} if not self.kv_aware else dict(kv_cache=kv_cache, kv_cache_mode=kv_cache_mode,
                                                   num_ref_tokens=num_ref_tokens)
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, **kv)
        query, key, value, enc_query, enc_key, enc_value = _get_qkv_projections(attn, hidden_states,
                                                                                encoder_hidden_states)
        query, key, value = (t.unflatten(-1, (-1, attn.head_dim)) for t in (query, key, value))
        query, key = attn.norm_q(query), attn.norm_k(key)
        enc_query, enc_key, enc_value = (t.unflatten(-1, (-1, attn.head_dim)) for t in (enc_query, enc_key, enc_value))
        enc_query, enc_key = attn.norm_added_q(enc_query), attn.norm_added_k(enc_key)
        query, key = _rope(torch.cat([enc_query, query], dim=1), torch.cat([enc_key, key], dim=1), image_rotary_emb)
        value = torch.cat([enc_value, value], dim=1)
        text_len = encoder_hidden_states.shape[1]
        out = self._attend(query, key, value, text_len, kv_cache, kv_cache_mode, num_ref_tokens)
        enc_out, out = out.split_with_sizes([text_len, out.shape[1] - text_len], dim=1)
        out = attn.to_out[1](attn.to_out[0](out))
        return out, attn.to_add_out(enc_out)


class Flux2SingleGNAProcessor(_Flux2Attention):
    """Parallel single-stream blocks (`Flux2ParallelSelfAttention`): one fused projection makes q, k, v and the MLP
    input of the joined sequence; the attention output and the MLP share one output projection."""

    def __call__(self, attn, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                 image_rotary_emb=None, kv_cache: Optional[Flux2KVLayerCache] = None,
                 kv_cache_mode: Optional[str] = None, num_txt_tokens: int = 0, num_ref_tokens: int = 0):
        if self._uses_original(attention_mask, kv_cache_mode):
            kv = {} if not self.kv_aware else dict(kv_cache=kv_cache, kv_cache_mode=kv_cache_mode,
                                                   num_txt_tokens=num_txt_tokens, num_ref_tokens=num_ref_tokens)
            return self.original(attn, hidden_states, attention_mask, image_rotary_emb, **kv)
        projected = attn.to_qkv_mlp_proj(hidden_states)
        qkv_dim, mlp_dim = 3 * attn.inner_dim, attn.mlp_hidden_dim * attn.mlp_mult_factor
        local_qkv = projected.shape[-1] * qkv_dim // (qkv_dim + mlp_dim)   # as diffusers splits (tensor parallel)
        qkv, mlp = projected.split_with_sizes([local_qkv, projected.shape[-1] - local_qkv], dim=-1)
        query, key, value = (t.unflatten(-1, (-1, attn.head_dim)) for t in qkv.chunk(3, dim=-1))
        query, key = _rope(attn.norm_q(query), attn.norm_k(key), image_rotary_emb)
        # the text length: the KV modes pass it; otherwise the transformer's input (a rank's share under Ulysses)
        text_len = num_txt_tokens if kv_cache_mode is not None else \
            self.state.text_len // (dist.get_world_size(self.state.ulysses) if self.state.ulysses else 1)
        out = self._attend(query, key, value, text_len, kv_cache, kv_cache_mode, num_ref_tokens)
        return attn.to_out(torch.cat([out, attn.mlp_act_fn(mlp)], dim=-1))


def flux2_processor(original, state, group) -> _Flux2Attention:
    """The GNA processor for a block's attention, chosen by the kind of block its original processor serves."""
    single = isinstance(original, (Flux2ParallelSelfAttnProcessor, Flux2KVParallelSelfAttnProcessor))
    return (Flux2SingleGNAProcessor if single else Flux2GNAProcessor)(original, state, group)


def read_flux2_grid(transformer, args: tuple, kwargs: dict) -> tuple[tuple[int, int], int]:
    """Grid from img_ids: the generated image is the one run of tokens at time 0 (reference images sit at times 10,
    20, ...), row-major over (rows, cols), first in the image stream or, in the KV pipeline's extract step, right after
    the references; text length from encoder_hidden_states."""
    hidden_states = argument(args, kwargs, "hidden_states", 0)
    encoder_hidden_states = argument(args, kwargs, "encoder_hidden_states", 1)
    img_ids = argument(args, kwargs, "img_ids", 3)
    if img_ids is None:
        raise ValueError("FLUX.2 GNA needs the transformer's img_ids argument to learn the image grid")
    if img_ids.ndim == 3:
        img_ids = img_ids[0]
    if img_ids.shape[0] != hidden_states.shape[1]:
        raise ValueError(f"FLUX.2 img_ids has {img_ids.shape[0]} positions but hidden_states has "
                         f"{hidden_states.shape[1]} tokens")
    at_zero = img_ids[:, 0] == 0
    ids = img_ids[at_zero].long()
    if len(ids) == 0:
        raise ValueError("FLUX.2 img_ids has no token at time 0: no generated image to run GNA over")
    first, rows, cols = torch.stack([at_zero.long().argmax(), ids[:, 1].max() + 1, ids[:, 2].max() + 1]).tolist()
    extract = argument(args, kwargs, "kv_cache_mode", 9) == "extract"
    expected_first = (argument(args, kwargs, "num_ref_tokens", 10) or 0) if extract else 0
    row_major = ids[:, 1] * cols + ids[:, 2] == torch.arange(len(ids), device=ids.device)
    if rows * cols != len(ids) or first != expected_first or not bool(row_major.all()):
        raise ValueError(f"FLUX.2 img_ids at time 0 are not one row-major {rows}x{cols} grid of {len(ids)} tokens "
                         f"starting at position {expected_first} of the image stream (found position {first}); GNA "
                         f"needs the generated image as a full grid")
    return (rows, cols), encoder_hidden_states.shape[1]
