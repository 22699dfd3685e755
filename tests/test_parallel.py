"""GNA under Ulysses context parallelism: 2 CPU processes (gloo) give the single-process output."""

import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import gna_diffusers
from gna_diffusers.parallel import HeadsToSeq, enable_context_parallel, heads_to_seq, seq_to_heads
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


def _local_and_full(x: torch.Tensor, text_len: int, rank: int, world: int, text_first: bool):
    """Rank `rank`'s slice of a sequence sharded as [text_r, grid_r], and what it holds once all tokens arrive for
    its heads: the whole sequence in model order, built by plain indexing."""
    grid_len = x.shape[1] - text_len
    text, grid = (x[:, :text_len], x[:, text_len:]) if text_first else (x[:, grid_len:], x[:, :grid_len])
    t, g = text_len // world, grid_len // world
    mine = [text[:, rank * t:(rank + 1) * t], grid[:, rank * g:(rank + 1) * g]]
    local = torch.cat(mine if text_first else mine[::-1], dim=1)
    heads = x.shape[2] // world
    return local, x[:, :, rank * heads:(rank + 1) * heads], ([t, g] if text_first else [g, t])


def _primitive_worker(rank: int, world: int, port: int, path: str) -> None:
    _init(rank, world, port)
    group = dist.group.WORLD
    results = {}
    for batch in (1, 2):                                # 1: received in place; 2: through a buffer and a copy
        for text_first in (True, False):
            torch.manual_seed(batch)
            # q, k, v: three different full tensors (the same on every rank), 4 text + 12 grid tokens
            tensors = [torch.randn(batch, 16, 4, 8) for _ in range(3)]
            cases = [_local_and_full(x, 4, rank, world, text_first) for x in tensors]
            segments = cases[0][2]
            gathered = seq_to_heads([local for local, _, _ in cases], group, segments)
            back = HeadsToSeq(group, segments)
            split = (segments[0] * world, segments[1] * world)
            first, second = gathered[0].split_with_sizes(split, dim=1)
            back.send(1, second)                        # the grid's (or text's) part first: any order works
            back.send(0, first)
            results[batch, text_first] = ([local for local, _, _ in cases], [full for _, full, _ in cases],
                                          gathered, back.result(), heads_to_seq(gathered[1], group, segments))
    errors = []
    for bad in (lambda: seq_to_heads([torch.randn(1, 8, 4, 8)], group, [3, 3]),
                lambda: HeadsToSeq(group, [2, 2]).result(),
                lambda: HeadsToSeq(group, [2, 2]).send(0, torch.randn(1, 6, 2, 8))):
        try:
            bad()
        except ValueError as error:
            errors.append(str(error))
    torch.save((results, errors), f"{path}.{rank}")
    dist.destroy_process_group()


def test_all_to_all_segments(tmp_path) -> None:
    path = str(tmp_path / "prim")
    mp.spawn(_primitive_worker, args=(2, free_port(), path), nprocs=2)
    for rank in range(2):
        results, errors = torch.load(f"{path}.{rank}")
        assert len(results) == 4
        for (batch, text_first), (locals_, fulls, gathered, back, back_k) in results.items():
            for full, got in zip(fulls, gathered):
                assert torch.equal(got, full), (batch, text_first)   # all tokens in model order, this rank's heads
            assert torch.equal(back, locals_[0]) and torch.equal(back_k, locals_[1])
        assert len(errors) == 3
        assert "segments=[3, 3]" in errors[0] and "never sent" in errors[1] and "expected 2 ranks" in errors[2]


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
