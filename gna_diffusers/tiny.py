"""Tiny FLUX, HunyuanVideo, Cosmos, Wan, FLUX.2, Qwen-Image and HunyuanVideo 1.5 pipelines built entirely offline
(random weights, in-memory tokenizers).

They run the real diffusers pipeline code in well under a second on a CPU, so the tests and the CLI's offline default
exercise exactly the attach points, token layouts and step loops that full-size models use.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLCosmos,
    AutoencoderKLHunyuanVideo,
    AutoencoderKLWan,
    Cosmos2TextToImagePipeline,
    Cosmos2VideoToWorldPipeline,
    CosmosTextToWorldPipeline,
    CosmosTransformer3DModel,
    EDMEulerScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers import (
    AutoencoderKLFlux2,
    AutoencoderKLHunyuanVideo15,
    AutoencoderKLQwenImage,
    Flux2Pipeline,
    Flux2Transformer2DModel,
    HunyuanVideo15Pipeline,
    HunyuanVideo15Transformer3DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)
from diffusers.guiders import ClassifierFreeGuidance
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    LlamaConfig,
    LlamaModel,
    LlamaTokenizerFast,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)
from transformers import (
    ByT5Tokenizer,
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLTextModel,
    Qwen2Tokenizer,
)

VOCAB = ["<unk>", "<s>", "</s>", "<pad>"] + [f"w{i}" for i in range(60)] + list("abcdefghijklmnopqrstuvwxyz ")
TEXT_LENGTH = 16
CLIP_LENGTH = 77  # HunyuanVideo asks CLIP for 77 tokens whatever the tokenizer says


def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer over a small in-memory vocabulary (no download); 77 tokens as in every CLIP pipeline."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(VOCAB)}}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_LENGTH)


def t5_tokenizer(length: int = TEXT_LENGTH) -> T5TokenizerFast:
    return T5TokenizerFast(vocab=[(t, -float(i)) for i, t in enumerate(VOCAB)], unk_token="<unk>", eos_token="</s>",
                           pad_token="<pad>", model_max_length=length)


def llama_tokenizer(length: int = TEXT_LENGTH) -> LlamaTokenizerFast:
    return LlamaTokenizerFast(vocab={t: i for i, t in enumerate(VOCAB)}, merges=[], model_max_length=length,
                              bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def _clip(hidden: int) -> tuple[CLIPTokenizer, CLIPTextModel]:
    tokenizer = clip_tokenizer()
    config = CLIPTextConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=2,
                            num_hidden_layers=1, vocab_size=len(tokenizer), max_position_embeddings=CLIP_LENGTH,
                            projection_dim=hidden, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return tokenizer, CLIPTextModel(config).eval()


def _t5(hidden: int) -> tuple[T5TokenizerFast, T5EncoderModel]:
    config = T5Config(d_model=hidden, d_ff=2 * hidden, num_layers=1, num_heads=2, d_kv=hidden // 2,
                      vocab_size=len(VOCAB) + 8, decoder_start_token_id=0, pad_token_id=3, eos_token_id=2)
    return t5_tokenizer(), T5EncoderModel(config).eval()


def _llama(hidden: int) -> tuple[LlamaTokenizerFast, LlamaModel]:
    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=2,
                         num_key_value_heads=2, num_hidden_layers=3, vocab_size=len(VOCAB), pad_token_id=3,
                         max_position_embeddings=64)
    return llama_tokenizer(), LlamaModel(config).eval()


def tiny_flux(seed: int = 0) -> FluxPipeline:
    """FLUX.1-dev layout: 2 double + 2 single blocks, 2 heads of 16, guidance embedding; 32px -> 16x16 token grid."""
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 6, 6))
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, shift_factor=0.1, scaling_factor=0.5)
    tokenizer, text_encoder = _clip(32)
    tokenizer_2, text_encoder_2 = _t5(32)
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae.eval(), text_encoder=text_encoder,
                        tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
                        transformer=transformer.eval())


def tiny_hunyuan_video(seed: int = 0) -> HunyuanVideoPipeline:
    """HunyuanVideo layout: 2 double + 2 single blocks; 5 frames of 64x64 -> a 2x8x8 token grid plus padded text."""
    torch.manual_seed(seed)
    transformer = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                                 attention_head_dim=16, num_layers=2, num_single_layers=2,
                                                 num_refiner_layers=1, patch_size=1, patch_size_t=1,
                                                 guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8,
                                                 rope_axes_dim=(4, 6, 6))
    vae = AutoencoderKLHunyuanVideo(in_channels=3, out_channels=3, latent_channels=4,
                                    down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                    up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8,) * 4,
                                    layers_per_block=1, act_fn="silu", norm_num_groups=4, scaling_factor=0.476986,
                                    spatial_compression_ratio=8, temporal_compression_ratio=4,
                                    mid_block_add_attention=True)
    tokenizer, text_encoder = _llama(16)
    tokenizer_2, text_encoder_2 = _clip(8)
    return HunyuanVideoPipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer.eval(),
                                vae=vae.eval(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)


class AlwaysSafe(torch.nn.Module):
    """Cosmos asks a guardrail model about every prompt and video; offline we have none, so everything passes."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # the pipeline asks components for device

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, video):
        return video


