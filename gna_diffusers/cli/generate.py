"""`gna-diffusers generate`: one pipeline run, dense or with a GNA recipe, printing seconds per step.

With no --model it builds a tiny offline pipeline (random weights) so the command works on any machine; with a hub id
or local path it loads the real model in bf16 on the GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import torch

from ..parallel import enable_context_parallel, init_from_env, launch
from ..compare import StepTimer, after_each_step
from ..pipeline import enable_gna, gna_state
from ..tiny import TINY_PIPELINES

VIDEO_MODELS = ("hunyuan_video", "cosmos", "hunyuan_video15")


def load_pipeline(model: Optional[str], tiny: str, device: torch.device, dtype: torch.dtype):
    """(pipeline, model kind, default call arguments)."""
    if model is None:
        builder, call_args = TINY_PIPELINES[tiny]
        return builder(0).to(device), tiny, dict(call_args)
    from diffusers import DiffusionPipeline

    from ..models import spec_for
    pipe = DiffusionPipeline.from_pretrained(model, torch_dtype=dtype)
    pipe.to(device)
    return pipe, spec_for(pipe.transformer).name, {}


def save_output(out, kind: str, path: Path, fps: int) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    if kind in VIDEO_MODELS:
        from diffusers.utils import export_to_video
        for i, frames in enumerate(out.frames):
            target = path if len(out.frames) == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")
            export_to_video(frames, str(target), fps=fps)
            written.append(target)
    else:
        for i, image in enumerate(out.images):
            target = path if len(out.images) == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")
            image.save(target)
            written.append(target)
    return written


def run(args: argparse.Namespace) -> int:
    if args.gpus > 1 and torch.cuda.device_count() < args.gpus:
        raise SystemExit(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if args.gpus > 1 and "LOCAL_RANK" not in os.environ:
        # relaunch this very command on N processes; each then takes the branch below
        given = sys.argv[2:] if sys.argv[1:2] == ["generate"] else sys.argv[1:]   # CLI or scripts/generate.py
        return launch(args.gpus, ["gna_diffusers", "generate", *given])
    rank, world = 0, 1
    if "LOCAL_RANK" in os.environ:
        rank, world, device = init_from_env()
    else:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.model else torch.float32
    pipe, kind, call_args = load_pipeline(args.model, args.tiny_model, device, dtype)
    if world > 1:
        enable_context_parallel(pipe, world)
        pipe.set_progress_bar_config(disable=rank != 0)
    if not args.dense:
        enable_gna(pipe, args.recipe or {"flux": "flux-dev-4k", "hunyuan_video": "hunyuan-video-720p",
                                         "cosmos": "cosmos-7b-text2world", "flux2": "flux2-dev-4k",
                                         "qwen_image": "qwen-image-4k",
                                         "hunyuan_video15": "hunyuan-video15-720p"}[kind])
    for key in ("height", "width"):
        if getattr(args, key):
            call_args[key] = getattr(args, key)
    if args.frames and kind in VIDEO_MODELS:
        call_args["num_frames"] = args.frames
    timer = StepTimer(device)
    timer.start()
    with after_each_step(pipe, timer) as hook:
        out = pipe(prompt=args.prompt, num_inference_steps=args.steps or (50 if args.model else 4),
                   generator=torch.Generator(device="cpu").manual_seed(args.seed), **hook, **call_args)
    if rank != 0:
        return 0
    output = Path(args.output or f"out/{kind}{'_dense' if args.dense else '_gna'}."
                  f"{'mp4' if kind in VIDEO_MODELS else 'png'}")
    written = save_output(out, kind, output, args.fps)
    state = gna_state(pipe)
    for mode in ("dense", "gna"):
        steps = [t for t, m in zip(timer.times, timer.modes) if m == mode]
        if steps:
            print(f"{mode:5} steps: {len(steps):3d}  {sum(steps) / len(steps):.3f} s/step")
    print(f"total {sum(timer.times):.2f} s for {len(timer.times)} steps on {world} process(es)"
          + (f"; GNA on grid {state.grid}" if state else " (dense baseline)"))
    for path in written:
        print(f"wrote {path}")
    return 0


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Which pipeline to load; shared by `generate` and `compare`."""
    p.add_argument("--model", help="hub id or local path (default: a tiny offline pipeline with random weights)")
    p.add_argument("--tiny-model", default="flux", choices=sorted(TINY_PIPELINES),
                   help="which tiny offline pipeline to use when --model is not given")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                   help="weights dtype of a real model (tiny pipelines run in float32)")
    p.add_argument("--device", help="default: cuda if available, else cpu")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate an image or video, dense or with a GNA recipe",
                       description=__doc__)
    add_model_arguments(p)
    p.add_argument("--recipe", help="shipped recipe name or YAML path (default: the model's shipped recipe)")
    p.add_argument("--prompt", nargs="+", default=["a red fox in fresh snow, golden hour"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: 4 tiny, 50 real)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--frames", type=int, help="video frames (HunyuanVideo, Cosmos, HunyuanVideo 1.5)")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--dense", action="store_true", help="baseline: the original dense attention")
    p.add_argument("--output", help="output file (PNG for images, MP4 for videos)")
    p.add_argument("--gpus", type=int, default=1,
                   help="spread the sequence over N GPUs (Ulysses context parallelism; torchrun under the hood)")
    p.set_defaults(func=run)
