"""`enable_gna` / `disable_gna` on a diffusers pipeline or a bare transformer.

Enabling swaps the processors of the recipe's layers (keeping the originals by module name) and adds one forward
pre-hook that reads the grid and decides dense-or-GNA for the call. Disabling restores exactly what was there.
`diffusers_patch` makes these the `DiffusionPipeline` methods of the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import torch
from diffusers import DiffusionPipeline

from .models import ModelSpec, spec_for
from .models.common import GNAState
from .comm import ulysses_group
from .recipe import Recipe, RecipeError, load_recipe, select_layers

RecipeLike = Union[str, Mapping, Recipe]


@dataclass
class _Enabled:
    state: GNAState
    originals: dict[str, Any]      # attention module name -> its original processor
    hook: torch.utils.hooks.RemovableHandle


# Pipeline components GNA patches, in order: Wan 2.2 A14B adds `transformer_2` (the low-noise expert) beside
# `transformer` (the high-noise one), and may leave either out.
TRANSFORMER_COMPONENTS = ("transformer", "transformer_2")


def transformers_and_scheduler(target) -> tuple[list[torch.nn.Module], Optional[Any]]:
    """The transformers of a pipeline (or the bare transformer given) and the scheduler that counts its steps."""
    if isinstance(target, DiffusionPipeline):
        found = (getattr(target, name, None) for name in TRANSFORMER_COMPONENTS)
        transformers = list({id(module): module for module in found if module is not None}.values())  # once each
        if not transformers:
            raise ValueError(f"{type(target).__name__} has no {' or '.join(map(repr, TRANSFORMER_COMPONENTS))} "
                             f"component; GNA patches DiT pipelines")
        return transformers, getattr(target, "scheduler", None)
    if isinstance(target, torch.nn.Module):
        return [target], None
    raise TypeError(f"enable_gna expects a DiffusionPipeline or a transformer module, not {type(target).__name__}")


def enable_gna(target, recipe: RecipeLike, *, num_inference_steps: Optional[int] = None) -> GNAState:
    """Run the recipe's layers with GNA from now on. Enabling again replaces the previous recipe.

    A pipeline with two transformers (Wan 2.2 A14B) gets GNA in both; they share one state, so its dense steps count
    the pipeline's steps whichever transformer runs them, and `gna_state` describes the call in progress.
    `num_inference_steps` is needed only for a bare transformer whose recipe gives `dense_steps` as a fraction."""
    transformers, scheduler = transformers_and_scheduler(target)
    recipe = load_recipe(recipe)
    specs = [spec_for(transformer) for transformer in transformers]
    for transformer, spec in zip(transformers, specs):
        if recipe.model != spec.name:
            raise RecipeError(f"recipe {recipe.name!r} is for model {recipe.model!r}, but this transformer is "
                              f"{type(transformer).__name__} ({spec.name!r})")
    if scheduler is None and isinstance(recipe.dense_steps, float) and recipe.dense_steps > 0 \
            and num_inference_steps is None:
        raise ValueError(f"recipe {recipe.name!r} keeps a fraction ({recipe.dense_steps}) of the steps dense; on a "
                         f"bare transformer pass num_inference_steps=..., or use an int dense_steps")
    owners = [_layer_groups(transformer, spec, recipe) for transformer, spec in zip(transformers, specs)]
    disable_gna(target)
    state = GNAState(recipe, scheduler=scheduler, num_inference_steps=num_inference_steps)
    for transformer, spec, owner in zip(transformers, specs, owners):
        _patch(transformer, spec, recipe, owner, state)
    return state


def _layer_groups(transformer: torch.nn.Module, spec: ModelSpec, recipe: Recipe) -> dict[tuple[str, int], int]:
    """(stack, block index) -> index of the recipe group that owns it; checked before anything is patched."""
    sizes = [(name, len(getattr(transformer, attr))) for name, attr in spec.stacks]
    owner: dict[tuple[str, int], int] = {}
    for g, group in enumerate(recipe.layers):
        for layer in select_layers(recipe, group, sizes):
            if layer in owner:
                raise RecipeError(f"recipe {recipe.name!r}: layers[{g}] lists block {layer[0]}:{layer[1]}, already "
                                  f"in layers[{owner[layer]}]")
            owner[layer] = g
    return owner


def _patch(transformer: torch.nn.Module, spec: ModelSpec, recipe: Recipe, owner: dict[tuple[str, int], int],
           state: GNAState) -> None:
    """Swap the processors of the owned layers of one transformer and hook its forward to `state`."""
    stacks = [(name, getattr(transformer, attr)) for name, attr in spec.stacks]
    originals = {}
    blocks = dict(stacks)
    attrs = dict(spec.stacks)
    for (stack, index), g in owner.items():
        module = getattr(blocks[stack][index], spec.attention)
        originals[f"{attrs[stack]}.{index}.{spec.attention}"] = module.processor
        module.set_processor(spec.processor(module.processor, state, recipe.layers[g]))

    @torch._dynamo.disable  # runs eagerly: step index and grid reads stay out of compiled graphs (no recompiles)
    def before_forward(module, args, kwargs):
        timestep = kwargs.get("timestep")
        grid, text_len = spec.read_grid(module, args, kwargs)
        text_valid = spec.read_text_valid(module, args, kwargs) if spec.read_text_valid else None
        state.begin_forward(grid, text_len, timestep, ulysses_group(getattr(module, "_parallel_config", None)),
                            text_valid)

    hook = transformer.register_forward_pre_hook(before_forward, with_kwargs=True)
    transformer._gna = _Enabled(state, originals, hook)


def disable_gna(target) -> None:
    """Put back the original processors and remove the hook (of every transformer of a pipeline); a no-op where GNA
    is not enabled."""
    for transformer in transformers_and_scheduler(target)[0]:
        enabled: Optional[_Enabled] = getattr(transformer, "_gna", None)
        if enabled is None:
            continue
        for name, processor in enabled.originals.items():
            transformer.get_submodule(name).set_processor(processor)
        enabled.hook.remove()
        del transformer._gna


def gna_state(target) -> Optional[GNAState]:
    """The live state (grid, step, dense_now) of an enabled transformer, or None."""
    for transformer in transformers_and_scheduler(target)[0]:
        enabled = getattr(transformer, "_gna", None)
        if enabled is not None:
            return enabled.state
    return None

