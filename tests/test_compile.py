"""`gna_attention` under torch.compile (CPU, reference backend): a function calling it compiles whole (fullgraph), with
the call as one opaque custom-op node (the cutlass backend launches a kernel tracing could not follow), and gives the
eager result and the brute-force one."""

from __future__ import annotations

import torch

from brute_force import MIXED_SHAPE, brute_mixed, mixed_inputs
from gna_diffusers import gna_attention


def _step(query, key, value, extra_key, extra_value, extra_mask):
    """What a model does around the op: work before and after it, so a graph break would split the graph."""
    out, lse = gna_attention(query * 1.0, key, value, extra_key=extra_key, extra_value=extra_value,
                             extra_mask=extra_mask, return_lse=True, backend="reference", **MIXED_SHAPE)
    plain = gna_attention(query, key, value, backend="reference", **MIXED_SHAPE)
    return out + 1.0, lse * 2.0, plain - 1.0


def test_compiled_call_is_one_graph_with_the_op() -> None:
    graphs = []

    def record(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    inputs = mixed_inputs()
    out, lse, plain = torch.compile(_step, fullgraph=True, backend=record)(**inputs)
    assert len(graphs) == 1
    targets = {node.target for node in graphs[0].graph.nodes if node.op == "call_function"}
    assert {torch.ops.gna_diffusers.gna_attention.default, torch.ops.gna_diffusers.gna_attention_lse.default} \
        <= targets
    ref_out, ref_lse = brute_mixed(inputs)
    torch.testing.assert_close(out - 1.0, ref_out.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse / 2.0, ref_lse.float(), atol=1e-5, rtol=1e-5)
    no_extra = {**inputs, "extra_key": None, "extra_value": None, "extra_mask": None}
    torch.testing.assert_close(plain + 1.0, brute_mixed(no_extra)[0].float(), atol=1e-5, rtol=1e-5)


def test_inductor_fullgraph_matches_eager() -> None:
    """Inductor checks the op's real output strides against its fake ones: both contiguous."""
    torch._dynamo.reset()
    compiled = torch.compile(_step, fullgraph=True)
    for seed in (0, 1):  # the second call reuses the compiled graph on fresh values
        inputs = mixed_inputs(seed)
        for got, want in zip(compiled(**inputs), _step(**inputs)):
            assert torch.isfinite(got).all()
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
