"""The backend registry: a name, a capability check that says why not, a priority for `auto`, and the function.

A compiled backend plugs in with one `register_backend` call; `gna_attention` and every caller stay unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..ops.inputs import GNAInputs

logger = logging.getLogger("gna_diffusers")


# forward(inputs) -> (out [B, N, H, D] in the input dtype, lse [B, N, H] float32)
ForwardFn = Callable[[GNAInputs], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Backend:
    name: str
    forward: ForwardFn
    why_not: Callable[[GNAInputs], Optional[str]]  # None if it can run these inputs, else the reason
    priority: Callable[[torch.device], int]        # higher is faster; negative: never chosen by `auto`
    # why_not without side effects, for a backend whose why_not builds what it needs (a compiled kernel); None:
    # why_not has none
    precheck: Optional[Callable[[GNAInputs], Optional[str]]] = None


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    _BACKENDS[backend.name] = backend


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def select_backend(name: str, inputs: GNAInputs) -> Backend:
    """The named backend (raising if it cannot run `inputs`), or for 'auto' the highest-priority one that can."""
    if name != "auto":
        if name not in _BACKENDS:
            raise ValueError(f"backend={name!r} is unknown; allowed: 'auto', "
                             + ", ".join(repr(n) for n in available_backends()))
        backend = _BACKENDS[name]
        reason = backend.why_not(inputs)
        if reason is not None:
            raise ValueError(f"backend={name!r} cannot run these inputs: {reason}")
        return backend
    candidates = sorted(_BACKENDS.values(), key=lambda b: -b.priority(inputs.device))
    refusals = []
    for backend in candidates:
        if backend.priority(inputs.device) < 0:
            continue
        reason = backend.why_not(inputs)
        if reason is None:
            logger.debug("gna_attention auto backend: %s (skipped: %s)", backend.name, "; ".join(refusals) or "none")
            return backend
        refusals.append(f"{backend.name}: {reason}")
    raise ValueError("no backend can run these inputs: " + "; ".join(refusals))


def auto_ranking(inputs: GNAInputs) -> list[tuple[Backend, int, Optional[str]]]:
    """Every backend as `auto` weighs it for `inputs`, highest priority first: (backend, priority, why it cannot run
    them or None), judged without building anything, so `gna-diffusers env` can say what `auto` picks and why."""
    ranked = sorted(_BACKENDS.values(), key=lambda b: -b.priority(inputs.device))
    return [(b, b.priority(inputs.device), (b.precheck or b.why_not)(inputs)) for b in ranked]
