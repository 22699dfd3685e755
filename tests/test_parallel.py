"""GNA under Ulysses context parallelism: 2 CPU processes (gloo) give the single-process output."""

import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import gna_diffusers
from gna_diffusers.models.common import GNAState, dense_attention, grid_attention, joint_attention
from gna_diffusers.comm import HeadsToSeq, SeqToHeads
from gna_diffusers.models import spec_for
from gna_diffusers.parallel import enable_context_parallel
from gna_diffusers.tiny import TINY_PIPELINES

GRIDS = {"flux": [16, 16], "hunyuan_video": [2, 8, 8], "cosmos": [3, 8, 8], "wan": [3, 4, 6], "wan_22": [3, 4, 6],
         "cosmos_predict2": [4, 6], "cosmos_predict2_video": [3, 4, 6], "flux2": [12, 16], "qwen_image": [12, 16]}
RECIPE_MODEL = {"wan_22": "wan", "cosmos_predict2": "cosmos",   # tiny pipelines whose recipes name another model
                "cosmos_predict2_video": "cosmos"}
# cosmos_predict2_video: per-frame timesteps, so per-token time embeddings the plan must shard with the tokens (a
# shape error in the first block before CP_PLANS["cosmos"] split them)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recipe(model: str) -> dict:
    # one dense step, then GNA: both paths run sharded
    return {"model": RECIPE_MODEL.get(model, model), "grid": GRIDS[model], "dense_steps": 1, "backend": "reference",
            "layers": [{"blocks": "all", "window": [2] * len(GRIDS[model])}]}


def generate(pipe, call_args, prompt="a cat w1 w2", **extra):
    out = pipe(prompt=prompt, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="latent",
               **call_args, **extra)
    return out.images if hasattr(out, "images") else out.frames


def _init(rank: int, world: int, port: int) -> None:
    warnings.filterwarnings("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    # diffusers picks each rank's device as rank % accelerator count, which is 0 on a CPU-only machine
    torch.accelerator.device_count = lambda: 1


def _pipeline_worker(rank: int, world: int, port: int, model: str, path: str, extra: dict) -> None:
    _init(rank, world, port)
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    gna_diffusers.enable_gna(pipe, recipe(model))       # GNA first, parallelism second: either order works
    enable_context_parallel(pipe, world)
    seen = []                                           # tokens reaching the first attention on this rank
    spec = spec_for(pipe.transformer)
    attention = getattr(getattr(pipe.transformer, spec.stacks[0][1])[0], spec.attention)
    attention.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("hidden_states", args[0] if args else None).shape[1]),
        with_kwargs=True)
    out = generate(pipe, call_args, **extra)
    if rank == 0:
        torch.save((out, seen, gna_diffusers.gna_state(pipe).ulysses is not None), path)
    dist.destroy_process_group()


def _local(x: torch.Tensor, text_len: int, rank: int, world: int, text_first: bool) -> torch.Tensor:
    """Rank `rank`'s slice of a whole sequence ([text, grid] or [grid, text]) sharded as [text_r, grid_r]."""
    grid_len = x.shape[1] - text_len
    text, grid = (x[:, :text_len], x[:, text_len:]) if text_first else (x[:, grid_len:], x[:, :grid_len])
    t, g = text_len // world, grid_len // world
    mine = [text[:, rank * t:(rank + 1) * t], grid[:, rank * g:(rank + 1) * g]]
    return torch.cat(mine if text_first else mine[::-1], dim=1)


def _primitive_worker(rank: int, world: int, port: int, path: str) -> None:
    _init(rank, world, port)
    group = dist.group.WORLD
    results = {}
    for batch in (1, 2):                                # 1: received in place; 2: through a buffer and a copy
        for text_first in (True, False):
            for chunks in (1, 2):
                torch.manual_seed(batch)
                # q, k, v: three different whole sequences (the same on every rank), 4 text + 12 grid tokens
                tensors = [torch.randn(batch, 16, 4, 8) for _ in range(3)]
                locals_ = [_local(x, 4, rank, world, text_first) for x in tensors]
                segments = [2, 6] if text_first else [6, 2]
                arrived = [SeqToHeads(locals_, group, segments, chunk, chunks).result() for chunk in range(chunks)]
                back = HeadsToSeq(group, segments, chunks)
                for chunk in reversed(range(chunks)):   # any order of chunks and segments works
                    first, second = arrived[chunk][0].split_with_sizes([2 * segments[0], 2 * segments[1]], dim=1)
                    back.send(1, second, chunk)
                    back.send(0, first, chunk)
                whole = HeadsToSeq(group, segments, chunks)
                for chunk in range(chunks):
                    whole.send_all(arrived[chunk][1], chunk)
                results[batch, text_first, chunks] = (tensors, locals_, arrived, back.result(), whole.result())
    errors = []
    for bad in (lambda: SeqToHeads([torch.randn(1, 8, 4, 8)], group, [3, 3]),
                lambda: SeqToHeads([torch.randn(1, 8, 4, 8)], group, None, 0, 3),
                lambda: HeadsToSeq(group, [2, 2]).result(),
                lambda: HeadsToSeq(group, [2, 2]).send(0, torch.randn(1, 6, 2, 8))):
        try:
            bad()
        except ValueError as error:
            errors.append(str(error))
    torch.save((results, errors), f"{path}.{rank}")
    dist.destroy_process_group()


