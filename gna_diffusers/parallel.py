"""GNA under Ulysses context parallelism: the wiring above the models.

Sharding the model's inputs and gathering its output is diffusers' own context-parallel machinery (`enable_parallelism`
with a `_cp_plan`); FLUX ships a plan, and for HunyuanVideo and Cosmos-1.0, which have none in diffusers 0.42,
`CP_PLANS` below supplies one. The all-to-alls the GNA processors run under it live in `comm.py`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from diffusers.models._modeling_parallel import ContextParallelConfig, ContextParallelInput, ContextParallelOutput

from .models import spec_for
from .pipeline import transformers_and_scheduler

# Per-token time embeddings: Cosmos-Predict2 video2world's per-frame timesteps make the transformer expand temb and
# embedded_timestep to [B, tokens, C] beside the token stream, so every block and the output norm must get this rank's
# tokens of them too. With one timestep per sample they are [B, C] and diffusers leaves them whole (expected_dims=3;
# it logs once that it did not split them).
_PER_TOKEN_TIME = {name: ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
                   for name in ("embedded_timestep", "temb")}

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
        "transformer_blocks.*": _PER_TOKEN_TIME,
        "norm_out": _PER_TOKEN_TIME,
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
}


def enable_context_parallel(target, degree: int) -> None:
    """Shard a pipeline's transformer(s) over `degree` ranks (torch.distributed must be initialised) with diffusers'
    Ulysses context parallelism, using the model's own plan or ours. Call before or after `enable_gna`."""
    transformers, _ = transformers_and_scheduler(target)
    for transformer in transformers:
        heads = transformer.config.num_attention_heads
        if heads % degree:
            raise ValueError(f"degree={degree}: {type(transformer).__name__} has {heads} attention heads, which the "
                             f"Ulysses degree must divide")
    for transformer in transformers:
        plan = CP_PLANS.get(spec_for(transformer).name)
        if plan is not None:   # leave out what this configuration has not got (Cosmos-Predict2: no learnable_pos_embed)
            plan = {name: entry for name, entry in plan.items()
                    if name == "" or getattr(transformer, name.split(".")[0], None) is not None}
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
