"""The processors' entry `gna_attention_op` skips the custom op's dispatch in plain eager calls (host time on small
problems) and keeps it where the dispatcher is needed (CPU, reference backend, against brute force)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from brute_force import MIXED_SHAPE, brute_mixed, mixed_inputs
from gna_diffusers.functional import gna_attention_op

OPS = {torch.ops.gna_diffusers.gna_attention.default}


class _OpCalls(TorchDispatchMode):
    """Counts calls of the GNA custom ops that reach the dispatcher."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += func in OPS
        return func(*args, **(kwargs or {}))


def _op_call(inputs: dict) -> torch.Tensor:
    shape = [list(MIXED_SHAPE[name]) for name in ("grid", "window", "stride", "dilation", "causal")]
    return gna_attention_op(inputs["query"], inputs["key"], inputs["value"], *shape, inputs["extra_key"],
                            inputs["extra_value"], inputs["extra_mask"], None, "reference")


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "requires_grad"])
def test_processor_entry_uses_the_op_only_where_needed(grad: bool) -> None:
    inputs = mixed_inputs()
    inputs["query"].requires_grad_(grad)
    with _OpCalls() as mode:
        out = _op_call(inputs)
    # plain eager: gna_attention directly; inputs autograd would record: through the op, as before
    assert mode.calls == (1 if grad else 0)
    torch.testing.assert_close(out.detach(), brute_mixed(inputs)[0].float(), atol=1e-5, rtol=1e-5)


def test_processor_entry_on_meta_tensors_gives_the_shape() -> None:
    meta = {name: t.to("meta") for name, t in mixed_inputs().items()}
    out = _op_call(meta)
    assert out.device.type == "meta" and out.shape == meta["query"].shape and out.is_contiguous()