def test_all_to_all_segments_and_chunks(tmp_path) -> None:
    path = str(tmp_path / "prim")
    mp.spawn(_primitive_worker, args=(2, free_port(), path), nprocs=2)
    for rank in range(2):
        results, errors = torch.load(f"{path}.{rank}")
        assert len(results) == 8
        for (batch, text_first, chunks), (tensors, locals_, arrived, back, whole) in results.items():
            per_chunk = 2 // chunks                     # 4 heads: 2 per rank, split into `chunks`
            for chunk in range(chunks):
                first = 2 * rank + chunk * per_chunk
                for x, got in zip(tensors, arrived[chunk]):
                    # all tokens in model order, this chunk of this rank's heads
                    assert torch.equal(got, x[:, :, first:first + per_chunk]), (batch, text_first, chunks)
            assert torch.equal(back, locals_[0]) and torch.equal(whole, locals_[1])
        assert len(errors) == 4
        assert "segments=[3, 3]" in errors[0] and "head_chunks=3" in errors[1]
        assert "never sent" in errors[2] and "expected 2 ranks" in errors[3]


def _attention_worker(rank: int, world: int, port: int, path: str) -> None:
    _init(rank, world, port)
    grid, text_len, heads = (4, 4), 4, 4
    recipe = gna_diffusers.load_recipe({"model": "flux", "grid": list(grid), "dense_steps": 0,
                                        "backend": "reference", "layers": [{"blocks": "all", "window": [3, 3]}]})
    single, sharded = GNAState(recipe, grid=grid), GNAState(recipe, grid=grid, ulysses=dist.group.WORLD)
    params = single.params(recipe.layers[0])
    pairs = {}
    for batch in (1, 2):
        torch.manual_seed(batch)
        q, k, v = (torch.randn(batch, 16 + text_len, heads, 8) for _ in range(3))
        text_mask = torch.ones(batch, text_len, dtype=torch.bool)
        text_mask[:, -1] = False                        # one padded text token per sample
        for chunks in (1, 2):
            sharded.head_chunks = chunks
            for dense in (False, True):
                sharded.dense_now = dense
                for text_first in (True, False):
                    if dense:                           # dense steps: plain SDPA over everything, masked by hand
                        mask = torch.cat([text_mask, torch.ones(batch, 16, dtype=torch.bool)] if text_first else
                                         [torch.ones(batch, 16, dtype=torch.bool), text_mask], dim=1)
                        expected = dense_attention(q, k, v, mask)
                    else:
                        expected = joint_attention(q, k, v, single, params, text_len, text_first, text_mask)
                    local = [_local(t, text_len, rank, world, text_first) for t in (q, k, v)]
                    got = joint_attention(*local, sharded, params, text_len // world, text_first, text_mask)
                    pairs["joint", batch, chunks, dense, text_first] = (
                        got, _local(expected, text_len, rank, world, text_first))
                grid_q, grid_k, grid_v = (t[:, :16] for t in (q, k, v))
                expected = dense_attention(grid_q, grid_k, grid_v) if dense else \
                    grid_attention(grid_q, grid_k, grid_v, single, params)
                got = grid_attention(*(t.chunk(world, dim=1)[rank] for t in (grid_q, grid_k, grid_v)), sharded, params)
                pairs["grid", batch, chunks, dense] = (got, expected.chunk(world, dim=1)[rank])
    torch.save(pairs, f"{path}.{rank}")
    dist.destroy_process_group()


def test_sharded_attention_equals_whole(tmp_path) -> None:
    """joint_attention and grid_attention on 2 ranks (GNA and dense steps, 1 or 2 head chunks, batch 1 or 2) give
    this rank's slice of the single-process result."""
    path = str(tmp_path / "attn")
    mp.spawn(_attention_worker, args=(2, free_port(), path), nprocs=2)
    for rank in range(2):
        pairs = torch.load(f"{path}.{rank}")
        assert len(pairs) == 2 * 2 * 2 * 3
        for case, (got, expected) in pairs.items():
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=lambda m: f"{case}: {m}")


