"""First-use self-check of a compiled kernel that has never run on this project's machines (the sm100a kernel: no
B200 here), before `auto` may pick it.

On its first use on a device, each compiled configuration (dtype, head_dim, schedule) runs a handful of small problems
that reach every path of the kernel (masked border tiles, strides, causal, dilation through the tiled layout, extra
tokens with a mask, scores whose row max keeps rising, two heads and batch elements) and is compared with the exact
`reference` backend. The verdict is cached per device, kernel-source digest and configuration in a small JSON file in
the kernel cache, so later processes do not repeat it. On a mismatch it logs one warning and the backend declines, so
`auto` stays on `flex`.

$GNA_SM100_SELFCHECK: `auto` (default: check once, then trust the cached verdict), `force` (check again in this
process, ignoring the cache), `skip` (use the kernel unchecked), `off` (never use the kernel).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional

import filelock
import torch

from ..ops.inputs import GNAInputs

logger = logging.getLogger("gna_diffusers")

ENV = "GNA_SM100_SELFCHECK"
MODES = ("auto", "force", "skip", "off")
# Each output element must satisfy |kernel - reference| <= atol + rtol |reference| (atol, rtol per dtype), and the
# log-sum-exp |kernel - reference| <= LSE_TOLERANCE. The rtol term is needed because a correct kernel rounds its
# probabilities and its output to the dtype: an output of magnitude 2-4 in bf16 is then one ulp (0.0156) off. A
# bound of 0.012 on the absolute error alone failed the Hopper kernel on these problems
# (bench/results/selfcheck_problems_sm90a_h200_2026-12-02.txt).
TOLERANCE = {torch.bfloat16: (1.2e-2, 2.0 ** -6), torch.float16: (4e-3, 2.0 ** -9)}
LSE_TOLERANCE = 2e-2

# (name, gna_attention arguments, extra tokens: count and whether some are masked out, how many times larger the
# keys grow from the first token to the last: 1 for plain random keys; growing keys make a row's max rise from one KV
# tile to the next by less and by more than the softmax's rescale threshold, kernels/gna_softmax_rule.hpp)
PROBLEMS = [
    ("2d border tiles, stride 1", dict(grid=(24, 40), window=(9, 13)), 0, False, 1.0),
    ("3d strides, block-sparse interior", dict(grid=(8, 16, 24), window=(4, 8, 12), stride=(2, 4, 4)), 0, False, 1.0),
    ("1d causal, several KV tiles", dict(grid=(700,), window=(300,), causal=True), 0, False, 1.0),
    ("2d dilation (tiled layout), causal dim", dict(grid=(16, 20), window=(5, 6), dilation=(2, 3),
                                                   causal=(False, True)), 0, False, 1.0),
    ("2d with masked extra tokens", dict(grid=(16, 24), window=(8, 8), stride=(4, 4)), 9, True, 1.0),
    ("1d keys growing 100x along the sequence", dict(grid=(900,), window=(601,)), 0, False, 100.0),
]

Forward = Callable[[GNAInputs], tuple[torch.Tensor, torch.Tensor]]

_verdicts: dict[str, Optional[str]] = {}  # this process's verdicts: None passes, else the reason it failed


def mode() -> str:
    """$GNA_SM100_SELFCHECK, checked."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}; allowed: {', '.join(MODES)}")
    return value


