"""GNA under Ulysses context parallelism.

Each rank holds a contiguous slice of the sequence. GNA needs whole grids, so the GNA processors trade sequence for
heads with one all-to-all (every rank then holds all tokens, in order, for 1/P of the heads), run attention unchanged,
and trade back. Sharding the model's inputs and gathering its output is diffusers' own context-parallel machinery
(`enable_parallelism` with a `_cp_plan`); FLUX ships a plan, and for HunyuanVideo and Cosmos-1.0, which have none in
diffusers 0.42, `CP_PLANS` below supplies one.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist
from diffusers.models._modeling_parallel import ContextParallelConfig, ContextParallelInput, ContextParallelOutput

# Our plans: split RoPE tables and learnable position embeddings where they are made, the token stream at the first
# block, and gather at the output projection. Text stays whole in Cosmos (cross-attention keys need no sharding).
CP_PLANS: dict[str, dict] = {
    "hunyuan_video": {
        "rope": {0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
                 1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True)},
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False),
            "encoder_hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    "cosmos": {
        "rope": {0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
                 1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True)},
        "learnable_pos_embed": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
}


def ulysses_group(parallel_config: Any) -> Optional[dist.ProcessGroup]:
    """The Ulysses process group of a diffusers ParallelConfig, or None when there is no sequence sharding."""
    cp = getattr(parallel_config, "context_parallel_config", None)
    if cp is None or (cp.ulysses_degree or 1) <= 1:
        return None
    if (cp.ring_degree or 1) > 1:
        raise ValueError(f"ring_degree={cp.ring_degree}: GNA composes with Ulysses context parallelism only; "
                         f"use ContextParallelConfig(ulysses_degree=N)")
    return cp._ulysses_mesh.get_group()


def seq_to_heads(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """[B, S/P, H, D] on each rank -> [B, S, H/P, D]: all tokens in rank order, this rank's share of the heads."""
    world = dist.get_world_size(group)
    b, s, h, d = x.shape
    if h % world:
        raise ValueError(f"heads={h} is not divisible by the Ulysses degree {world}; choose a degree dividing {h}")
    send = x.reshape(b, s, world, h // world, d).permute(2, 0, 1, 3, 4).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return recv.permute(1, 0, 2, 3, 4).reshape(b, world * s, h // world, d)


def heads_to_seq(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Inverse of `seq_to_heads`: [B, S, H/P, D] -> [B, S/P, H, D]."""
    world = dist.get_world_size(group)
    b, s, h, d = x.shape
    if s % world:
        raise ValueError(f"sequence length {s} is not divisible by the Ulysses degree {world}")
    send = x.reshape(b, world, s // world, h, d).permute(1, 0, 2, 3, 4).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return recv.permute(1, 2, 0, 3, 4).reshape(b, s // world, world * h, d)


def enable_context_parallel(target, degree: int) -> None:
    """Shard a pipeline's transformer over `degree` ranks (torch.distributed must be initialised) with diffusers'
    Ulysses context parallelism, using the model's own plan or ours. Call before or after `enable_gna`."""
    from .models import spec_for
    from .pipeline import _split
    transformer, _ = _split(target)
    spec = spec_for(transformer)
    heads = transformer.config.num_attention_heads
    if heads % degree:
        raise ValueError(f"degree={degree}: {type(transformer).__name__} has {heads} attention heads, which the "
                         f"Ulysses degree must divide")
    plan = CP_PLANS.get(spec.name)
    transformer.enable_parallelism(config=ContextParallelConfig(ulysses_degree=degree), cp_plan=plan)


# NVLink multicast (NVLS) can take a shared host's GPUs out of service; keep it off for every process we start.
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def launch(nproc: int, module_args: list[str]) -> int:
    """Run `python -m <module_args...>` under torchrun on `nproc` local processes (one per GPU); its exit code."""
    import os
    import subprocess
    import sys
    env = {**os.environ, **MULTICAST_OFF}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", *module_args]
    return subprocess.call(command, env=env)


def init_from_env() -> tuple[int, int, torch.device]:
    """Join the torchrun job: (rank, world size, this process's device)."""
    import os
    for key, value in MULTICAST_OFF.items():
        os.environ.setdefault(key, value)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), device
