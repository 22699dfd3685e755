"""`gna-diffusers compare`: the same prompts and seeds dense and with each recipe; speed, fidelity, a report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .generate import add_model_arguments

RANDOM_WEIGHTS_NOTE = ("Random weights at full size: speed only; fidelity figures would be meaningless and are not "
                       "reported. Totals are extrapolated from measured per-step medians.")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .. import compare
    out_dir = Path(args.out)
    if args.random_weights:
        if not torch.cuda.is_available():
            raise SystemExit("compare --random-weights builds full-size transformers on a CUDA GPU")
        rows = []
        for model in args.random_weights:
            for backend in args.backend or [None]:
                rows.append(compare.compare_random_weights(model, args.recipe[0] if args.recipe else None,
                                                           backend, reps=args.reps))
                print(json.dumps(rows[-1]), flush=True)
        written = compare.write_report(out_dir, rows, note=RANDOM_WEIGHTS_NOTE)
    else:
        from .generate import load_pipeline
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = getattr(torch, args.dtype) if args.model else torch.float32
        pipe, kind, call_args = load_pipeline(args.model, args.tiny_model, device, dtype)
        pipe.set_progress_bar_config(disable=True)
        prompts = Path(args.prompts).read_text().splitlines() if args.prompts else ["a red fox in fresh snow"]
        prompts = [p for p in prompts if p.strip()]
        recipes = args.recipe or {"flux": ["flux-dev-4k"], "hunyuan_video": ["hunyuan-video-720p"],
                                  "cosmos": ["cosmos-7b-text2world"], "flux2": ["flux2-dev-4k"],
                                  "qwen_image": ["qwen-image-4k"], "hunyuan_video15": ["hunyuan-video15-720p"]}[kind]
        total = len(prompts) * len(args.seeds) * (1 + len(recipes))
        with tqdm(total=total, desc="compare runs") as progress:
            result = compare.compare_pipeline(pipe, kind, recipes, prompts, args.seeds,
                                              args.steps or (50 if args.model else 4), call_args, progress)
        note = "" if args.model else ("Tiny offline pipeline with random weights: checks the tool end to end; its "
                                      "speed and fidelity say nothing about real models.")
        written = compare.write_report(out_dir, result["rows"], result["runs"], note)
        print(compare.markdown(result["rows"]))
    for path in written:
        print(f"wrote {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="speed and fidelity of recipes against dense attention",
                       description=__doc__)
    add_model_arguments(p)
    p.add_argument("--recipe", action="append", help="recipe name or YAML path (repeatable)")
    p.add_argument("--prompts", help="text file, one prompt per line")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int)
    p.add_argument("--random-weights", nargs="+", choices=["flux", "hunyuan_video", "cosmos", "flux2", "qwen_image",
                                                           "hunyuan_video15"],
                   help="time full-size transformers with random weights on the GPU instead of running pipelines")
    p.add_argument("--backend", nargs="+", help="GNA backends to time with --random-weights (e.g. flex cutlass)")
    p.add_argument("--reps", type=int, default=3, help="timed forwards per mode with --random-weights")
    p.add_argument("--out", default="out/compare", help="report directory")
    p.set_defaults(func=run)
