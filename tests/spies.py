"""Test helpers that observe which path a GNA processor took, rather than assume it."""

from __future__ import annotations

from typing import Callable

import torch

import gna_diffusers
from gna_diffusers.backends import Backend, register_backend
from gna_diffusers.backends.reference import reference_forward
from gna_diffusers.models.common import GNAProcessorBase
from gna_diffusers.pipeline import transformers_and_scheduler


def counting_backend(name: str) -> list:
    """Register a GNA backend `name` that computes as `reference` and appends each call's grid to the list returned
    (never picked by `auto`): a recipe naming it shows whether, and how often, GNA really ran."""
    calls: list = []

    def forward(inputs):
        calls.append(inputs.params.grid)
        return reference_forward(inputs)

    register_backend(Backend(name, forward, lambda inputs: None, priority=lambda device: -1))
    return calls


def count_original_calls(target) -> list[int]:
    """Make every GNA processor of an enabled pipeline (or transformer) count the calls it hands to the original
    diffusers processor; the count is the list's one element. disable_gna drops the wrappers with the processors."""
    calls = [0]

    def counting(original):
        def call(*args, **kwargs):
            calls[0] += 1
            return original(*args, **kwargs)
        return call
    for transformer in transformers_and_scheduler(target)[0]:
        for module in transformer.modules():
            processor = getattr(module, "processor", None)
            if isinstance(processor, GNAProcessorBase):
                processor.original = counting(processor.original)
    return calls


def check_full_window_is_dense(transformer: torch.nn.Module, inputs: dict, recipe: Callable[[tuple, object], dict],
                               grid: tuple[int, ...], calls: list, layers: int,
                               while_on: Callable[[], None] = lambda: None) -> None:
    """A bare transformer with GNA over the whole grid (`recipe(grid, window)`, the backend a `counting_backend`
    filling `calls`) gives its dense output and runs GNA once per layer on `grid`; a small window changes the output;
    disable_gna restores it bit for bit. `while_on` checks more while GNA is on."""
    dense = transformer(**inputs)[0]
    state = gna_diffusers.enable_gna(transformer, recipe(grid, list(grid)))
    try:
        start = len(calls)
        full = transformer(**inputs)[0]
        assert calls[start:] == [grid] * layers and state.grid == grid
        while_on()
        gna_diffusers.enable_gna(transformer, recipe(grid, 2))
        small = transformer(**inputs)[0]
    finally:
        gna_diffusers.disable_gna(transformer)
    torch.testing.assert_close(full, dense, atol=1e-5, rtol=1e-5)
    assert (small - dense).abs().max().item() > 1e-3
    assert torch.equal(transformer(**inputs)[0], dense)