def tiny_cosmos(seed: int = 0) -> CosmosTextToWorldPipeline:
    """Cosmos-1.0 text2world layout: attn1 video self-attention, attn2 cross-attention to T5; 9 frames of 64x64,
    a 3x8x8 grid."""
    torch.manual_seed(seed)
    # concat_padding_mask=False: the padding-mask resize is the only torchvision call, and torchvision does not
    # import beside the CPU torch used in CI. It changes the input channels, not the attention layout.
    transformer = CosmosTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                           attention_head_dim=16, num_layers=2, mlp_ratio=2, text_embed_dim=32,
                                           adaln_lora_dim=4, max_size=(4, 32, 32), patch_size=(1, 2, 2),
                                           rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=False,
                                           extra_pos_embed_type="learnable")
    vae = AutoencoderKLCosmos(in_channels=3, out_channels=3, latent_channels=4, encoder_block_out_channels=(8,) * 4,
                              decode_block_out_channels=(8,) * 4, attention_resolutions=(8,), resolution=64,
                              num_layers=2, patch_size=4, patch_type="haar", scaling_factor=1.0,
                              spatial_compression_ratio=4, temporal_compression_ratio=4)
    tokenizer, text_encoder = _t5(32)
    scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=80, sigma_data=0.5, sigma_schedule="karras",
                                  num_train_timesteps=1000, prediction_type="epsilon", rho=7.0,
                                  final_sigmas_type="sigma_min")
    return CosmosTextToWorldPipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer.eval(),
                                     vae=vae.eval(), scheduler=scheduler, safety_checker=AlwaysSafe())


def _wan_vae() -> AutoencoderKLWan:
    """Wan 2.1's VAE layout (also Cosmos-Predict2's): 8x spatial, 4x temporal compression, 16 latent channels."""
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True]).eval()


def _wan_transformer() -> WanTransformer3DModel:
    """Wan 2.1 T2V layout: patch 1x2x2, RMSNorm across heads before RoPE, 2 heads of 16 (RoPE splits 8+4+4)."""
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
                                 out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2,
                                 rope_max_seq_len=32).eval()


def _wan_scheduler() -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def tiny_wan(seed: int = 0) -> WanPipeline:
    """Wan 2.1 T2V layout: attn1 video self-attention, attn2 cross-attention to (u)T5; 9 frames of 64x96 -> a 3x4x6
    grid."""
    torch.manual_seed(seed)
    tokenizer, text_encoder = _t5(32)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=_wan_vae(), scheduler=_wan_scheduler(),
                       transformer=_wan_transformer())


def tiny_wan_22(seed: int = 0) -> WanPipeline:
    """Wan 2.2 A14B layout: a high-noise `transformer` and a low-noise `transformer_2`, switched at timestep
    0.875 * 1000 (of 4 steps, 2 each)."""
    torch.manual_seed(seed)
    tokenizer, text_encoder = _t5(32)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=_wan_vae(), scheduler=_wan_scheduler(),
                       transformer=_wan_transformer(), transformer_2=_wan_transformer(), boundary_ratio=0.875)


