"""Recipes: which layers run GNA with which window/stride, and how many denoising steps stay dense.

A recipe is data (a shipped name, a YAML path read with `yaml.safe_load`, or a dict with the same keys). It is
validated when loaded, and resolved for the grid a pipeline actually produces at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from .ops.params import GNAParams

MODELS = ("flux", "hunyuan_video", "cosmos", "wan", "flux2", "qwen_image", "hunyuan_video15")
GRID_POLICIES = ("proportional", "clip", "refuse")
DENSE_PATHS = ("fast", "kernel", "original")
TOP_KEYS = {"name", "description", "model", "grid", "dense_steps", "dense_path", "layers", "backend",
            "on_grid_mismatch"}
LAYER_KEYS = {"blocks", "window", "stride", "dilation", "causal"}
SHIPPED_DIR = Path(__file__).resolve().parent / "recipes"  # a link to the repo's recipes/, packaged as data


class RecipeError(ValueError):
    """A recipe problem: names the recipe, the key and the reason."""


@dataclass(frozen=True)
class LayerGroup:
    blocks: Any                     # as written: "all", an int, "0-9", "single:0-37", or a list of those
    window: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    causal: tuple[bool, ...]


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    grid: tuple[int, ...]
    dense_steps: Union[int, float]
    layers: tuple[LayerGroup, ...]
    backend: str = "auto"
    on_grid_mismatch: str = "proportional"
    description: str = ""
    # dense steps: "fast" attends to the valid keys only, unmasked, on the fastest exact SDPA kernel (cuDNN first);
    # "kernel" runs the grid queries on our GNA kernel with the window equal to the grid (exactly dense), the valid
    # text as its extra tokens, where that kernel serves the device (models/common.py, dense_kernel_backend), else
    # "fast"; "original" calls the model's own processor. The same function every way.
    dense_path: str = "fast"

    def dense_step_count(self, total_steps: int) -> int:
        """Number of leading dense steps for a run of `total_steps` (fractions round to the nearest step)."""
        if isinstance(self.dense_steps, int):
            return self.dense_steps
        return int(self.dense_steps * total_steps + 0.5)

    def resolve(self, group: LayerGroup, grid: tuple[int, ...]) -> GNAParams:
        """The group's parameters for an actual grid, scaled by `on_grid_mismatch`; validated."""
        if len(grid) != len(self.grid):
            raise RecipeError(f"recipe {self.name!r}: grid {tuple(grid)} has {len(grid)} dimensions, the recipe's "
                              f"grid {self.grid} has {len(self.grid)}")
        window, stride = list(group.window), list(group.stride)
        if tuple(grid) != self.grid:
            if self.on_grid_mismatch == "refuse":
                raise RecipeError(f"recipe {self.name!r}: on_grid_mismatch: refuse, and the actual grid {tuple(grid)} "
                                  f"differs from the recipe's grid {self.grid}")
            for i, (actual, planned) in enumerate(zip(grid, self.grid)):
                limit = actual // group.dilation[i]
                if self.on_grid_mismatch == "proportional":
                    window[i] = round(window[i] * actual / planned)
                    stride[i] = max(1, round(stride[i] * actual / planned))
                window[i] = max(2, min(window[i], limit)) if limit >= 2 else window[i]
                stride[i] = min(stride[i], window[i])
        try:
            return GNAParams.make(tuple(grid), tuple(window), tuple(stride), group.dilation, group.causal)
        except (ValueError, TypeError) as err:
            raise RecipeError(f"recipe {self.name!r}: layers (blocks={group.blocks!r}) on grid {tuple(grid)}: "
                              f"{err}") from None


def _fail(source: str, key: str, reason: str):
    raise RecipeError(f"recipe {source}: {key}: {reason}")


def _dims(source: str, key: str, value, ndim: int, kind: type = int, minimum: int = 1) -> tuple:
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        value = [value] * ndim
    if not isinstance(value, list) or len(value) != ndim:
        _fail(source, key, f"expected one {kind.__name__} or a list of {ndim} (one per grid dimension), got {value!r}")
    for v in value:
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            _fail(source, key, f"{v!r} is not a {kind.__name__}")
        if kind is int and v < minimum:
            _fail(source, key, f"{v} is below the minimum {minimum}")
    return tuple(value)