@pytest.mark.parametrize("model", sorted(GRIDS))
def test_two_ranks_equal_one(model, tmp_path) -> None:
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    gna_diffusers.enable_gna(pipe, recipe(model))
    single = generate(pipe, call_args)
    path = str(tmp_path / "out.pt")
    mp.spawn(_pipeline_worker, args=(2, free_port(), model, path, {}), nprocs=2)
    parallel, seen, sharded = torch.load(path)
    tokens = 1
    for length in GRIDS[model]:
        tokens *= length
    assert sharded and set(seen) == {tokens // 2}, "the sequence was not split across the two ranks"
    torch.testing.assert_close(parallel, single, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("model", ["qwen_image", "flux2"])
def test_two_ranks_equal_one_with_masked_text_or_reference_tokens(model, tmp_path) -> None:
    """Qwen-Image with a padded, masked prompt batch (each rank gets its slice of the mask) and FLUX.2 with a
    reference image (its tokens follow the grid, split over the ranks with it) give the single-process output."""
    from PIL import Image
    extra = {"qwen_image": dict(prompt=["a cat w1 w2", "a dog"]),
             "flux2": dict(image=[Image.new("RGB", (64, 64), (200, 40, 90))])}[model]
    builder, call_args = TINY_PIPELINES[model]
    pipe = builder(0)
    gna_diffusers.enable_gna(pipe, recipe(model))
    single = generate(pipe, call_args, **extra)
    path = str(tmp_path / "out.pt")
    mp.spawn(_pipeline_worker, args=(2, free_port(), model, path, extra), nprocs=2)
    parallel, seen, sharded = torch.load(path)
    image_tokens = {"qwen_image": 12 * 16, "flux2": 12 * 16 + 32 * 32}[model]
    assert sharded and set(seen) == {image_tokens // 2}
    torch.testing.assert_close(parallel, single, atol=1e-4, rtol=1e-4)


def _disable_worker(rank: int, world: int, port: int, model: str, path: str) -> None:
    _init(rank, world, port)
    builder, call_args = TINY_PIPELINES[model]
    outputs = {}
    for order in ("gna_first", "parallel_first"):
        pipe = builder(0)
        if order == "gna_first":
            gna_diffusers.enable_gna(pipe, recipe(model))
            enable_context_parallel(pipe, world)
        else:
            enable_context_parallel(pipe, world)
            gna_diffusers.enable_gna(pipe, recipe(model))
        gna_diffusers.disable_gna(pipe)
        configs = {id(module.processor._parallel_config) for module in pipe.transformer.modules()
                   if hasattr(getattr(module, "processor", None), "_parallel_config")}
        outputs[order] = (generate(pipe, call_args), configs == {id(pipe.transformer._parallel_config)})
    if rank == 0:
        torch.save(outputs, path)
    dist.destroy_process_group()


@pytest.mark.parametrize("model", ["flux"])
def test_disable_gna_keeps_context_parallelism(model, tmp_path) -> None:
    """enable_gna, then context parallelism (or the other way round), then disable_gna: the restored diffusers
    processors carry the parallel config, so the sharded pipeline gives stock single-process diffusers' output."""
    builder, call_args = TINY_PIPELINES[model]
    stock = generate(builder(0), call_args)
    path = str(tmp_path / "out.pt")
    mp.spawn(_disable_worker, args=(2, free_port(), model, path), nprocs=2)
    for order, (parallel, configured) in torch.load(path).items():
        assert configured, f"{order}: a restored processor lacks the transformer's parallel config"
        assert torch.isfinite(parallel).all()
        torch.testing.assert_close(parallel, stock, atol=1e-4, rtol=1e-4, msg=lambda m: f"{order}: {m}")


def test_heads_must_divide_the_degree() -> None:
    pipe = TINY_PIPELINES["flux"][0](0)
    with pytest.raises(ValueError, match="heads"):
        enable_context_parallel(pipe, 3)