def _cosmos_predict2_transformer(in_channels: int) -> CosmosTransformer3DModel:
    """Cosmos-Predict2 layout: no learnable position embedding, RoPE scaled (1, 4, 4) as in the 2B/14B configs."""
    # concat_padding_mask=False: as in tiny_cosmos, the padding-mask resize is the only torchvision call
    return CosmosTransformer3DModel(in_channels=in_channels, out_channels=16, num_attention_heads=2,
                                    attention_head_dim=16, num_layers=2, mlp_ratio=2, text_embed_dim=32,
                                    adaln_lora_dim=4, max_size=(4, 32, 32), patch_size=(1, 2, 2),
                                    rope_scale=(1.0, 4.0, 4.0), concat_padding_mask=False,
                                    extra_pos_embed_type=None).eval()


def _tiny_cosmos2(pipeline_class: type, in_channels: int, seed: int):
    torch.manual_seed(seed)
    tokenizer, text_encoder = _t5(32)
    return pipeline_class(text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=_cosmos_predict2_transformer(in_channels), vae=_wan_vae(),
                          scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True), safety_checker=AlwaysSafe())


def tiny_cosmos_predict2(seed: int = 0) -> Cosmos2TextToImagePipeline:
    """Cosmos-Predict2 text2image: one latent frame of 64x96 is an 8x12 latent, a 4x6 image grid."""
    return _tiny_cosmos2(Cosmos2TextToImagePipeline, 16, seed)


def tiny_cosmos_predict2_video(seed: int = 0) -> Cosmos2VideoToWorldPipeline:
    """Cosmos-Predict2 video2world: a conditioning frame plus 8 frames of 64x96 -> a 3x4x6 grid; per-frame
    timesteps and a condition-mask channel (in_channels 16 + 1)."""
    return _tiny_cosmos2(Cosmos2VideoToWorldPipeline, 17, seed)


# Chat-template pipelines (FLUX.2, HunyuanVideo 1.5) format a system message and the prompt; the tiny tokenizers render
# only the user's text, so the short TEXT_LENGTH still holds the prompt.
USER_TEXT_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'user' %}"
                      "{% if message['content'] is string %}{{ message['content'] }}"
                      "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{% endif %}"
                      "{% endif %}{% endfor %}")
QWEN_ROPE = {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}


def _chat_tokenizer(cls: type, **special: str):
    tokenizer = cls(vocab={t: i for i, t in enumerate(VOCAB)}, merges=[], model_max_length=TEXT_LENGTH, **special)
    tokenizer.chat_template = USER_TEXT_TEMPLATE
    return tokenizer


def tiny_flux2(seed: int = 0) -> Flux2Pipeline:
    """FLUX.2 layout: 2 double + 2 parallel single-stream blocks, 2 heads of 16, 4-axis RoPE, a Mistral-3 text encoder
    (its one layer's states as the prompt embedding); 24x32 px -> a 12x16 token grid (VAE /1, packed 2x2)."""
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                          timestep_guidance_channels=32, mlp_ratio=2.0, axes_dims_rope=(4, 4, 4, 4))
    vae = AutoencoderKLFlux2(sample_size=32, down_block_types=("DownEncoderBlock2D",),
                             up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1,
                             latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False)
    config = Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(VOCAB), "hidden_size": 16, "intermediate_size": 32,
                     "max_position_embeddings": 64, "num_attention_heads": 2, "num_hidden_layers": 1,
                     "num_key_value_heads": 2, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 32, "image_size": 16, "patch_size": 8, "num_channels": 3},
        image_token_index=0)
    tokenizer = _chat_tokenizer(LlamaTokenizerFast, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                pad_token="<pad>")
    return Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae.eval(),
                         text_encoder=Mistral3ForConditionalGeneration(config).eval(), tokenizer=tokenizer,
                         transformer=transformer.eval())


def tiny_qwen_image(seed: int = 0) -> QwenImagePipeline:
    """Qwen-Image layout: 2 double-stream blocks, 2 heads of 16, a Qwen2.5-VL text encoder; 48x64 px -> a 12x16 token
    grid (VAE /2, packed 2x2). Prompts of different lengths give a padded, masked text batch."""
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                              axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
                                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(VOCAB), "rope_scaling": QWEN_ROPE},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        vocab_size=len(VOCAB))
    tokenizer = Qwen2Tokenizer(vocab={t: i for i, t in enumerate(VOCAB)}, merges=[], unk_token="<unk>",
                               eos_token="</s>", pad_token="<pad>", model_max_length=TEXT_LENGTH)
    pipe = QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae.eval(),
                             text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(), tokenizer=tokenizer,
                             transformer=transformer.eval())
    pipe.prompt_template_encode, pipe.prompt_template_encode_start_idx = "{}", 0   # no system prompt to drop
    return pipe