def verdict_key(device: torch.device, digest: str, dtype: torch.dtype, head_dim: int, schedule: str) -> str:
    """Which verdict applies: the device (name and compute capability), the kernel sources, the configuration (each
    schedule is a build of its own)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        where = f"{name} sm{major}{minor}"
    else:
        where = device.type
    return f"{where}|{digest}|{str(dtype).replace('torch.', '')}|d{head_dim}|{schedule}"


def run_problems(kernel: Forward, reference: Forward, device: torch.device, dtype: torch.dtype,
                 head_dim: int) -> Optional[str]:
    """Runs every problem through `kernel` and `reference`; None if all agree, else which one did not and by how
    much."""
    from ..ops.inputs import make_inputs
    generator = torch.Generator(device="cpu").manual_seed(17)
    for name, args, extra, masked, key_growth in PROBLEMS:
        tokens = math.prod(args["grid"])

        def draw(n: int, growth: float = 1.0) -> torch.Tensor:
            x = torch.randn(2, n, 2, head_dim, generator=generator)
            if growth != 1.0:
                x = x * torch.logspace(math.log10(0.05), math.log10(0.05 * growth), n)[None, :, None, None]
            return x.to(device=device, dtype=dtype)

        q, k, v = draw(tokens), draw(tokens, key_growth), draw(tokens)
        extra_args = {}
        if extra:
            extra_args = dict(extra_key=draw(extra), extra_value=draw(extra))
            if masked:
                mask = torch.ones(2, extra, dtype=torch.bool)
                mask[0, extra // 2:] = False
                mask[1, :2] = False
                extra_args["extra_mask"] = mask.to(device)
        inputs = make_inputs(q, k, v, **args, **extra_args)
        try:
            out, lse = kernel(inputs)
        except Exception as err:  # a kernel that raises fails the check like one that is wrong
            return f"{name}: the kernel raised {type(err).__name__}: {err}"
        want_out, want_lse = reference(inputs)
        atol, rtol = TOLERANCE[dtype]
        difference = (out.float() - want_out.float()).abs().nan_to_num(math.inf)
        excess = (difference - rtol * want_out.float().abs()).max().item()
        lse_error = (lse.float() - want_lse.float()).abs().nan_to_num(math.inf).max().item()
        if not excess <= atol or not lse_error <= LSE_TOLERANCE:
            return (f"{name}: max |out - reference| = {difference.max().item():.3g}, beyond {rtol:.3g} |reference| "
                    f"by up to {excess:.3g} (allowed {atol}), max |lse - reference| = {lse_error:.3g} (allowed "
                    f"{LSE_TOLERANCE})")
    return None


def check(cache_file: Path, key: str, kernel: Forward, reference: Forward, device: torch.device,
          dtype: torch.dtype, head_dim: int, label: str) -> Optional[str]:
    """None if the kernel may be used for this key, else why not. Runs the problems at most once per key (per
    process with `force`, else once per cache), logs one warning on a failed check, and caches the verdict."""
    current = mode()
    if current == "off":
        return f"{ENV}=off"
    if current == "skip":
        return None
    if key in _verdicts:
        return _verdicts[key]
    cached = None if current == "force" else _read(cache_file).get(key)
    if cached is not None:
        reason = None if cached["passed"] else cached["reason"]
        if reason is not None:
            logger.warning("%s failed its self-check on this device earlier (%s, cached in %s); staying on the next "
                           "backend. %s=force checks again.", label, reason, cache_file, ENV)
    else:
        logger.info("self-checking %s against the reference backend (%d small problems, once per device)", label,
                    len(PROBLEMS))
        start = time.perf_counter()
        reason = run_problems(kernel, reference, device, dtype, head_dim)
        _write(cache_file, key, {"passed": reason is None, "reason": reason, "problems": len(PROBLEMS),
                                 "seconds": round(time.perf_counter() - start, 2), "checked": time.time()})
        if reason is not None:
            logger.warning("%s failed its self-check against the reference backend (%s); staying on the next "
                           "backend. Please report this with the output of `pytest -m gpu` (docs/blackwell.md).",
                           label, reason)
    _verdicts[key] = None if reason is None else f"failed its first-use self-check: {reason}"
    return _verdicts[key]


def _read(cache_file: Path) -> dict:
    try:
        return json.loads(cache_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write(cache_file: Path, key: str, record: dict) -> None:
    """Adds one verdict; processes writing at once take turns, and a reader never sees a half-written file."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(cache_file) + ".lock"):
        verdicts = _read(cache_file)
        verdicts[key] = record
        tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(verdicts, indent=1, sort_keys=True))
        tmp.replace(cache_file)
