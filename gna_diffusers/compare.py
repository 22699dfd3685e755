"""Speed and fidelity of GNA recipes against dense attention: per-step times, PSNR/SSIM against the dense output of the
same seed, final-latent differences, and full-size speed with random weights. Used by `gna-diffusers compare`."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .full_size import FULL_SIZE, build_random
from .pipeline import disable_gna, enable_gna, gna_state
from .recipe import load_recipe
from .timing import cuda_time_ms, environment


# ---------------------------------------------------------------- fidelity metrics (images in [0, 1], [N, C, H, W])

def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.double(), b.double()).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) with a Gaussian window, per channel, averaged."""
    a, b = a.double(), b.double()
    coords = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = (g / g.sum())
    kernel = (g[:, None] * g[None, :]).expand(a.shape[1], 1, window, window).contiguous()

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=a.shape[1])

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean().item()


@functools.lru_cache(maxsize=1)
def lpips_model():
    """LPIPS (AlexNet) when the `lpips` package and its weights are on this machine; None otherwise."""
    try:
        import lpips
        return lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception:  # not installed, or its weights would have to be downloaded
        return None


def fidelity(output: torch.Tensor, reference: torch.Tensor) -> dict:
    """PSNR/SSIM (and LPIPS when available) of images [N, C, H, W] or videos [N, F, C, H, W] (per frame, averaged)."""
    if output.dim() == 5:
        output, reference = output.flatten(0, 1), reference.flatten(0, 1)
    frames = [(psnr(o[None], r[None]), ssim(o[None], r[None])) for o, r in zip(output, reference)]
    result = {"psnr": float(np.mean([p for p, _ in frames])), "ssim": float(np.mean([s for _, s in frames])),
              "lpips": None}
    model = lpips_model()
    if model is not None:
        with torch.no_grad():
            result["lpips"] = model(output * 2 - 1, reference * 2 - 1).mean().item()
    return result


# ---------------------------------------------------------------- pipeline runs (tiny offline or real weights)
class StepTimer:
    """A `callback_on_step_end` that records the wall time of each denoising step (GPU synchronised)."""

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


def compare_pipeline(pipe, kind: str, recipes: list[str], prompts: list[str], seeds: list[int], steps: int,
                     call_args: dict, progress=None) -> dict:
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
                                   "times": timer.times, "modes": timer.modes})
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
            "latent_max_abs": max(x.max().item() for x in lat),
            "latent_mean_abs": float(np.mean([x.mean().item() for x in lat])), **environment(),
        })
    return {"rows": rows, "runs": runs}


# ---------------------------------------------------------------- full size, random weights: speed only

def attention_ms(batch: int, heads: int, tokens: int, head_dim: int, device, dtype,
                 key_mask: Optional[torch.Tensor] = None) -> float:
    """One dense SDPA call as the model makes it (with its key-padding mask, which leaves the fast kernels)."""
    q, k, v = (torch.randn(batch, heads, tokens, head_dim, device=device, dtype=dtype) for _ in range(3))
    mask = key_mask[:, None, None, :] if key_mask is not None else None
    return cuda_time_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), warmup=2, reps=5)