def tiny_hunyuan_video15(seed: int = 0) -> HunyuanVideo15Pipeline:
    """HunyuanVideo 1.5 text-to-video layout: 2 double-stream blocks, a Qwen2.5-VL text encoder (16 tokens), ByT5
    for quoted text (8 tokens), 4 image tokens (all masked: no image), CFG; 5 frames of 32x48 px -> a 3x8x12 grid
    (VAE /2 in time, /4 in space, patch 1)."""
    torch.manual_seed(seed)
    transformer = HunyuanVideo15Transformer3DModel(in_channels=9, out_channels=4, num_attention_heads=2,
                                                   attention_head_dim=16, num_layers=2, num_refiner_layers=1,
                                                   mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16,
                                                   text_embed_2_dim=16, image_embed_dim=8, rope_axes_dim=(4, 6, 6),
                                                   target_size=32, task_type="t2v")
    vae = AutoencoderKLHunyuanVideo15(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16),
                                      layers_per_block=1, spatial_compression_ratio=4, temporal_compression_ratio=2,
                                      downsample_match_channel=False, upsample_match_channel=False)
    text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
        vocab_size=len(VOCAB), rope_scaling=QWEN_ROPE))
    tokenizer_2 = ByT5Tokenizer()
    text_encoder_2 = T5EncoderModel(T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8,
                                             vocab_size=len(tokenizer_2), decoder_start_token_id=0, pad_token_id=0,
                                             eos_token_id=1))
    pipe = HunyuanVideo15Pipeline(text_encoder=text_encoder.eval(),
                                  tokenizer=_chat_tokenizer(Qwen2Tokenizer, unk_token="<unk>", eos_token="</s>",
                                                            pad_token="<pad>"),
                                  transformer=transformer.eval(), vae=vae.eval(),
                                  scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                  text_encoder_2=text_encoder_2.eval(), tokenizer_2=tokenizer_2,
                                  guider=ClassifierFreeGuidance(guidance_scale=6.0))
    # the full-size lengths (1000 text, 256 glyph, 729 image tokens after a 108-token system prompt), made tiny
    pipe.prompt_template_encode_start_idx, pipe.tokenizer_max_length = 0, TEXT_LENGTH
    pipe.tokenizer_2_max_length, pipe.vision_num_semantic_tokens = 8, 4
    return pipe


# name -> (builder, call arguments that give a small grid quickly)
TINY_PIPELINES: dict[str, tuple[Callable[[int], object], dict]] = {
    "flux": (tiny_flux, dict(height=32, width=32, max_sequence_length=TEXT_LENGTH, guidance_scale=3.5)),
    "hunyuan_video": (tiny_hunyuan_video, dict(height=64, width=64, num_frames=5, max_sequence_length=TEXT_LENGTH,
                                               prompt_template={"template": "{}", "crop_start": 0})),
    "cosmos": (tiny_cosmos, dict(height=64, width=64, num_frames=9, max_sequence_length=TEXT_LENGTH)),
    "wan": (tiny_wan, dict(height=64, width=96, num_frames=9, max_sequence_length=TEXT_LENGTH)),
    "wan_22": (tiny_wan_22, dict(height=64, width=96, num_frames=9, max_sequence_length=TEXT_LENGTH)),
    "cosmos_predict2": (tiny_cosmos_predict2, dict(height=64, width=96, max_sequence_length=TEXT_LENGTH)),
    "cosmos_predict2_video": (tiny_cosmos_predict2_video, dict(image=torch.full((1, 3, 64, 96), 0.5), height=64,
                                                                width=96, num_frames=9,
                                                                max_sequence_length=TEXT_LENGTH)),
    "flux2": (tiny_flux2, dict(height=24, width=32, max_sequence_length=TEXT_LENGTH, text_encoder_out_layers=(1,))),
    "qwen_image": (tiny_qwen_image, dict(height=48, width=64, max_sequence_length=TEXT_LENGTH)),
    "hunyuan_video15": (tiny_hunyuan_video15, dict(height=32, width=48, num_frames=5)),
}
