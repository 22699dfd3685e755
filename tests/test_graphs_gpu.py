"""The cutlass `gna_attention` call inside CUDA graphs (Hopper): captured after a warm-up on a side stream, replayed on
fresh inputs copied into the static tensors, its output (NaN-poisoned before every replay) must equal the eager call's
bit for bit and the float32 reference within the tolerance of test_cutlass_gpu.py. Covers the model's token order
(dilated too: strided boxes in place), the tiled layout (a dilation too wide for strided boxes: gathers in and out),
the persistent schedule (a fully block-sparse problem), extra tokens without a mask (per-call counts) and with one
(compaction on the device, no host sync), and torch.compile's own CUDA graphs (mode="reduce-overhead")."""

from __future__ import annotations

import math

import pytest
import torch
from torch._dynamo.utils import counters

from gna_diffusers import gna_attention
from test_cutlass_gpu import LSE_TOLERANCE, TOLERANCE, _relative_error

pytestmark = pytest.mark.gpu

DTYPE, HEAD_DIM, BATCH, HEADS, EXTRA = torch.bfloat16, 128, 2, 2, 77
SHAPES = {
    "natural": dict(grid=(16, 24), window=(7, 9), stride=(1, 2)),                 # masked tiles: one tile per CTA
    "dilated": dict(grid=(12, 20), window=(5, 7), dilation=(2, 2), causal=(True, False)),
    "tiled": dict(grid=(400,), window=(40,), dilation=(3,), causal=(True,)),     # 1D tiles of 128 x 3: gathered
    "persistent": dict(grid=(8, 16, 32), window=(4, 8, 16), stride=(4, 8, 8)),   # fully block-sparse
}


@pytest.fixture(autouse=True)
def _hopper() -> None:
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("needs a compute capability 9.0 GPU")


def _inputs(shape: dict, extra: str, seed: int) -> dict:
    """q, k, v and, unless extra == "none", extra tokens (with a random mask per batch entry for "masked")."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    n = math.prod(shape["grid"])
    inputs = {name: torch.randn(BATCH, n, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE, generator=gen)
              for name in ("query", "key", "value")}
    if extra != "none":
        for name in ("extra_key", "extra_value"):
            inputs[name] = torch.randn(BATCH, EXTRA, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE, generator=gen)
    if extra == "masked":
        inputs["extra_mask"] = torch.rand(BATCH, EXTRA, device="cuda", generator=gen) < 0.5
    return inputs


def _capture(call):
    """(graph, its static outputs): warm-up on a side stream (builds the kernel, fills the caches), then capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = call()
    return graph, outputs


def _check(got: tuple[torch.Tensor, torch.Tensor], inputs: dict, shape: dict, what: str) -> None:
    """Bit-identical to the eager cutlass call and within tolerance of the reference backend."""
    out, lse = got
    assert torch.isfinite(out).all() and torch.isfinite(lse).all(), f"{what}: unwritten or non-finite output"
    eager_out, eager_lse = gna_attention(**inputs, **shape, return_lse=True, backend="cutlass")
    assert torch.equal(out, eager_out) and torch.equal(lse, eager_lse), f"{what}: differs from the eager call"
    ref_out, ref_lse = gna_attention(**inputs, **shape, return_lse=True, backend="reference")
    err = _relative_error(out, ref_out)
    assert err <= TOLERANCE[DTYPE], f"{what}: relative error {err:.2e} against the reference"
    assert (lse - ref_lse).abs().max().item() <= LSE_TOLERANCE, f"{what}: lse against the reference"


@pytest.mark.parametrize("extra", ["none", "unmasked", "masked"])
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_graph_replays_on_fresh_inputs(name: str, extra: str) -> None:
    shape = SHAPES[name]
    static = _inputs(shape, extra, seed=0)
    graph, (out, lse) = _capture(lambda: gna_attention(**static, **shape, return_lse=True, backend="cutlass"))
    for seed in (1, 2):
        fresh = _inputs(shape, extra, seed)
        for key, tensor in fresh.items():
            static[key].copy_(tensor)
        out.fill_(float("nan"))
        lse.fill_(float("nan"))
        graph.replay()
        _check((out, lse), fresh, shape, f"{name}/{extra} replay {seed}")


def test_compiled_reduce_overhead_fullgraph() -> None:
    """torch.compile(fullgraph=True, mode="reduce-overhead"): one graph around the custom ops, run as a CUDA graph,
    with extra tokens masked and unmasked (the model's token order: the tiled layout's cached gather indices must
    exist before a capture, see cutlass._layout_indices)."""
    shape = SHAPES["natural"]

    def step(query, key, value, extra_key, extra_value, extra_mask):
        out, lse = gna_attention(query, key, value, extra_key=extra_key, extra_value=extra_value,
                                 extra_mask=extra_mask, return_lse=True, backend="cutlass", **shape)
        plain, plain_lse = gna_attention(query, key, value, extra_key=extra_key, extra_value=extra_value,
                                         return_lse=True, backend="cutlass", **shape)
        return out * 1.0, lse + 0.0, plain * 1.0, plain_lse + 0.0

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(step, fullgraph=True, mode="reduce-overhead")
    for seed in range(4):  # cudagraph trees warm up, record, then replay
        inputs = _inputs(shape, "masked", seed)
        out, lse, plain, plain_lse = (t.clone() for t in compiled(**inputs))
        _check((out, lse), inputs, shape, f"compiled call {seed}")
        _check((plain, plain_lse), {**inputs, "extra_mask": None}, shape, f"compiled call {seed}, unmasked")
    assert counters["inductor"]["cudagraph_skips"] == 0, "inductor ran the graph without a CUDA graph"
