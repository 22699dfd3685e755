"""GNA attention processors per model, behind a registry keyed by transformer class."""

from diffusers import (CosmosTransformer3DModel, Flux2Transformer2DModel, FluxTransformer2DModel,
                       HunyuanVideo15Transformer3DModel, HunyuanVideoTransformer3DModel, QwenImageTransformer2DModel,
                       WanTransformer3DModel)

from .cosmos import CosmosGNAProcessor, read_cosmos_grid
from .flux import FluxGNAProcessor, read_flux_grid
from .flux2 import flux2_processor, read_flux2_grid
from .hunyuan_video import HunyuanVideoGNAProcessor, read_text_valid, read_video_grid
from .hunyuan_video15 import HunyuanVideo15GNAProcessor, read_video15_grid, read_video15_text_valid
from .qwen_image import QwenImageGNAProcessor, read_qwen_image_grid, read_qwen_text_valid
from .registry import ModelSpec, register_model, spec_for, supported_classes
from .wan import WanGNAProcessor, read_wan_grid

register_model(ModelSpec("flux", FluxTransformer2DModel,
                         (("double", "transformer_blocks"), ("single", "single_transformer_blocks")), "attn",
                         FluxGNAProcessor, read_flux_grid))
register_model(ModelSpec("hunyuan_video", HunyuanVideoTransformer3DModel,
                         (("double", "transformer_blocks"), ("single", "single_transformer_blocks")), "attn",
                         HunyuanVideoGNAProcessor, read_video_grid, read_text_valid))
register_model(ModelSpec("cosmos", CosmosTransformer3DModel, (("blocks", "transformer_blocks"),), "attn1",
                         CosmosGNAProcessor, read_cosmos_grid))
register_model(ModelSpec("wan", WanTransformer3DModel, (("blocks", "blocks"),), "attn1",
                         WanGNAProcessor, read_wan_grid))
register_model(ModelSpec("flux2", Flux2Transformer2DModel,
                         (("double", "transformer_blocks"), ("single", "single_transformer_blocks")), "attn",
                         flux2_processor, read_flux2_grid))
register_model(ModelSpec("qwen_image", QwenImageTransformer2DModel, (("blocks", "transformer_blocks"),), "attn",
                         QwenImageGNAProcessor, read_qwen_image_grid, read_qwen_text_valid))
register_model(ModelSpec("hunyuan_video15", HunyuanVideo15Transformer3DModel, (("blocks", "transformer_blocks"),),
                         "attn", HunyuanVideo15GNAProcessor, read_video15_grid, read_video15_text_valid))

__all__ = ["ModelSpec", "register_model", "spec_for", "supported_classes"]
