"""GNA under Ulysses context parallelism: 2 CPU processes (gloo) give the single-process output."""

import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import gna_diffusers
from gna_diffusers.parallel import enable_context_parallel, heads_to_seq, seq_to_heads
from gna_diffusers.tiny import TINY_PIPELINES

GRIDS = {"flux": [16, 16], "hunyuan_video": [2, 8, 8], "cosmos": [3, 8, 8]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recipe(model: str) -> dict:
    # one dense step, then GNA: both paths run sharded
    return {"model": model, "grid": GRIDS[model], "dense_steps": 1, "backend": "reference",
            "layers": [{"blocks": "all", "window": [2] * len(GRIDS[model])}]}


def generate(pipe, call_args, prompt="a cat w1 w2"):
    out = pipe(prompt, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="latent",
               **call_args)
    return out.images if hasattr(out, "images") else out.frames


def _init(rank: int, world: int, port: int) -> None:
    warnings.filterwarnings("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    # diffusers picks each rank's device as rank % accelerator count, which is 0 on a CPU-only machine
    torch.accelerator.device_count = lambda: 1


def _pipeline_worker(rank: int, world: int, port: int, model: str, path: str) -> None:
    _init(rank, world, port)
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    gna_diffusers.enable_gna(pipe, recipe(model))       # GNA first, parallelism second: either order works
    enable_context_parallel(pipe, world)
    seen = []                                           # tokens reaching the first attention on this rank
    block = pipe.transformer.transformer_blocks[0]
    attention = block.attn1 if model == "cosmos" else block.attn
    attention.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("hidden_states", args[0] if args else None).shape[1]),
        with_kwargs=True)
    out = generate(pipe, call_args)
    if rank == 0:
        torch.save((out, seen, gna_diffusers.gna_state(pipe).ulysses is not None), path)
    dist.destroy_process_group()


def _primitive_worker(rank: int, world: int, port: int, path: str) -> None:
    _init(rank, world, port)
    torch.manual_seed(0)
    x = torch.randn(2, 12, 4, 8)                        # the same full tensor on every rank
    local = x.chunk(world, dim=1)[rank]
    full_heads = seq_to_heads(local, dist.group.WORLD)
    back = heads_to_seq(full_heads, dist.group.WORLD)
    torch.save((full_heads, back, local), f"{path}.{rank}")
    dist.destroy_process_group()


def test_all_to_all_round_trip(tmp_path) -> None:
    path = str(tmp_path / "prim")
    mp.spawn(_primitive_worker, args=(2, free_port(), path), nprocs=2)
    torch.manual_seed(0)
    x = torch.randn(2, 12, 4, 8)
    for rank in range(2):
        full_heads, back, local = torch.load(f"{path}.{rank}")
        assert torch.equal(full_heads, x[:, :, 2 * rank:2 * rank + 2])   # all tokens in order, this rank's heads
        assert torch.equal(back, local)


@pytest.mark.parametrize("model", sorted(GRIDS))
def test_two_ranks_equal_one(model, tmp_path) -> None:
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    gna_diffusers.enable_gna(pipe, recipe(model))
    single = generate(pipe, call_args)
    path = str(tmp_path / "out.pt")
    mp.spawn(_pipeline_worker, args=(2, free_port(), model, path), nprocs=2)
    parallel, seen, sharded = torch.load(path)
    tokens = 1
    for length in GRIDS[model]:
        tokens *= length
    assert sharded and set(seen) == {tokens // 2}, "the sequence was not split across the two ranks"
    torch.testing.assert_close(parallel, single, atol=1e-4, rtol=1e-4)


def test_heads_must_divide_the_degree() -> None:
    pipe = TINY_PIPELINES["flux"][0](0)
    with pytest.raises(ValueError, match="heads"):
        enable_context_parallel(pipe, 3)
