"""Model registry, keyed by transformer class. Adding a model = one module with a processor and a grid reader, plus
one `register_model` line in models/__init__.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

# (transformer, forward args, forward kwargs) -> (grid, number of text tokens in the joint sequence)
GridReader = Callable[[torch.nn.Module, tuple, dict], tuple[tuple[int, ...], int]]
# (transformer, forward args, forward kwargs) -> per batch entry, how many leading text tokens are real, or None
TextValidReader = Callable[[torch.nn.Module, tuple, dict], Optional[tuple[int, ...]]]


@dataclass(frozen=True)
class ModelSpec:
    name: str                          # the recipe's `model` value
    transformer_class: type
    stacks: tuple[tuple[str, str], ...]  # (stack name used by recipes, attribute holding the ModuleList of blocks)
    attention: str                     # attribute of a block holding the attention module to patch
    processor: Callable[..., Any]      # processor(original, state, group) -> callable like diffusers processors
    #                                    (a class, or a function picking one per block type)
    read_grid: GridReader
    read_text_valid: Optional[TextValidReader] = None  # models that pad text at the end of the text (a prefix real)


_MODELS: dict[type, ModelSpec] = {}


def register_model(spec: ModelSpec) -> None:
    _MODELS[spec.transformer_class] = spec


def supported_classes() -> list[str]:
    return sorted(cls.__name__ for cls in _MODELS)


def spec_for(transformer: Any) -> ModelSpec:
    for cls in type(transformer).__mro__:
        if cls in _MODELS:
            return _MODELS[cls]
    raise ValueError(f"gna-diffusers does not support {type(transformer).__name__}; supported transformers: "
                     + ", ".join(supported_classes()))


def argument(args: tuple, kwargs: dict, name: str, position: int) -> Optional[Any]:
    """A forward argument given by keyword or position."""
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


def latent_grid(hidden_states: torch.Tensor, patch_size: tuple[int, int, int]) -> tuple[int, ...]:
    """The token grid of a 5D latent [B, C, F, H, W] patchified by `patch_size` (pt, ph, pw): (F/pt, H/ph, W/pw),
    or (H/ph, W/pw) for a single frame, which is an image (a 3D window needs at least two frames)."""
    if hidden_states.ndim != 5:
        raise ValueError(f"hidden_states has shape {tuple(hidden_states.shape)}; GNA reads the grid from a 5D latent "
                         f"[batch, channels, frames, height, width]")
    pt, ph, pw = patch_size
    _, _, frames, height, width = hidden_states.shape
    grid = (frames // pt, height // ph, width // pw)
    return grid[1:] if grid[0] == 1 else grid
