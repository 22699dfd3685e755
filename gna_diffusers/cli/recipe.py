"""`gna-diffusers recipe check NAME_OR_FILE [--grid ...]`: a recipe's per-layer parameters for a grid, with the
simulator's verdict for each group."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from . import parse_dims
from .simulate import print_table, row

# Block stacks of the full-size models the shipped recipes target, for naming the layers a group selects.
FULL_SIZE_STACKS = {
    "flux": [("double", 19), ("single", 38)],
    "hunyuan_video": [("double", 20), ("single", 40)],
    "cosmos": [("blocks", 28)],
    "wan": [("blocks", 40)],
    "flux2": [("double", 8), ("single", 48)],
    "qwen_image": [("blocks", 60)],
    "hunyuan_video15": [("blocks", 54)],
}


def run(args: argparse.Namespace) -> int:
    from ..recipe import load_recipe, select_layers, shipped_recipes
    if args.action == "list":
        for name in shipped_recipes():
            r = load_recipe(name)
            print(f"{name:28} model={r.model:15} grid={'x'.join(map(str, r.grid))}")
        return 0
    if args.recipe is None:
        raise UsageError("recipe check needs a shipped recipe name or a YAML path (`gna-diffusers recipe list` "
                         "lists the shipped ones)")
    from ..ops.simulator import simulate
    recipe = load_recipe(args.recipe)
    grid = args.grid or recipe.grid
    print(f"recipe {recipe.name}: model {recipe.model}, recipe grid {'x'.join(map(str, recipe.grid))}, "
          f"checked on grid {'x'.join(map(str, grid))} (on_grid_mismatch: {recipe.on_grid_mismatch}), "
          f"dense_steps {recipe.dense_steps}, backend {recipe.backend}")
    rows = []
    for i, group in enumerate(recipe.layers):
        layers = select_layers(recipe, group, FULL_SIZE_STACKS[recipe.model])
        p = recipe.resolve(group, tuple(grid))
        sim = simulate(p.grid, p.window, p.stride, p.dilation, p.causal)
        rows.append(row(f"layers[{i}] ({len(layers)} blocks)", sim))
    print_table(rows)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="check or list GNA recipes")
    p.add_argument("action", choices=["check", "list"])
    p.add_argument("recipe", nargs="?", default=None, help="shipped recipe name or YAML path (for check)")
    p.add_argument("--grid", type=parse_dims, help="resolve for this grid instead of the recipe's")
    p.set_defaults(func=run)
