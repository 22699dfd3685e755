"""GNA attention processors per model, behind a registry keyed by transformer class."""

from diffusers import (CosmosTransformer3DModel, FluxTransformer2DModel, HunyuanVideoTransformer3DModel,
                       WanTransformer3DModel)

from .cosmos import CosmosGNAProcessor, read_cosmos_grid
from .flux import FluxGNAProcessor, read_flux_grid
from .hunyuan_video import HunyuanVideoGNAProcessor, read_text_valid, read_video_grid
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

__all__ = ["ModelSpec", "register_model", "spec_for", "supported_classes"]
