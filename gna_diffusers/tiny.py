"""Tiny FLUX, HunyuanVideo, Cosmos and Wan pipelines built entirely offline (random weights, in-memory tokenizers).

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


def tiny_cosmos_predict2(seed: int = 0) -> Cosmos2TextToImagePipeline:
    """Cosmos-Predict2 text2image: one latent frame of 64x96 is an 8x12 latent, a 4x6 image grid."""
    torch.manual_seed(seed)
    tokenizer, text_encoder = _t5(32)
    return Cosmos2TextToImagePipeline(text_encoder=text_encoder, tokenizer=tokenizer,
                                      transformer=_cosmos_predict2_transformer(16), vae=_wan_vae(),
                                      scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
                                      safety_checker=AlwaysSafe())


def tiny_cosmos_predict2_video(seed: int = 0) -> Cosmos2VideoToWorldPipeline:
    """Cosmos-Predict2 video2world: a conditioning frame plus 8 frames of 64x96 -> a 3x4x6 grid; per-frame
    timesteps and a condition-mask channel (in_channels 16 + 1)."""
    torch.manual_seed(seed)
    tokenizer, text_encoder = _t5(32)
    return Cosmos2VideoToWorldPipeline(text_encoder=text_encoder, tokenizer=tokenizer,
                                       transformer=_cosmos_predict2_transformer(17), vae=_wan_vae(),
                                       scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
                                       safety_checker=AlwaysSafe())


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
}
