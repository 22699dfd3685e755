"""gna-diffusers: Generalized Neighborhood Attention for diffusers pipelines, without fine-tuning."""

from . import backends  # noqa: F401  (registers the built-in backends)
from .ops.attention import gna_attention, merge_attention
from .ops.layout import TiledLayout
from .ops.params import GNAParams

__all__ = ["gna_attention", "merge_attention", "TiledLayout", "GNAParams"]
__version__ = "0.1.0"