def compare_random_weights(model: str, recipe_name: Optional[str] = None, backend: Optional[str] = None,
                           reps: int = 3, scale: float = 1.0, shrink: Optional[dict] = None) -> dict:
    """Median transformer-forward time dense vs GNA at the real token counts; totals extrapolated to the pipeline's
    default steps (one step = `calls_per_step` forwards). Fidelity is meaningless with random weights."""
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
        dense_ms = cuda_time_ms(lambda: transformer(**inputs), warmup=1, reps=reps, max_seconds=120)
        state = enable_gna(transformer, data)
        gna_ms = cuda_time_ms(lambda: transformer(**inputs), warmup=2, reps=reps, max_seconds=120)
        grid, text_tokens = state.grid, state.text_len   # text in the self-attention's joint sequence
        disable_gna(transformer)
    config = transformer.config
    heads, head_dim = config.num_attention_heads, config.attention_head_dim
    layers = sum(len(getattr(transformer, attr)) for attr in ("transformer_blocks", "single_transformer_blocks")
                 if hasattr(transformer, attr))
    key_mask = None
    if spec.text_key_mask is not None:               # HunyuanVideo (1.5) mask padded text for every query
        key_mask = torch.cat([torch.ones(1, math.prod(grid), dtype=torch.bool, device=device),
                              spec.text_key_mask(inputs)[:1]], dim=1)
    attn = attention_ms(1, heads, math.prod(grid) + text_tokens, head_dim, device, dtype, key_mask) * layers
    dense_step, gna_step = dense_ms * spec.calls_per_step / 1000, gna_ms * spec.calls_per_step / 1000
    steps, dense_steps = spec.steps, recipe.dense_step_count(spec.steps)
    total_dense = steps * dense_step
    total_gna = dense_steps * dense_step + (steps - dense_steps) * gna_step
    del transformer
    torch.cuda.empty_cache()
    return {"model": model, "checkpoint_config": spec.checkpoint, "recipe": recipe.name,
            "backend": backend or recipe.backend, "grid": list(grid), "text_tokens": text_tokens, "steps": steps,
            "dense_steps": dense_steps, "dense_step_s": dense_step, "gna_step_s": gna_step,
            "step_speedup": dense_step / gna_step, "total_dense_s": total_dense, "total_gna_s": total_gna,
            "speedup": total_dense / total_gna, "attention_share": min(1.0, attn * spec.calls_per_step / 1000
                                                                        / dense_step),
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


def plot(rows: list[dict], path: Path) -> None:
    """Speedup vs PSNR, one point per recipe (matplotlib if present, else a plain PIL scatter)."""
    points = [(r["speedup"], r.get("psnr") if r.get("psnr") is not None and math.isfinite(r["psnr"]) else 0.0,
               r["recipe"]) for r in rows]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 4))
        for s, p, name in points:
            ax.scatter(p, s)
            ax.annotate(name, (p, s))
        ax.set_xlabel("PSNR vs dense (dB)")
        ax.set_ylabel("speedup (total time)")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
    except ImportError:
        canvas = Image.new("RGB", (420, 320), "white")
        draw = ImageDraw.Draw(canvas)
        draw.line((40, 280, 400, 280), fill="black")
        draw.line((40, 20, 40, 280), fill="black")
        draw.text((150, 295), "PSNR vs dense (dB)", fill="black")
        draw.text((2, 5), "speedup", fill="black")
        top_s = max([s for s, _, _ in points] + [1.0])
        top_p = max([p for _, p, _ in points] + [1.0])
        for s, p, name in points:
            x, y = 40 + 340 * p / top_p, 280 - 250 * s / top_s
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill="blue")
            draw.text((x + 5, y - 5), name, fill="black")
        canvas.save(path)


def markdown(rows: list[dict]) -> str:
    keys = ["model", "recipe", "backend", "steps", "dense_steps", "dense_step_s", "gna_step_s", "step_speedup",
            "total_dense_s", "total_gna_s", "speedup", "attention_share", "psnr", "ssim", "latent_max_abs"]
    keys = [k for k in keys if any(k in r for r in rows)]

    def fmt(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, rows: list[dict], runs: Optional[dict] = None, note: str = "") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json", out_dir / "report.md", out_dir / "speedup_vs_psnr.png"]
    written[0].write_text(json.dumps({"note": note, "rows": rows}, indent=1))
    written[1].write_text((note + "\n\n" if note else "") + markdown(rows))
    plot(rows, written[2])
    if runs:
        names = list(runs)
        for i, dense in enumerate(runs["dense"]):
            outputs = [runs[n][i]["output"][0] for n in names]
            path = out_dir / f"strip_{i}.png"
            strip(outputs, names).save(path)
            written.append(path)
    return written
