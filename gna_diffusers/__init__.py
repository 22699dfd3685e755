"""gna-diffusers: Generalized Neighborhood Attention for diffusers pipelines, without fine-tuning."""

from . import backends  # noqa: F401  (registers the built-in backends)
from .functional import gna_attention
from .ops.merge import merge_attention
from .ops.layout import TiledLayout
from .ops.params import GNAParams
from .ops.simulator import simulate
from .pipeline import disable_gna, enable_gna, gna_state
from .recipe import Recipe, RecipeError, load_recipe

__all__ = ["gna_attention", "merge_attention", "simulate", "TiledLayout", "GNAParams", "enable_gna", "disable_gna",
           "gna_state", "Recipe", "RecipeError", "load_recipe"]
__version__ = "0.1.0"
