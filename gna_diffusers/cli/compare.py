"""`gna-diffusers compare`: the same prompts and seeds dense and with each recipe; speed, fidelity, a report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from . import positive_int
from .generate import SHIPPED_RECIPE
from .model import add_model_arguments, device_for, gpus_available, load_pipeline

RANDOM_WEIGHTS_NOTE = ("Random weights at full size: speed only; fidelity figures would be meaningless and are not "
                       "reported. Totals are extrapolated from measured per-step medians.")
TINY_NOTE = ("Tiny offline pipeline with random weights: checks the tool end to end; its speed and fidelity say nothing "
             "about real models.")
WHOLE_PIPELINE_NOTE = ("Whole pipeline calls at full size with random weights: stock diffusers and GNA in the same run, "
                       "every phase measured; totals add the measured phases up for the default step count.")


def run(args: argparse.Namespace) -> int:
    from ..recipe import load_recipe
    for recipe in args.recipe or []:
        load_recipe(recipe)                     # a bad recipe fails before anything is loaded
    if args.prompts and not Path(args.prompts).is_file():
        raise UsageError(f"--prompts {args.prompts}: no such file (give a text file with one prompt per line)")
    given = [option for option, value in (("--compile", args.compile), ("--fp8", args.fp8), ("--cache", args.cache))
             if value]
    if given and not args.whole_pipeline:
        raise UsageError(f"{', '.join(given)}: only with --whole-pipeline")
    out_dir = Path(args.out)
    if args.whole_pipeline:
        import torch

        from .. import compare, whole_pipeline
        unknown = [name for name in args.whole_pipeline if name not in whole_pipeline.PIPELINES]
        if unknown:
            raise UsageError(f"--whole-pipeline {' '.join(unknown)}: not one of "
                             f"{', '.join(whole_pipeline.PIPELINES)}")
        if args.fp8:
            whole_pipeline.require_fp8(torch.device("cuda"))     # says what FP8 needs, even on a machine with no GPU
        gpus_available(1, "--whole-pipeline")
        rows = []
        for model in args.whole_pipeline:
            rows.append(whole_pipeline.time_whole_pipeline(
                whole_pipeline.PIPELINES[model], torch.device("cuda"), measured_steps=args.measured_steps,
                compile_transformer=args.compile, recipe=args.recipe[0] if args.recipe else None, fp8=args.fp8,
                cache=args.cache))
            print(json.dumps(rows[-1]), flush=True)
        written = compare.write_report(out_dir, rows, note=WHOLE_PIPELINE_NOTE)
    elif args.random_weights:
        gpus_available(1, "--random-weights")
        from .. import compare
        rows = []
        for model in args.random_weights:
            for backend in args.backend or [None]:
                rows.append(compare.compare_random_weights(model, args.recipe[0] if args.recipe else None,
                                                           backend, reps=args.reps))
                print(json.dumps(rows[-1]), flush=True)
        written = compare.write_report(out_dir, rows, note=RANDOM_WEIGHTS_NOTE)
    else:
        from tqdm import tqdm
        device = device_for(args.device) if args.device else None
        pipe, kind, call_args = load_pipeline(args.model, args.tiny_model, device, args.dtype, args.download)
        pipe.set_progress_bar_config(disable=True)
        from .. import compare
        prompts = Path(args.prompts).read_text().splitlines() if args.prompts else ["a red fox in fresh snow"]
        prompts = [p for p in prompts if p.strip()]
        recipes = args.recipe or [SHIPPED_RECIPE[kind]]
        clip, clip_note = compare.clip_scorer(args.clip_model)
        notes = [note for note in (compare.lpips_metric()[1], clip_note) if note]
        total = len(prompts) * len(args.seeds) * (1 + len(recipes))
        with tqdm(total=total, desc="compare runs") as progress:
            result = compare.compare_pipeline(pipe, kind, recipes, prompts, args.seeds,
                                              args.steps or (50 if args.model else 4), call_args, progress, clip)
        note = "\n\n".join(([] if args.model else [TINY_NOTE]) + notes)
        written = compare.write_report(out_dir, result["rows"], result["runs"], note)
        print(compare.markdown(result["rows"]))
        for line in notes:
            print(line)
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
    p.add_argument("--steps", type=positive_int)
    p.add_argument("--clip-model", default="openai/clip-vit-large-patch14",
                   help="CLIP model (hub id or folder) for CLIP scores; used only if it is on this machine")
    p.add_argument("--random-weights", nargs="+", choices=["flux", "hunyuan_video", "cosmos", "wan", "cosmos_predict2",
                                                          "cosmos_predict2_video", "flux2", "qwen_image",
                                                          "hunyuan_video15"],
                   help="time full-size transformers with random weights on the GPU instead of running pipelines")
    # names checked in `run` against whole_pipeline.PIPELINES, which imports torch and diffusers: not at parse time
    p.add_argument("--whole-pipeline", nargs="+", metavar="NAME",
                   help="time whole full-size pipeline calls with random weights on the GPU, phase by phase, stock "
                        "diffusers against GNA; NAME is a spec of gna_diffusers.whole_pipeline.PIPELINES (a wrong "
                        "name lists them)")
    p.add_argument("--compile", action="store_true",
                   help="with --whole-pipeline: torch.compile the transformer's repeated blocks (regional, fullgraph) on both sides")
    p.add_argument("--fp8", action="store_true",
                   help="with --whole-pipeline: FP8 linears in the transformer on both sides (torchao, FP8 weights and "
                        "activations, per-row scales); needs compute capability 8.9+ and pip install -e '.[fp8]'")
    p.add_argument("--cache", choices=["taylor_seer_lite"],
                   help="with --whole-pipeline: a diffusers cache hook on both sides (TaylorSeer lite, diffusers' "
                        "documented settings: full steps 0-9, then one in five); totals count the full run's computed "
                        "and predicted steps from the cache's own schedule")
    p.add_argument("--measured-steps", type=positive_int, default=2,
                   help="with --whole-pipeline: steps of each kind in the measured call (median reported)")
    p.add_argument("--backend", nargs="+", help="GNA backends to time with --random-weights (e.g. flex cutlass)")
    p.add_argument("--reps", type=positive_int, default=3,
                   help="timed forwards per mode with --random-weights (about; median reported)")
    p.add_argument("--out", default="out/compare", help="report directory")
    p.set_defaults(func=run)
