"""Speed and fidelity of GNA recipes against dense attention: per-step times, fidelity of each output against the
dense output of the same seed, final-latent differences, and full-size speed with random weights. Used by
`gna-diffusers compare`.

The numbers come from the libraries the field uses, so that a reader can trust them without reading our code: PSNR,
SSIM and LPIPS from torchmetrics, CLIP score from torchmetrics with the user's own CLIP model, times from
torch.utils.benchmark, plots from matplotlib. Nothing here downloads weights: LPIPS and CLIP score are computed only
when their weights are on this machine, and the report says why when they are not.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils import benchmark

from .full_size import FULL_SIZE, build_random
from .models import spec_for
from .pipeline import disable_gna, enable_gna, gna_state
from .recipe import load_recipe
from .timing import environment

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"   # torchmetrics' default CLIP score model
Scorer = Callable[[torch.Tensor, str], float]          # (images [N, C, H, W] in [0, 1], prompt) -> CLIP score


# ---------------------------------------------------------------- fidelity metrics (images in [0, 1], [N, C, H, W])

def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


@functools.lru_cache(maxsize=1)
def lpips_metric() -> tuple[Optional[torch.nn.Module], str]:
    """(torchmetrics' LPIPS with AlexNet, "") when torchvision and its AlexNet weights are on this machine, else
    (None, why not): torchvision would otherwise download the weights on first use."""
    try:
        from torchvision.models import AlexNet_Weights
    except Exception as err:  # not installed, or built for another torch
        return None, f"LPIPS not computed: torchvision does not import here ({_first_line(err)})"
    weights = Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.IMAGENET1K_V1.url).name
    if not weights.is_file():
        return None, f"LPIPS not computed: torchvision's AlexNet weights are not on this machine ({weights})"
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).eval(), ""


def fidelity(output: torch.Tensor, reference: torch.Tensor) -> dict:
    """PSNR/SSIM (and LPIPS when available) of images [N, C, H, W] or videos [N, F, C, H, W], per image or frame and
    averaged; identical images have an infinite PSNR."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
    if output.dim() == 5:
        output, reference = output.flatten(0, 1), reference.flatten(0, 1)
    output, reference = output.double(), reference.double()
    psnr = peak_signal_noise_ratio(output, reference, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(output, reference, data_range=1.0, reduction="none")
    result = {"psnr": psnr.mean().item(), "ssim": ssim.mean().item(), "lpips": None}
    model, _ = lpips_metric()
    if model is not None:
        with torch.no_grad():
            result["lpips"] = model(output.float(), reference.float()).item()
    return result


def clip_scorer(model: str) -> tuple[Optional[Scorer], str]:
    """(CLIP score with `model`, "") when that CLIP model is a local folder or in the Hugging Face cache, else (None,
    why not); never downloads. Scores are torchmetrics' CLIPScore: 100 x the cosine of image and prompt embeddings,
    averaged over the images (video frames)."""
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    def load() -> tuple[Any, Any]:
        return (CLIPModel.from_pretrained(model, local_files_only=True),
                CLIPProcessor.from_pretrained(model, local_files_only=True))

    try:
        metric = CLIPScore(model_name_or_path=load)
    except OSError:   # transformers: neither a folder nor in the Hugging Face cache
        return None, (f"CLIP score not computed: the CLIP model {model} is not on this machine; "
                      f"`hf download {model}` or --clip-model FOLDER adds it")

    def score(images: torch.Tensor, prompt: str) -> float:
        metric.reset()
        metric.update(list((images.clamp(0, 1) * 255).round().to(torch.uint8)), [prompt] * len(images))
        return metric.compute().item()

    return score, ""


# ---------------------------------------------------------------- pipeline runs (tiny offline or real weights)
class StepTimer:
    """A `callback_on_step_end` that records the wall time of each denoising step (GPU synchronised). Why not a
    library timer: the steps run inside the pipeline's own loop, and only its callback sees where each one ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []
        self.modes: list[str] = []
        self._last = time.perf_counter()

    def start(self) -> None:
        self.times, self.modes = [], []
        self._sync()
        self._last = time.perf_counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        self._sync()
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now
        state = gna_state(pipe)
        self.modes.append("dense" if state is None or state.dense_now else "gna")
        return callback_kwargs


@contextlib.contextmanager
def after_each_step(pipe, callback: Callable[[object, int, object, dict], dict]) -> Iterator[dict]:
    """Call `callback(pipe, step, timestep, {"latents": ...})` after every denoising step: as the pipeline's
    `callback_on_step_end` where it takes one, else (HunyuanVideo 1.5's pipeline takes none) after each scheduler
    step. Yields the call arguments to pass to the pipeline."""
    if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
        yield {"callback_on_step_end": callback}
        return
    scheduler_step = pipe.scheduler.step
    steps = iter(range(1 << 30))

    def step(model_output, timestep, sample, *args, **kwargs):
        out = scheduler_step(model_output, timestep, sample, *args, **kwargs)
        callback(pipe, next(steps), timestep, {"latents": out[0] if isinstance(out, tuple) else out.prev_sample})
        return out

    pipe.scheduler.step = step
    try:
        yield {}
    finally:
        del pipe.scheduler.step


def run_pipeline(pipe, prompt: str, seed: int, steps: int, call_args: dict, timer) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoded output in [0, 1], final latents); `timer` records each step's time and mode."""
    latents = {}

    def on_step_end(pipe_, step, timestep, kwargs):
        timer(pipe_, step, timestep, kwargs)
        latents["last"] = kwargs["latents"]
        return kwargs

    timer.start()
    with after_each_step(pipe, on_step_end) as hook:
        out = pipe(prompt=prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                   output_type="pt", **hook, **call_args)
    result = out.images if hasattr(out, "images") else out.frames
    return result.float().clamp(0, 1).cpu(), latents["last"].float().cpu()


def per_step_median(runs: list[dict]) -> list[float]:
    """Median time of each step index over runs of the same step count."""
    return [float(v) for v in np.median(np.array([r["times"] for r in runs]), axis=0)]


def compare_pipeline(pipe, kind: str, recipes: list[str], prompts: list[str], seeds: list[int], steps: int,
                     call_args: dict, progress=None, clip: Optional[Scorer] = None) -> dict:
    """Every prompt and seed dense and with each recipe: one row per recipe (times, fidelity against dense, CLIP
    score when `clip` is given, per-step times), and the runs themselves for the image strips."""
    device = pipe.transformer.device
    runs: dict[str, list] = {"dense": []}
    for name in recipes:
        runs[name] = []
    for prompt in prompts:
        for seed in seeds:
            for name in runs:
                if name == "dense":
                    disable_gna(pipe)
                else:
                    enable_gna(pipe, name)
                timer = StepTimer(device)
                output, latents = run_pipeline(pipe, prompt, seed, steps, call_args, timer)
                runs[name].append({"prompt": prompt, "seed": seed, "output": output, "latents": latents,
                                   "times": timer.times, "modes": timer.modes,
                                   "clip_score": clip(output.flatten(0, -4), prompt) if clip else None})
                if progress is not None:
                    progress.update(1)
    disable_gna(pipe)
    dense_step = float(np.median([t for r in runs["dense"] for t in r["times"]]))
    total_dense = float(np.mean([sum(r["times"]) for r in runs["dense"]]))
    rows = []
    for name in recipes:
        fid = [fidelity(r["output"], d["output"]) for r, d in zip(runs[name], runs["dense"])]
        lat = [(r["latents"] - d["latents"]).abs() for r, d in zip(runs[name], runs["dense"])]
        gna_times = [t for r in runs[name] for t, m in zip(r["times"], r["modes"]) if m == "gna"]
        dense_times = [t for r in runs[name] for t, m in zip(r["times"], r["modes"]) if m == "dense"]
        total = float(np.mean([sum(r["times"]) for r in runs[name]]))
        recipe = load_recipe(name)
        rows.append({
            "model": kind, "recipe": name, "steps": steps, "dense_steps": recipe.dense_step_count(steps),
            "dense_step_s": dense_step, "gna_step_s": float(np.median(gna_times)) if gna_times else None,
            "recipe_dense_step_s": float(np.median(dense_times)) if dense_times else None,
            "step_speedup": dense_step / float(np.median(gna_times)) if gna_times else None,
            "total_dense_s": total_dense, "total_gna_s": total, "speedup": total_dense / total,
            "psnr": float(np.mean([f["psnr"] for f in fid])), "ssim": float(np.mean([f["ssim"] for f in fid])),
            "lpips": None if fid[0]["lpips"] is None else float(np.mean([f["lpips"] for f in fid])),
            "clip_score": float(np.mean([r["clip_score"] for r in runs[name]])) if clip else None,
            "clip_score_dense": float(np.mean([r["clip_score"] for r in runs["dense"]])) if clip else None,
            "latent_max_abs": max(x.max().item() for x in lat),
            "latent_mean_abs": float(np.mean([x.mean().item() for x in lat])),
            "dense_step_times_s": per_step_median(runs["dense"]), "gna_step_times_s": per_step_median(runs[name]),
            "gna_step_modes": runs[name][0]["modes"], **environment(),
        })
    return {"rows": rows, "runs": runs}


# ---------------------------------------------------------------- full size, random weights: speed only

def median_seconds(fn: Callable[[], object], reps: int) -> float:
    """Median seconds of one `fn()` over about `reps` timed calls, after one untimed warm-up call (compilation, kernel
    loading): torch.utils.benchmark, which synchronises CUDA around its blocks of calls."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn})
    timer.timeit(1)
    one = timer.timeit(1).median
    return timer.blocked_autorange(min_run_time=max(reps - 1, 1) * one).median


def attention_s(batch: int, heads: int, tokens: int, head_dim: int, device, dtype,
                key_mask: Optional[torch.Tensor] = None) -> float:
    """Seconds of one dense SDPA call as the model makes it (with its key-padding mask, which leaves the fast
    kernels)."""
    q, k, v = (torch.randn(batch, heads, tokens, head_dim, device=device, dtype=dtype) for _ in range(3))
    mask = key_mask[:, None, None, :] if key_mask is not None else None
    return median_seconds(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), reps=5)


def compare_random_weights(model: str, recipe_name: Optional[str] = None, backend: Optional[str] = None,
                           reps: int = 3, scale: float = 1.0, shrink: Optional[dict] = None) -> dict:
    """Median transformer-forward time dense vs GNA at the real token counts (about `reps` timed forwards each);
    totals extrapolated to the pipeline's default steps (one step = `calls_per_step` forwards). Fidelity is
    meaningless with random weights."""
    spec = FULL_SIZE[model]
    device, dtype = torch.device("cuda"), torch.bfloat16
    transformer = build_random(model, device, dtype, shrink)
    inputs = spec.make_inputs(scale, device, dtype, 1)
    recipe = load_recipe(recipe_name or spec.recipe)
    data = {k: v for k, v in recipe.__dict__.items() if k not in ("layers", "name", "description")}
    data = {**data, "grid": list(recipe.grid), "dense_steps": 0, "backend": backend or recipe.backend,
            "layers": [{"blocks": g.blocks, "window": list(g.window), "stride": list(g.stride),
                        "dilation": list(g.dilation), "causal": list(g.causal)} for g in recipe.layers]}
    with torch.no_grad():
        dense_s = median_seconds(lambda: transformer(**inputs), reps)
        state = enable_gna(transformer, data)
        gna_s = median_seconds(lambda: transformer(**inputs), reps)
        grid, text_tokens = state.grid, state.text_len   # text in the self-attention's joint sequence
        disable_gna(transformer)
    config = transformer.config
    heads, head_dim = config.num_attention_heads, config.attention_head_dim
    layers = sum(len(getattr(transformer, attr)) for _, attr in spec_for(transformer).stacks)
    key_mask = None
    if spec.text_key_mask is not None:               # HunyuanVideo (1.5) mask padded text for every query
        key_mask = torch.cat([torch.ones(1, math.prod(grid), dtype=torch.bool, device=device),
                              spec.text_key_mask(inputs)[:1]], dim=1)
    attn = attention_s(1, heads, math.prod(grid) + text_tokens, head_dim, device, dtype, key_mask) * layers
    dense_step, gna_step = dense_s * spec.calls_per_step, gna_s * spec.calls_per_step
    steps, dense_steps = spec.steps, recipe.dense_step_count(spec.steps)
    total_dense = steps * dense_step
    total_gna = dense_steps * dense_step + (steps - dense_steps) * gna_step
    del transformer
    torch.cuda.empty_cache()
    return {"model": model, "checkpoint_config": spec.checkpoint, "recipe": recipe.name,
            "backend": backend or recipe.backend, "grid": list(grid), "text_tokens": text_tokens, "steps": steps,
            "dense_steps": dense_steps, "dense_step_s": dense_step, "gna_step_s": gna_step,
            "step_speedup": dense_step / gna_step, "total_dense_s": total_dense, "total_gna_s": total_gna,
            "speedup": total_dense / total_gna, "attention_share": min(1.0, attn * spec.calls_per_step / dense_step),
            "totals": "extrapolated from measured per-step medians", "weights": "random (speed only; fidelity "
            "is meaningless)", "attention_share_method": "time of one dense SDPA call on a layer's joint "
            "sequence (with the model's key mask, if any) x layers / dense step time", **environment()}


# ---------------------------------------------------------------- report

def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def strip(outputs: list[torch.Tensor], labels: list[str]) -> Image.Image:
    """Side by side: images as they are; videos as first/middle/last frames stacked."""
    tiles = []
    for out in outputs:
        if out.dim() == 4:          # video [F, C, H, W]
            frames = [out[0], out[len(out) // 2], out[-1]]
            tiles.append(np.concatenate([to_uint8(f) for f in frames], axis=0))
        else:
            tiles.append(to_uint8(out))
    height = max(t.shape[0] for t in tiles)
    canvas = Image.new("RGB", (sum(t.shape[1] for t in tiles), height + 14), "white")
    x = 0
    draw = ImageDraw.Draw(canvas)
    for tile, label in zip(tiles, labels):
        canvas.paste(Image.fromarray(tile), (x, 14))
        draw.text((x + 2, 1), label, fill="black")
        x += tile.shape[1]
    return canvas


# Phases of one pipeline run, stacked bottom to top: (label, the row's key of seconds per run; None for the steps)
PHASES = [("text encode", "text_encode_s"), ("dense steps", None), ("dense steps, cached", None), ("GNA steps", None),
          ("GNA steps, cached", None), ("VAE decode", "vae_decode_s"), ("other", "other_s")]
STEP_PHASES = {"dense": "dense steps", "dense-cached": "dense steps, cached", "gna": "GNA steps",
               "gna-cached": "GNA steps, cached"}   # whole-pipeline step kinds (whole_pipeline.step_kind)


def phase_seconds(row: dict) -> Optional[dict[str, dict[str, float]]]:
    """Seconds per phase of the dense run and of the GNA run, {"dense": {phase: s}, "GNA": {...}}, from what the row
    measured: each kind of step's count times its median where the row has `steps_by_kind` (whole pipeline), else
    per-step medians times step counts (`recipe_dense_step_s`, a GNA run's own dense steps, where measured); plus
    `text_encode_s`, `vae_decode_s`, `other_s` when present (the GNA run's own `gna_*` where the row has them). None
    without per-step times."""
    if row.get("dense_step_s") is None or row.get("gna_step_s") is None or row.get("steps") is None:
        return None
    if "steps_by_kind" in row:
        runs = {mode: {STEP_PHASES[kind]: step["count"] * step["step_s"] for kind, step in kinds.items()}
                for mode, kinds in (("dense", row["steps_by_kind"]["stock"]), ("GNA", row["steps_by_kind"]["gna"]))}
    else:
        steps, dense_steps = row["steps"], row.get("dense_steps") or 0
        recipe_dense = row.get("recipe_dense_step_s") or row["dense_step_s"]
        runs = {"dense": {"dense steps": steps * row["dense_step_s"]},
                "GNA": {"dense steps": dense_steps * recipe_dense,
                        "GNA steps": (steps - dense_steps) * row["gna_step_s"]}}
    for label, key in PHASES:
        if key is None:
            continue
        for mode, phases in runs.items():
            own = row.get(f"gna_{key}") if mode == "GNA" else None
            value = own if own is not None else row.get(key)
            if value is not None:
                phases[label] = value
    return {mode: {label: phases[label] for label, _ in PHASES if label in phases} for mode, phases in runs.items()}


def row_label(row: dict, sep: str = " ") -> str:
    return sep.join(str(row[k]) for k in ("model", "recipe", "backend") if row.get(k))


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def plot_times(rows: list[dict], path: Path) -> bool:
    """What the rows measured, dense vs GNA: time per run stacked by phase, seconds per denoising step, and per-step
    times where the rows hold them. False (nothing written) when no row has step times."""
    timed = [(r, phase_seconds(r)) for r in rows]
    timed = [(r, ph) for r, ph in timed if ph is not None]
    if not timed:
        return False
    stepwise = [r for r, _ in timed if r.get("dense_step_times_s") and r.get("gna_step_times_s")]
    plt = _pyplot()
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator
    panels = 2 + bool(stepwise)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5))
    ax = axes[0]
    colors = dict(zip([label for label, _ in PHASES], plt.get_cmap("tab10").colors))
    ticks, used = [], set()
    for i, (row, phases) in enumerate(timed):
        for j, mode in enumerate(("dense", "GNA")):
            x, bottom = 3 * i + j, 0.0
            for label, seconds in phases[mode].items():
                ax.bar(x, seconds, bottom=bottom, color=colors[label])
                used.add(label)
                bottom += seconds
            ax.annotate(f"{bottom:.3g} s", (x, bottom), ha="center", va="bottom", fontsize=8)
            ticks.append(x)
        ax.text(3 * i + 0.5, -0.08, row_label(row, "\n"), transform=ax.get_xaxis_transform(), ha="center",
                va="top", fontsize=7)
    ax.set_xticks(ticks, ["dense", "GNA"] * len(timed), fontsize=7)
    ax.legend(handles=[Patch(color=colors[label], label=label) for label, _ in PHASES if label in used], fontsize=7)
    ax.set_ylabel("seconds per run")
    extrapolated = any("extrapolated" in str(r.get("totals", "")) for r, _ in timed)
    ax.set_title("time per run by phase" + (" (steps x measured per-step medians)" if extrapolated else ""),
                 fontsize=9)
    ax = axes[1]
    x = np.arange(len(timed))
    dense = [r["dense_step_s"] for r, _ in timed]
    gna = [r["gna_step_s"] for r, _ in timed]
    bars = ax.bar(x - 0.2, dense, 0.4, label="dense step", color=colors["dense steps"])
    ax.bar_label(bars, fmt="%.3g", fontsize=7)
    bars = ax.bar(x + 0.2, gna, 0.4, label="GNA step", color=colors["GNA steps"])
    ax.bar_label(bars, labels=[f"{g:.3g} ({d / g:.2f}x)" for d, g in zip(dense, gna)], fontsize=7)
    ax.set_xticks(x, [row_label(r, "\n") for r, _ in timed], fontsize=7)
    ax.set_ylabel("seconds per denoising step (median)")
    ax.set_title("one denoising step, dense vs GNA", fontsize=9)
    ax.legend(fontsize=7)
    if stepwise:
        ax = axes[2]
        for row in stepwise:
            steps = np.arange(1, len(row["gna_step_times_s"]) + 1)
            ax.plot(steps, row["dense_step_times_s"], marker="o", label=f"dense ({row_label(row)})")
            ax.plot(steps, row["gna_step_times_s"], marker="s",
                    label=f"with {row_label(row)} (first {row.get('dense_steps') or 0} dense)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("denoising step")
        ax.set_ylabel("seconds")
        ax.set_title("each step (median over prompts and seeds)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_fidelity(rows: list[dict], path: Path) -> bool:
    """Speedup against each fidelity metric measured (finite PSNR, SSIM, LPIPS, CLIP score), one point per row;
    False (nothing written) when no row measured fidelity."""
    metrics = [("psnr", "PSNR vs dense (dB)"), ("ssim", "SSIM vs dense"), ("lpips", "LPIPS vs dense"),
               ("clip_score", "CLIP score")]

    def measured(row: dict, key: str) -> bool:
        value = row.get(key)
        return isinstance(value, float) and math.isfinite(value) and row.get("speedup") is not None

    metrics = [(k, name) for k, name in metrics if any(measured(r, k) for r in rows)]
    if not metrics:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    for ax, (key, name) in zip(axes[0], metrics):
        for row in rows:
            if measured(row, key):
                ax.scatter(row[key], row["speedup"])
                ax.annotate(row_label(row), (row[key], row["speedup"]), fontsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel("speedup (total time, dense / GNA)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def markdown(rows: list[dict]) -> str:
    """The rows as a table of the columns some row measured."""
    keys = ["model", "recipe", "backend", "steps", "dense_steps", "dense_step_s", "gna_step_s", "step_speedup",
            "text_encode_s", "vae_decode_s", "other_s", "total_dense_s", "total_gna_s", "speedup",
            "attention_share", "psnr", "ssim", "lpips", "clip_score_dense", "clip_score", "latent_max_abs"]
    keys = [k for k in keys if any(r.get(k) is not None for r in rows)]

    def fmt(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, rows: list[dict], runs: Optional[dict] = None, note: str = "") -> list[Path]:
    """report.json, report.md, times.png (what was timed), fidelity.png (only if fidelity was measured) and one
    image strip per prompt and seed; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json", out_dir / "report.md"]
    written[0].write_text(json.dumps({"note": note, "rows": rows}, indent=1))
    written[1].write_text((note + "\n\n" if note else "") + markdown(rows))
    for name, plot in (("times.png", plot_times), ("fidelity.png", plot_fidelity)):
        if plot(rows, out_dir / name):
            written.append(out_dir / name)
    if runs:
        names = list(runs)
        for i, dense in enumerate(runs["dense"]):
            outputs = [runs[n][i]["output"][0] for n in names]
            path = out_dir / f"strip_{i}.png"
            strip(outputs, names).save(path)
            written.append(path)
    return written
