"""The processors' entry `gna_attention_op` skips the custom op's dispatch in plain eager calls (host time on small
problems) and keeps it where the dispatcher is needed (CPU, reference backend, against brute force)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from brute_force import brute_attention
from gna_diffusers.functional import gna_attention_op

SHAPE = dict(grid=(6, 8), window=(3, 5), stride=(1, 2), dilation=(2, 1), causal=(False, True))
OPS = {torch.ops.gna_diffusers.gna_attention.default}


def _inputs(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 48, 2, 16, generator=gen) for _ in range(3))
    ek, ev = (torch.randn(2, 5, 2, 16, generator=gen) for _ in range(2))
    mask = torch.tensor([[True, False, True, True, False], [False] * 5])  # the second entry sees no extra token
    return dict(query=q, key=k, value=v, extra_key=ek, extra_value=ev, extra_mask=mask)


def _brute(inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return brute_attention(inputs["query"], inputs["key"], inputs["value"], SHAPE["grid"], SHAPE["window"],
                           SHAPE["stride"], SHAPE["dilation"], SHAPE["causal"], inputs["extra_key"],
                           inputs["extra_value"], inputs["extra_mask"])


class _OpCalls(TorchDispatchMode):
    """Counts calls of the GNA custom ops that reach the dispatcher."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += func in OPS
        return func(*args, **(kwargs or {}))


def _op_call(inputs: dict) -> torch.Tensor:
    return gna_attention_op(inputs["query"], inputs["key"], inputs["value"], list(SHAPE["grid"]),
                            list(SHAPE["window"]), list(SHAPE["stride"]), list(SHAPE["dilation"]),
                            list(SHAPE["causal"]), inputs["extra_key"], inputs["extra_value"], inputs["extra_mask"],
                            None, "reference")


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "requires_grad"])
def test_processor_entry_uses_the_op_only_where_needed(grad: bool) -> None:
    inputs = _inputs()
    inputs["query"].requires_grad_(grad)
    with _OpCalls() as mode:
        out = _op_call(inputs)
    # plain eager: gna_attention directly; inputs autograd would record: through the op, as before
    assert mode.calls == (1 if grad else 0)
    torch.testing.assert_close(out.detach(), _brute(inputs)[0].float(), atol=1e-5, rtol=1e-5)


def test_processor_entry_on_meta_tensors_gives_the_shape() -> None:
    meta = {name: t.to("meta") for name, t in _inputs().items()}
    out = _op_call(meta)
    assert out.device.type == "meta" and out.shape == meta["query"].shape and out.is_contiguous()
