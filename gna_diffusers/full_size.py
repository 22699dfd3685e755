"""Full-size transformers with random weights, and inputs at the real token counts, to measure speed at scale where
real weights cannot be downloaded. Configs are the published config.json values of each checkpoint's transformer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import (CosmosTransformer3DModel, FluxTransformer2DModel, HunyuanVideoTransformer3DModel,
                       WanTransformer3DModel)


@dataclass(frozen=True)
class FullSize:
    model: str                    # recipe `model` key
    checkpoint: str               # whose transformer config this is
    transformer_class: type
    config: dict
    recipe: str                   # shipped recipe measured by default
    calls_per_step: int           # transformer calls per denoising step (CFG doubles it)
    steps: int                    # the pipeline's default number of steps
    make_inputs: Callable[[float, torch.device, torch.dtype, int], dict]  # (scale, device, dtype, batch) -> kwargs


def _flux_inputs(scale: float, device, dtype, batch: int) -> dict:
    side = max(2, int(256 * scale))                  # 4096px -> 256x256 packed latent tokens
    text = max(1, int(512 * scale))
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).to(device, dtype)
    return dict(hidden_states=torch.randn(batch, side * side, 64, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(batch, text, 4096, device=device, dtype=dtype),
                pooled_projections=torch.randn(batch, 768, device=device, dtype=dtype),
                timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
                guidance=torch.full((batch,), 3.5, device=device, dtype=dtype),
                img_ids=img_ids, txt_ids=torch.zeros(text, 3, device=device, dtype=dtype))


def _hunyuan_inputs(scale: float, device, dtype, batch: int) -> dict:
    t, h, w = max(2, int(30 * scale)), max(2, int(48 * scale)), max(2, int(80 * scale))   # 30x48x80 tokens
    text = max(2, int(256 * scale))
    mask = torch.zeros(batch, text, device=device, dtype=torch.bool)
    mask[:, : max(1, text // 4)] = True              # a typical prompt fills a quarter of the 256 text slots
    return dict(hidden_states=torch.randn(batch, 16, t, 2 * h, 2 * w, device=device, dtype=dtype),
                timestep=torch.full((batch,), 500, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(batch, text, 4096, device=device, dtype=dtype),
                encoder_attention_mask=mask, pooled_projections=torch.randn(batch, 768, device=device, dtype=dtype),
                guidance=torch.full((batch,), 6000.0, device=device, dtype=dtype))


def _cosmos_inputs(scale: float, device, dtype, batch: int) -> dict:
    t, h, w = max(2, int(16 * scale)), max(2, int(44 * scale)), max(2, int(80 * scale))   # 16x44x80 tokens
    return dict(hidden_states=torch.randn(batch, 16, t, 2 * h, 2 * w, device=device, dtype=dtype),
                timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(batch, max(1, int(512 * scale)), 1024, device=device, dtype=dtype),
                padding_mask=torch.zeros(1, 1, 16 * h, 16 * w, device=device, dtype=dtype))


def _wan_inputs(scale: float, device, dtype, batch: int) -> dict:
    t, h, w = max(2, int(21 * scale)), max(2, int(45 * scale)), max(2, int(80 * scale))   # 720p x 81: 21x45x80
    return dict(hidden_states=torch.randn(batch, 16, t, 2 * h, 2 * w, device=device, dtype=dtype),
                timestep=torch.full((batch,), 500, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(batch, max(1, int(512 * scale)), 4096, device=device, dtype=dtype))


def _cosmos_predict2_inputs(scale: float, device, dtype, batch: int) -> dict:
    h, w = max(2, int(48 * scale)), max(2, int(85 * scale))            # 768x1360, one frame: 48x85 tokens
    return dict(hidden_states=torch.randn(batch, 16, 1, 2 * h, 2 * w, device=device, dtype=dtype),
                timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(batch, max(1, int(512 * scale)), 1024, device=device, dtype=dtype),
                padding_mask=torch.zeros(1, 1, 16 * h, 16 * w, device=device, dtype=dtype))


def _cosmos_predict2_video_inputs(scale: float, device, dtype, batch: int) -> dict:
    t, h, w = max(2, int(24 * scale)), max(2, int(44 * scale)), max(2, int(80 * scale))   # 704x1280x93: 24x44x80
    timestep = torch.full((batch, 1, t, 1, 1), 0.5, device=device, dtype=dtype)
    timestep[:, :, 0] = 1e-4                         # the conditioning frame, as the pipeline gives it
    condition = torch.zeros(batch, 1, t, 2 * h, 2 * w, device=device, dtype=dtype)
    condition[:, :, 0] = 1
    return dict(hidden_states=torch.randn(batch, 16, t, 2 * h, 2 * w, device=device, dtype=dtype),
                condition_mask=condition, timestep=timestep, fps=16,
                encoder_hidden_states=torch.randn(batch, max(1, int(512 * scale)), 1024, device=device, dtype=dtype),
                padding_mask=torch.zeros(1, 1, 16 * h, 16 * w, device=device, dtype=dtype))


FULL_SIZE = {
    "flux": FullSize("flux", "black-forest-labs/FLUX.1-dev", FluxTransformer2DModel, dict(
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56)), "flux-dev-4k", 1, 28, _flux_inputs),
    "hunyuan_video": FullSize("hunyuan_video", "hunyuanvideo-community/HunyuanVideo", HunyuanVideoTransformer3DModel,
                              dict(in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128,
                                   num_layers=20, num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0,
                                   patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
                                   text_embed_dim=4096, pooled_projection_dim=768, rope_theta=256.0,
                                   rope_axes_dim=(16, 56, 56)), "hunyuan-video-720p", 1, 50, _hunyuan_inputs),
    "cosmos": FullSize("cosmos", "nvidia/Cosmos-1.0-Diffusion-7B-Text2World", CosmosTransformer3DModel, dict(
        in_channels=16, out_channels=16, num_attention_heads=32, attention_head_dim=128, num_layers=28,
        mlp_ratio=4.0, text_embed_dim=1024, adaln_lora_dim=256, max_size=(128, 240, 240), patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=True, extra_pos_embed_type="learnable"),
        "cosmos-7b-text2world", 2, 35, _cosmos_inputs),
    "wan": FullSize("wan", "Wan-AI/Wan2.1-T2V-14B-Diffusers", WanTransformer3DModel, dict(
        patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024),
        "wan-720p", 2, 50, _wan_inputs),
    "cosmos_predict2": FullSize("cosmos", "nvidia/Cosmos-Predict2-2B-Text2Image", CosmosTransformer3DModel, dict(
        in_channels=16, out_channels=16, num_attention_heads=16, attention_head_dim=128, num_layers=28, mlp_ratio=4.0,
        text_embed_dim=1024, adaln_lora_dim=256, max_size=(128, 240, 240), patch_size=(1, 2, 2),
        rope_scale=(1.0, 4.0, 4.0), concat_padding_mask=True, extra_pos_embed_type=None),
        "cosmos-predict2-text2image", 2, 35, _cosmos_predict2_inputs),
    "cosmos_predict2_video": FullSize("cosmos", "nvidia/Cosmos-Predict2-2B-Video2World", CosmosTransformer3DModel, dict(
        in_channels=17, out_channels=16, num_attention_heads=16, attention_head_dim=128, num_layers=28, mlp_ratio=4.0,
        text_embed_dim=1024, adaln_lora_dim=256, max_size=(128, 240, 240), patch_size=(1, 2, 2),
        rope_scale=(1.0, 3.0, 3.0), concat_padding_mask=True, extra_pos_embed_type=None),
        "cosmos-predict2-video2world", 2, 35, _cosmos_predict2_video_inputs),
}


def random_module(cls: type, config, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """`cls(config)` (a transformers config object) or `cls(**config)` (diffusers keyword arguments) with random
    weights, created directly in `dtype` on `device`: no float32 copy, no host round trip."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            module = cls(**config) if isinstance(config, dict) else cls(config)
    finally:
        torch.set_default_dtype(previous)
    return module.eval().requires_grad_(False)


def build_random(model: str, device: torch.device, dtype: torch.dtype = torch.bfloat16,
                 shrink: dict | None = None) -> torch.nn.Module:
    """The model's transformer with random weights, created directly in `dtype` on `device`.

    `shrink` overrides config entries (tests use it to build a small version of the same architecture)."""
    spec = FULL_SIZE[model]
    return random_module(spec.transformer_class, {**spec.config, **(shrink or {})}, device, dtype)
