"""gna-diffusers: Generalized Neighborhood Attention for diffusers pipelines, without fine-tuning.

Importing the package loads nothing heavy: each public name imports its module on first use (PEP 562), so the
simulator, recipes and the CLI start without torch, and nothing here imports diffusers or transformers. `enable_gna`
/ `disable_gna` reach every `DiffusionPipeline` through `diffusers_patch`, whichever package is imported first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import diffusers_patch

# public name -> the module (relative to this package) that defines it
_EXPORTS = {
    "gna_attention": "functional",
    "merge_attention": "ops.merge",
    "TiledLayout": "ops.layout",
    "GNAParams": "ops.params",
    "simulate": "ops.simulator",
    "enable_gna": "pipeline",
    "disable_gna": "pipeline",
    "gna_state": "pipeline",
    "Recipe": "recipe",
    "RecipeError": "recipe",
    "load_recipe": "recipe",
}

__all__ = list(_EXPORTS)
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .functional import gna_attention
    from .ops.layout import TiledLayout
    from .ops.merge import merge_attention
    from .ops.params import GNAParams
    from .ops.simulator import simulate
    from .pipeline import disable_gna, enable_gna, gna_state
    from .recipe import Recipe, RecipeError, load_recipe

diffusers_patch.install()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