def parse_recipe(data: Mapping, source: str) -> Recipe:
    """Validate a recipe's keys and types (everything that does not need the model)."""
    if not isinstance(data, Mapping):
        _fail(source, "(top level)", f"expected a mapping, got {type(data).__name__}")
    unknown = set(data) - TOP_KEYS
    if unknown:
        _fail(source, ", ".join(sorted(unknown)), f"unknown key; allowed: {', '.join(sorted(TOP_KEYS))}")
    for key in ("model", "grid", "layers"):
        if key not in data:
            _fail(source, key, "missing (required)")
    if data["model"] not in MODELS:
        _fail(source, "model", f"{data['model']!r} is not one of {', '.join(MODELS)}")
    grid = data["grid"]
    if not isinstance(grid, list) or not 1 <= len(grid) <= 3:
        _fail(source, "grid", f"expected a list of 1-3 positive ints, got {grid!r}")
    grid = _dims(source, "grid", grid, len(grid))
    dense = data.get("dense_steps", 0)
    if isinstance(dense, bool) or not isinstance(dense, (int, float)):
        _fail(source, "dense_steps", f"expected an int count or a fraction in [0, 1), got {dense!r}")
    if isinstance(dense, float) and not 0 <= dense < 1 or isinstance(dense, int) and dense < 0:
        _fail(source, "dense_steps", f"{dense!r}: a fraction must lie in [0, 1), a count must be >= 0")
    policy = data.get("on_grid_mismatch", "proportional")
    if policy not in GRID_POLICIES:
        _fail(source, "on_grid_mismatch", f"{policy!r} is not one of {', '.join(GRID_POLICIES)}")
    dense_path = data.get("dense_path", "fast")
    if dense_path not in DENSE_PATHS:
        _fail(source, "dense_path", f"{dense_path!r} is not one of {', '.join(DENSE_PATHS)}")
    backend = data.get("backend", "auto")
    if not isinstance(backend, str):
        _fail(source, "backend", f"expected a backend name, got {backend!r}")
    layers = data["layers"]
    if not isinstance(layers, list) or not layers:
        _fail(source, "layers", "expected a non-empty list of groups")
    groups = []
    for i, layer in enumerate(layers):
        key = f"layers[{i}]"
        if not isinstance(layer, Mapping):
            _fail(source, key, f"expected a mapping, got {layer!r}")
        unknown = set(layer) - LAYER_KEYS
        if unknown:
            _fail(source, f"{key}.{sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(LAYER_KEYS))}")
        for required in ("blocks", "window"):
            if required not in layer:
                _fail(source, f"{key}.{required}", "missing (required)")
        n = len(grid)
        window = _dims(source, f"{key}.window", layer["window"], n, minimum=2)
        stride = _dims(source, f"{key}.stride", layer.get("stride", 1), n)
        dilation = _dims(source, f"{key}.dilation", layer.get("dilation", 1), n)
        causal = _dims(source, f"{key}.causal", layer.get("causal", False), n, kind=bool)
        try:
            GNAParams.make(grid, window, stride, dilation, causal)
        except (ValueError, TypeError) as err:
            _fail(source, key, f"{err} (on the recipe's grid {grid})")
        groups.append(LayerGroup(layer["blocks"], window, stride, dilation, causal))
    name = data.get("name", source)
    return Recipe(str(name), data["model"], grid, dense, tuple(groups), backend, policy,
                  str(data.get("description", "")), dense_path)


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def load_recipe(recipe: Union[str, Path, Mapping, Recipe]) -> Recipe:
    """A Recipe from a shipped name, a YAML path or a dict."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        return parse_recipe(recipe, "<dict>")
    if not isinstance(recipe, (str, Path)):
        raise TypeError(f"recipe={recipe!r} must be a shipped name, a YAML path, a dict or a Recipe")
    path = Path(recipe)
    if not path.suffix and not path.exists():
        path = SHIPPED_DIR / f"{recipe}.yaml"
        if not path.exists():
            raise RecipeError(f"recipe {recipe!r} is neither a file nor a shipped recipe; shipped: "
                              + ", ".join(shipped_recipes()))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {path}: not valid YAML: {err}") from None
    except OSError as err:
        raise RecipeError(f"recipe {path}: cannot be read: {err}") from None
    if isinstance(data, Mapping) and "name" not in data:
        data = {**data, "name": path.stem}
    return parse_recipe(data, str(path))


_RANGE = re.compile(r"^(\d+)-(\d+)$")


def select_layers(recipe: Recipe, group: LayerGroup, stacks: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (stack, index) pairs a group's `blocks` names, for a model whose block stacks are `stacks` in order.

    Integers and "a-b" ranges count through all stacks in order; "stack:spec" counts inside one stack."""
    flat = [(name, i) for name, count in stacks for i in range(count)]
    sizes = dict(stacks)

    def one(spec, within: Optional[str]) -> list[tuple[str, int]]:
        pool = [(within, i) for i in range(sizes[within])] if within else flat
        where = f"stack {within!r} ({len(pool)} blocks)" if within else f"{len(pool)} blocks"
        if spec == "all":
            return pool
        if isinstance(spec, int) and not isinstance(spec, bool):
            if not 0 <= spec < len(pool):
                raise RecipeError(f"recipe {recipe.name!r}: layers.blocks: index {spec} is out of range for "
                                  f"{where}")
            return [pool[spec]]
        if isinstance(spec, str):
            if ":" in spec and within is None:
                stack, rest = spec.split(":", 1)
                if stack not in sizes:
                    raise RecipeError(f"recipe {recipe.name!r}: layers.blocks: {spec!r} names stack {stack!r}; "
                                      f"this model has {', '.join(sizes)}")
                return one(int(rest) if rest.isdigit() else rest, stack)
            match = _RANGE.match(spec)
            if match:
                lo, hi = int(match[1]), int(match[2])
                if lo > hi or hi >= len(pool):
                    raise RecipeError(f"recipe {recipe.name!r}: layers.blocks: range {spec!r} is out of range for "
                                      f"{where}")
                return pool[lo:hi + 1]
        raise RecipeError(f"recipe {recipe.name!r}: layers.blocks: {spec!r} is not 'all', an index, an 'a-b' range "
                          f"or 'stack:...' (stacks: {', '.join(sizes)})")

    specs = group.blocks if isinstance(group.blocks, list) else [group.blocks]
    chosen = [layer for spec in specs for layer in one(spec, None)]
    return list(dict.fromkeys(chosen))

