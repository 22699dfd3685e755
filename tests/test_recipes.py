"""Recipes: the shipped files load and are what they claim; bad recipes fail naming the file, the key and why."""

import pytest

from gna_diffusers import RecipeError, load_recipe, simulate
from gna_diffusers.cli import main
from gna_diffusers.recipe import select_layers, shipped_recipes

GOOD = {"model": "hunyuan_video", "grid": [30, 48, 80], "dense_steps": 0.3,
        "layers": [{"blocks": "all", "window": [18, 24, 24], "stride": [16, 8, 8]}]}
STACKS = [("double", 20), ("single", 40)]


def test_shipped_recipes_load_and_the_block_sparse_ones_are_fully_block_sparse() -> None:
    assert {"flux-dev-4k", "hunyuan-video-720p", "hunyuan-video-720p-129f", "cosmos-7b-text2world",
            "flux2-dev-2048", "flux2-dev-4k", "qwen-image-1328", "qwen-image-4k", "hunyuan-video15-720p"} <= set(
        shipped_recipes())
    for name in ("flux-dev-4k", "hunyuan-video-720p", "cosmos-7b-text2world", "flux2-dev-2048", "flux2-dev-4k",
                 "qwen-image-4k"):
        recipe = load_recipe(name)
        group = recipe.layers[0]
        assert simulate(recipe.grid, group.window, group.stride).fully_block_sparse, name


@pytest.mark.parametrize("change,needle", [
    ({"colour": "red"}, "colour: unknown key"),
    ({"model": "sdxl"}, "model: 'sdxl' is not one of"),
    ({"grid": "30x48x80"}, "grid: expected a list"),
    ({"dense_steps": 1.5}, "dense_steps"),
    ({"dense_steps": "half"}, "dense_steps"),
    ({"on_grid_mismatch": "stretch"}, "on_grid_mismatch"),
    ({"layers": []}, "layers: expected a non-empty list"),
    ({"layers": [{"blocks": "all", "window": [40, 24, 24]}]}, r"layers\[0\].*window"),          # larger than grid
    ({"layers": [{"blocks": "all", "window": [18, 24, 24], "stride": [20, 8, 8]}]}, r"layers\[0\].*stride"),
    ({"layers": [{"blocks": "all", "window": [18, 24]}]}, r"layers\[0\].window"),              # wrong count
    ({"layers": [{"blocks": "all", "window": [18, "24", 24]}]}, r"layers\[0\].window.*not a int"),
    ({"layers": [{"blocks": "all", "window": 18, "shape": 1}]}, r"layers\[0\].shape: unknown key"),
    ({"layers": [{"window": 18}]}, r"layers\[0\].blocks: missing"),
])
def test_bad_recipe_names_file_key_and_reason(tmp_path, change, needle) -> None:
    import yaml
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(RecipeError, match=needle) as err:
        load_recipe(str(path))
    assert str(path) in str(err.value)


def test_layer_selection_and_out_of_range_indices() -> None:
    recipe = load_recipe(GOOD)
    group = recipe.layers[0]

    def select(blocks):
        return select_layers(recipe, type(group)(blocks, group.window, group.stride, group.dilation, group.causal),
                             STACKS)

    assert len(select("all")) == 60
    assert select([0, "double:19", "single:0-1"]) == [("double", 0), ("double", 19), ("single", 0), ("single", 1)]
    assert select("18-21") == [("double", 18), ("double", 19), ("single", 0), ("single", 1)]
    for bad, needle in [(60, "index 60 is out of range"), ("single:40", "index 40 is out of range"),
                        ("5-70", "out of range"), ("triple:1", "names stack 'triple'"), ("some", "is not 'all'")]:
        with pytest.raises(RecipeError, match=needle):
            select(bad)


def test_unknown_recipe_name_lists_the_shipped_ones() -> None:
    with pytest.raises(RecipeError, match="flux-dev-4k"):
        load_recipe("flux-dev-8k")


def test_resolve_for_another_grid() -> None:
    recipe = load_recipe(GOOD)
    params = recipe.resolve(recipe.layers[0], (15, 24, 40))                  # half the size: proportional
    assert params.window == (9, 12, 12) and params.stride == (8, 4, 4)
    refusing = load_recipe({**GOOD, "on_grid_mismatch": "refuse"})
    with pytest.raises(RecipeError, match="refuse"):
        refusing.resolve(refusing.layers[0], (15, 24, 40))
    clipping = load_recipe({**GOOD, "on_grid_mismatch": "clip"})
    assert clipping.resolve(clipping.layers[0], (10, 48, 80)).window == (10, 24, 24)


def test_recipe_check_cli(capsys) -> None:
    assert main(["recipe", "check", "hunyuan-video-720p", "--grid", "33x45x80"]) == 0
    out = capsys.readouterr().out
    assert "33x45x80" in out and "layers[0] (60 blocks)" in out
    assert main(["simulate", "--shipped"]) == 0
    assert "11.11x" in capsys.readouterr().out
