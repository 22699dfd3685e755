"""Full-size transformers with random weights, and inputs at the real token counts, to measure speed at scale where
real weights cannot be downloaded. Configs are the published config.json values of each checkpoint's transformer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from diffusers import (CosmosTransformer3DModel, Flux2Transformer2DModel, FluxTransformer2DModel,
                       HunyuanVideo15Transformer3DModel, HunyuanVideoTransformer3DModel, QwenImageTransformer2DModel,
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
    # the joint sequence's text key mask [batch, text tokens] the model builds from those inputs (None: unmasked)
    text_key_mask: Optional[Callable[[dict], torch.Tensor]] = None


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


def _flux2_inputs(scale: float, device, dtype, batch: int) -> dict:
    side = max(2, int(256 * scale))                  # 4096px -> 256x256 packed latent tokens (VAE /8, 2x2)
    text = max(1, int(512 * scale))                  # Mistral-3 prompt, always padded to 512 (no mask)
    img_ids = torch.cartesian_prod(torch.arange(1), torch.arange(side), torch.arange(side), torch.arange(1))[None]
    txt_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(text))[None]
    return dict(hidden_states=torch.randn(batch, side * side, 128, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(batch, text, 15360, device=device, dtype=dtype),
                timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
                guidance=torch.full((batch,), 4.0, device=device, dtype=dtype),
                img_ids=img_ids.expand(batch, -1, -1).to(device), txt_ids=txt_ids.expand(batch, -1, -1).to(device))


def _qwen_image_inputs(scale: float, device, dtype, batch: int) -> dict:
    side = max(2, int(256 * scale))                  # 4096px -> 256x256 packed latent tokens (VAE /8, 2x2)
    text = max(1, int(128 * scale))                  # a detailed prompt; the pipeline trims text to its real length
    return dict(hidden_states=torch.randn(batch, side * side, 64, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(batch, text, 3584, device=device, dtype=dtype),
                timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
                img_shapes=[[(1, side, side)]] * batch)


def _hunyuan15_inputs(scale: float, device, dtype, batch: int) -> dict:
    t, h, w = max(2, int(31 * scale)), max(2, int(45 * scale)), max(2, int(80 * scale))   # 720x1280x121: 31x45x80
    text, glyph, image = max(2, int(1000 * scale)), max(1, int(256 * scale)), max(1, int(729 * scale))
    mask = torch.zeros(batch, text, device=device, dtype=torch.bool)
    mask[:, : max(1, int(200 * scale))] = True       # a rewritten, detailed prompt: 200 of the 1000 text slots
    return dict(hidden_states=torch.randn(batch, 65, t, h, w, device=device, dtype=dtype),   # latent, cond, mask
                timestep=torch.full((batch,), 500, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(batch, text, 3584, device=device, dtype=dtype),
                encoder_attention_mask=mask,
                encoder_hidden_states_2=torch.randn(batch, glyph, 1472, device=device, dtype=dtype),
                encoder_attention_mask_2=torch.zeros(batch, glyph, device=device, dtype=torch.bool),  # no quoted text
                image_embeds=torch.zeros(batch, image, 1152, device=device, dtype=dtype))  # text-to-video: no image


def _hunyuan15_text_mask(inputs: dict) -> torch.Tensor:
    """The transformer's joined conditioning mask: valid image (none for text-to-video), ByT5 and text tokens first,
    then the padding."""
    image = inputs["image_embeds"]
    valid = (inputs["encoder_attention_mask"].sum(1) + inputs["encoder_attention_mask_2"].sum(1)
             + image.shape[1] * bool(image.any()))[:, None]
    length = sum(inputs[k].shape[1] for k in ("encoder_hidden_states", "encoder_hidden_states_2", "image_embeds"))
    return torch.arange(length, device=valid.device)[None] < valid


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
                                   rope_axes_dim=(16, 56, 56)), "hunyuan-video-720p", 1, 50, _hunyuan_inputs,
                              lambda inputs: inputs["encoder_attention_mask"]),
    "cosmos": FullSize("cosmos", "nvidia/Cosmos-1.0-Diffusion-7B-Text2World", CosmosTransformer3DModel, dict(
        in_channels=16, out_channels=16, num_attention_heads=32, attention_head_dim=128, num_layers=28,
        mlp_ratio=4.0, text_embed_dim=1024, adaln_lora_dim=256, max_size=(128, 240, 240), patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=True, extra_pos_embed_type="learnable"),
        "cosmos-7b-text2world", 2, 36, _cosmos_inputs),
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
    "flux2": FullSize("flux2", "black-forest-labs/FLUX.2-dev", Flux2Transformer2DModel, dict(
        patch_size=1, in_channels=128, num_layers=8, num_single_layers=48, attention_head_dim=128,
        num_attention_heads=48, joint_attention_dim=15360, timestep_guidance_channels=256, mlp_ratio=3.0,
        axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, eps=1e-6, guidance_embeds=True),
        "flux2-dev-4k", 1, 50, _flux2_inputs),       # guidance-distilled: one call a step
    "qwen_image": FullSize("qwen_image", "Qwen/Qwen-Image", QwenImageTransformer2DModel, dict(
        patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128, num_attention_heads=24,
        joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56)),
        "qwen-image-4k", 2, 50, _qwen_image_inputs),  # true CFG (true_cfg_scale 4 with a negative prompt)
    "hunyuan_video15": FullSize("hunyuan_video15", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_t2v",
                                HunyuanVideo15Transformer3DModel, dict(
        in_channels=65, out_channels=32, num_attention_heads=16, attention_head_dim=128, num_layers=54,
        num_refiner_layers=2, mlp_ratio=4.0, patch_size=1, patch_size_t=1, qk_norm="rms_norm", text_embed_dim=3584,
        text_embed_2_dim=1472, image_embed_dim=1152, rope_theta=256.0, rope_axes_dim=(16, 56, 56), target_size=960,
        task_type="t2v", use_meanflow=False), "hunyuan-video15-720p", 2, 50, _hunyuan15_inputs,
        _hunyuan15_text_mask),                        # CFG through its guider (guidance 6): two calls a step
}


def random_module(cls: type, config, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """`cls(config)` (a transformers config object) or `cls(**config)` (diffusers keyword arguments) with random
    weights, created directly in `dtype` on `device`: no float32 copy, no host round trip. `device` may be `meta`: the
    module's structure and sizes without memory."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            module = cls(**config) if isinstance(config, dict) else cls(config)
    finally:
        torch.set_default_dtype(previous)
    # a buffer cloned from a module-level tensor (the Cosmos VAE's wavelets) escapes the device context
    return module.to(device).eval().requires_grad_(False)


def build_random(model: str, device: torch.device, dtype: torch.dtype = torch.bfloat16,
                 shrink: dict | None = None) -> torch.nn.Module:
    """The model's transformer with random weights, created directly in `dtype` on `device`.

    `shrink` overrides config entries (tests use it to build a small version of the same architecture)."""
    spec = FULL_SIZE[model]
    return random_module(spec.transformer_class, {**spec.config, **(shrink or {})}, device, dtype)
