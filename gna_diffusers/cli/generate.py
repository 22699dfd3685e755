"""`gna-diffusers generate`: one pipeline run, dense or with a GNA recipe, printing seconds per step.

With no --model it builds a tiny offline pipeline (random weights) so the command works on any machine; with a hub id
(already downloaded, or with --download) or a local pipeline folder it loads the real model in bf16 on the GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import positive_int
from .model import add_model_arguments, device_for, gpus_available, load_pipeline

VIDEO_MODELS = ("hunyuan_video", "cosmos", "wan", "wan_22", "cosmos_predict2_video", "hunyuan_video15")
SHIPPED_RECIPE = {"flux": "flux-dev-4k", "hunyuan_video": "hunyuan-video-720p", "cosmos": "cosmos-7b-text2world",
                  "wan": "wan-720p", "wan_22": "wan-720p", "cosmos_predict2": "cosmos-predict2-text2image",
                  "cosmos_predict2_video": "cosmos-predict2-video2world", "flux2": "flux2-dev-4k",
                  "qwen_image": "qwen-image-4k", "hunyuan_video15": "hunyuan-video15-720p"}


def save_output(out, path: Path, fps: int) -> list[Path]:
    """Videos (outputs with `frames`) as MP4, images as PNG: Cosmos-Predict2 text2image makes images with a video
    model's transformer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    if hasattr(out, "frames"):
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
    from ..recipe import load_recipe
    recipe = load_recipe(args.recipe) if args.recipe and not args.dense else None   # a bad recipe fails first
    if args.gpus > 1:
        gpus_available(args.gpus, f"--gpus {args.gpus}")
    if args.gpus > 1 and "LOCAL_RANK" not in os.environ:
        from ..parallel import launch
        # relaunch this very command on N processes; each then takes the branch below
        given = sys.argv[2:] if sys.argv[1:2] == ["generate"] else sys.argv[1:]   # CLI or scripts/generate.py
        return launch(args.gpus, ["gna_diffusers", "generate", *given])
    rank, world, device = 0, 1, None
    if "LOCAL_RANK" in os.environ:
        from ..parallel import init_from_env
        rank, world, device = init_from_env()
    elif args.device:
        device = device_for(args.device)
    pipe, kind, call_args = load_pipeline(args.model, args.tiny_model, device, args.dtype, args.download)
    import torch

    from ..compare import StepTimer, after_each_step
    from ..pipeline import enable_gna, gna_state
    device = pipe.transformer.device
    if world > 1:
        from ..parallel import enable_context_parallel
        enable_context_parallel(pipe, world)
        pipe.set_progress_bar_config(disable=rank != 0)
    if not args.dense:
        enable_gna(pipe, recipe or SHIPPED_RECIPE[kind])
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
                  f"{'mp4' if hasattr(out, 'frames') else 'png'}")
    written = save_output(out, output, args.fps)
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate an image or video, dense or with a GNA recipe",
                       description=__doc__)
    add_model_arguments(p)
    p.add_argument("--recipe", help="shipped recipe name or YAML path (default: the model's shipped recipe)")
    p.add_argument("--prompt", nargs="+", default=["a red fox in fresh snow, golden hour"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=positive_int, default=None, help="denoising steps (default: 4 tiny, 50 real)")
    p.add_argument("--height", type=positive_int)
    p.add_argument("--width", type=positive_int)
    p.add_argument("--frames", type=positive_int, help="video frames (HunyuanVideo, Cosmos, Wan, HunyuanVideo 1.5)")
    p.add_argument("--fps", type=positive_int, default=24)
    p.add_argument("--dense", action="store_true", help="baseline: the original dense attention")
    p.add_argument("--output", help="output file (PNG for images, MP4 for videos)")
    p.add_argument("--gpus", type=positive_int, default=1,
                   help="spread the sequence over N GPUs (Ulysses context parallelism; torchrun under the hood)")
    p.set_defaults(func=run)
