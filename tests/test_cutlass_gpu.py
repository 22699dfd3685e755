"""The compiled `cutlass` backend against the float32 `reference` oracle on random GNA problems (Hopper; the sm100a
kernel on a compute-capability-10.0 GPU).

Every configuration draws fresh random inputs; the kernel's own output buffers are NaN-poisoned before it runs, so an
unwritten element or a NaN anywhere fails. Extra (text) tokens come unmasked or with a mask: random (valid tokens
anywhere), prefix (each batch entry's first few valid), or with the first batch entry's all masked out, which must
give exactly the output without extra tokens. Dilated problems run in place (the model's token order, strided TMA
boxes) where the boxes fit, and must give bit for bit what the gather into the tiled layout gives.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from gna_diffusers import gna_attention
from gna_diffusers.backends import cutlass
from gna_diffusers.backends.registry import select_backend
from gna_diffusers.ops.inputs import make_inputs

pytestmark = pytest.mark.gpu

NUM_RANDOM = 240
TOLERANCE = {torch.bfloat16: 1.2e-2, torch.float16: 4e-3}
LSE_TOLERANCE = 2e-2


def _needs_hopper():
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("needs a compute capability 9.0 GPU")


def _random_config(rng: random.Random) -> dict:
    ndim = rng.choice([1, 2, 2, 3, 3])
    limits = {1: (8, 900), 2: (3, 48), 3: (2, 16)}[ndim]
    grid, window, stride, dilation, causal = [], [], [], [], []
    for _ in range(ndim):
        length = rng.randint(max(limits[0], 2), limits[1])
        d = rng.choice([1, 1, 1, 2, 3]) if length >= 6 else 1
        d = min(d, length // 2)
        w = rng.randint(2, length // d)
        kind = rng.random()
        s = 1 if kind < 0.4 else (w if kind < 0.55 else rng.randint(1, w))
        grid.append(length)
        window.append(w)
        stride.append(s)
        dilation.append(d)
        causal.append(rng.random() < 0.2)
    cfg = dict(grid=tuple(grid), window=tuple(window), stride=tuple(stride), dilation=tuple(dilation),
               causal=tuple(causal), batch=rng.choice([1, 2]), heads=rng.choice([1, 2, 3]),
               head_dim=rng.choice([64, 128]), dtype=rng.choice([torch.bfloat16, torch.float16]), extra=0,
               mask=None)
    if rng.random() < 0.25:
        cfg["extra"] = rng.choice([rng.randint(1, 40), rng.randint(41, 300)])
        cfg["mask"] = rng.choice(MASKS)
    return cfg


MASKS = [None, "random", "prefix", "first_empty"]


# Fixed cases the random draw may miss: fully block-sparse (tile-aligned) 2D/3D, dense, causal, dilated 3D.
FIXED = [
    dict(grid=(64, 64), window=(32, 32), stride=(16, 16), dilation=(1, 1), causal=(False, False)),
    dict(grid=(30, 48, 40), window=(18, 24, 24), stride=(16, 8, 8), dilation=(1, 1, 1), causal=(False,) * 3),
    dict(grid=(16, 24, 32), window=(8, 16, 16), stride=(8, 8, 8), dilation=(1, 1, 1), causal=(False,) * 3),
    dict(grid=(24, 40), window=(24, 40), stride=(1, 1), dilation=(1, 1), causal=(False, False)),
    dict(grid=(1000,), window=(1000,), stride=(1,), dilation=(1,), causal=(True,)),
    dict(grid=(12, 20, 18), window=(5, 7, 6), stride=(2, 3, 1), dilation=(2, 2, 3), causal=(True, False, True)),
    dict(grid=(33, 47), window=(9, 13), stride=(1, 1), dilation=(1, 1), causal=(False, False)),
    # dilated in place: lengths not divisible by the dilation (groups of unequal length), causal, dilation up to 8
    # (TMA's largest element stride), 1D tiles of 128 whose strided box spans exactly 256 positions
    dict(grid=(13, 21, 19), window=(5, 7, 6), stride=(2, 3, 1), dilation=(2, 2, 3), causal=(True, False, True)),
    dict(grid=(45, 38), window=(9, 7), stride=(1, 1), dilation=(2, 3), causal=(False, True)),
    dict(grid=(40, 67), window=(8, 8), stride=(4, 1), dilation=(1, 8), causal=(False, False)),
    dict(grid=(999,), window=(100,), stride=(1,), dilation=(2,), causal=(False,)),
    # a strided box too large for TMA (128 x 3 positions): the gather path
    dict(grid=(999,), window=(100,), stride=(1,), dilation=(3,), causal=(True,)),
    # border tiles whose key sets come from one edge tile of a row's window (RowEdges first == last: windows
    # narrower than the KV tiles), and a causal border along a Q tile side longer than 1; every visited tile masked
    dict(grid=(40, 64), window=(3, 5), stride=(1, 1), dilation=(1, 1), causal=(False, False)),
    dict(grid=(24, 56), window=(20, 3), stride=(1, 1), dilation=(1, 1), causal=(True, False)),
]


# Extra (text) tokens: M below, at and above one 128-key tile, masked in every way, on blocked, stride-1, dilated
# (in place and gathered) and causal problems, with batch entries of different valid counts.
EXTRA = [
    (FIXED[1], 256, "prefix", 2),          # HunyuanVideo-like: 256 text tokens, a few dozen valid per entry
    (FIXED[0], 512, None, 1),               # FLUX-like: 512 unmasked
    (FIXED[6], 129, "random", 2),          # one key past a tile, valid tokens anywhere
    (FIXED[2], 128, "first_empty", 2),     # exactly one tile; the first entry sees no extra token
    (FIXED[5], 200, "random", 2),          # dilated
    (FIXED[7], 150, "prefix", 2),          # dilated, groups of unequal length, causal
    (FIXED[11], 40, None, 1),               # dilated, gathered
    (FIXED[4], 77, "prefix", 2),            # causal 1D
    (FIXED[3], 1, None, 2),                 # a single extra token
    (FIXED[6], 300, "first_empty", 1),     # every extra token masked out
]


def _configs() -> list[dict]:
    rng = random.Random(20261123)
    fixed = []
    for i, base in enumerate(FIXED):
        for dtype in (torch.bfloat16, torch.float16):
            for head_dim in (64, 128):
                fixed.append(dict(base, batch=1 + i % 2, heads=2, head_dim=head_dim, dtype=dtype,
                                  extra=17 if i % 3 == 0 else 0, mask=MASKS[i % len(MASKS)]))
    for i, (base, m, mask, batch) in enumerate(EXTRA):
        for dtype in (torch.bfloat16, torch.float16):
            fixed.append(dict(base, batch=batch, heads=3, head_dim=(64, 128)[i % 2], dtype=dtype, extra=m,
                              mask=mask))
    return fixed + [_random_config(rng) for _ in range(NUM_RANDOM)]


def _extra_mask(kind: str, batch: int, m: int, gen: torch.Generator) -> torch.Tensor:
    """[batch, m] bool extra-token mask of the given kind (see the module docstring)."""
    if kind == "prefix":
        counts = torch.randint(0, m + 1, (batch,), device="cuda", generator=gen)
        return torch.arange(m, device="cuda")[None, :] < counts[:, None]
    mask = torch.rand(batch, m, device="cuda", generator=gen) < 0.6
    if kind == "first_empty":
        mask[0] = False
    return mask


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def _run_one(cfg: dict, seed: int) -> None:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    n = math.prod(cfg["grid"])
    shape = (cfg["batch"], n, cfg["heads"], cfg["head_dim"])
    q, k, v = (torch.randn(shape, device="cuda", dtype=cfg["dtype"], generator=gen) for _ in range(3))
    extra = {}
    if cfg["extra"]:
        m = cfg["extra"]
        xshape = (cfg["batch"], m, cfg["heads"], cfg["head_dim"])
        extra = dict(extra_key=torch.randn(xshape, device="cuda", dtype=cfg["dtype"], generator=gen),
                     extra_value=torch.randn(xshape, device="cuda", dtype=cfg["dtype"], generator=gen))
        if cfg["mask"] is not None:
            extra["extra_mask"] = _extra_mask(cfg["mask"], cfg["batch"], m, gen)
    kwargs = dict(grid=cfg["grid"], window=cfg["window"], stride=cfg["stride"], dilation=cfg["dilation"],
                  causal=cfg["causal"], return_lse=True, **extra)
    ref, ref_lse = gna_attention(q, k, v, backend="reference", **kwargs)
    out, lse = gna_attention(q, k, v, backend="cutlass", **kwargs)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all(), f"non-finite output for {cfg}"
    err = _relative_error(out, ref)
    assert err <= TOLERANCE[cfg["dtype"]], f"relative error {err:.2e} for {cfg}"
    lse_err = (lse - ref_lse).abs().max().item()
    assert lse_err <= LSE_TOLERANCE, f"lse max error {lse_err:.2e} for {cfg}"

    # the kernel alone into NaN-poisoned buffers, in each token order it takes: every real query row is written
    inputs = make_inputs(q, k, v, grid=cfg["grid"], window=cfg["window"], stride=cfg["stride"],
                         dilation=cfg["dilation"], causal=cfg["causal"], **extra)
    plan = cutlass._plan(inputs.params)
    for natural in ((True, False) if cutlass._natural(inputs.params, cutlass.arch_of(q.device)) else (False,)):
        qk_v = cutlass._kernel_inputs(inputs, plan, natural)
        out_k = torch.full_like(qk_v[0], float("nan"))
        lse_k = torch.full((out_k.shape[0], out_k.shape[2], out_k.shape[1]), float("nan"), device="cuda")
        cutlass._kernel_call(inputs, plan.flat, natural)(*qk_v, out=out_k, lse=lse_k,
                                                         extra=cutlass.extra_tokens(inputs))
        if not natural:
            out_k = cutlass._from_tiled(out_k, plan.q_layout)
            lse_k = cutlass._from_tiled(lse_k, plan.q_layout, dim=2)
        order = "natural" if natural else "tiled"
        assert torch.isfinite(out_k).all() and torch.isfinite(lse_k).all(), f"unwritten rows ({order}) for {cfg}"
        assert torch.equal(out_k, out), f"kernel output ({order}) differs from the backend's for {cfg}"
        assert torch.equal(lse_k.transpose(1, 2), lse), f"kernel lse ({order}) differs for {cfg}"

    # a batch entry without a valid extra token: exactly GNA without extra tokens
    empty = [b for b in range(cfg["batch"]) if "extra_mask" in extra and not extra["extra_mask"][b].any()]
    if empty:
        plain, plain_lse = gna_attention(q, k, v, backend="cutlass", **{**kwargs, **dict.fromkeys(extra)})
        for b in empty:
            assert torch.equal(out[b], plain[b]) and torch.equal(lse[b], plain_lse[b]), \
                f"batch entry {b} without valid extra tokens differs from GNA without them for {cfg}"


@pytest.mark.parametrize("index", range(len(_configs())))
def test_cutlass_matches_reference(index):
    _needs_hopper()
    cfg = _configs()[index]
    _run_one(cfg, seed=1000 + index)


@pytest.mark.parametrize("index", range(0, len(_configs()), 3))
def test_persistent_ctas_walk_many_tiles(index, monkeypatch):
    """The persistent schedule with its CTAs capped at a handful: each CTA walks many work tiles (one-KV-tile tiles
    and padding tiles included), so its pipeline crosses tile boundaries."""
    _needs_hopper()
    monkeypatch.setattr(cutlass, "SCHEDULE", "persistent")
    monkeypatch.setattr(cutlass, "MAX_CTAS", 1 + index % 5)
    _run_one(_configs()[index], seed=5000 + index)


DILATED = [i for i, cfg in enumerate(_configs()) if any(d > 1 for d in cfg["dilation"])]


@pytest.mark.parametrize("index", DILATED)
def test_dilation_in_place_matches_gather(index, monkeypatch):
    """A dilated problem read and written in place gives bit for bit what the gather into the tiled layout and back
    gives (the same tiles in the same order; padding keys are masked either way), and the in-place path is taken
    wherever the strided boxes fit TMA."""
    _needs_hopper()
    cfg = _configs()[index]
    gen = torch.Generator(device="cuda").manual_seed(9000 + index)
    shape = (cfg["batch"], math.prod(cfg["grid"]), cfg["heads"], cfg["head_dim"])
    q, k, v = (torch.randn(shape, device="cuda", dtype=cfg["dtype"], generator=gen) for _ in range(3))
    extra = {}
    if cfg["extra"]:
        xshape = (cfg["batch"], cfg["extra"], cfg["heads"], cfg["head_dim"])
        extra = dict(extra_key=torch.randn(xshape, device="cuda", dtype=cfg["dtype"], generator=gen),
                     extra_value=torch.randn(xshape, device="cuda", dtype=cfg["dtype"], generator=gen))
    kwargs = dict(grid=cfg["grid"], window=cfg["window"], stride=cfg["stride"], dilation=cfg["dilation"],
                  causal=cfg["causal"], return_lse=True, **extra)
    params = make_inputs(q, k, v, **{key: kwargs[key] for key in ("grid", "window", "stride", "dilation",
                                                                  "causal")}).params
    monkeypatch.setattr(cutlass, "DILATION_GATHER", False)
    assert cutlass._natural(params, "sm90a") == cutlass.strided_boxes_fit(cutlass._plan(params), cfg["dilation"])
    in_place = gna_attention(q, k, v, backend="cutlass", **kwargs)
    monkeypatch.setattr(cutlass, "DILATION_GATHER", True)
    assert not cutlass._natural(params, "sm90a")
    gathered = gna_attention(q, k, v, backend="cutlass", **kwargs)
    assert torch.equal(in_place[0], gathered[0]) and torch.equal(in_place[1], gathered[1]), \
        f"in place and gathered differ for {cfg}"


@pytest.mark.parametrize("schedule", ["single", "persistent"])
@pytest.mark.parametrize("direction", ["rising", "falling"])
def test_scores_that_grow_across_kv_tiles(direction, schedule, monkeypatch):
    """Keys whose magnitude grows (or shrinks) exponentially along the sequence, so a row's max rises from one KV tile
    to the next by less and by more than the softmax's rescale threshold, and a few keys spike far above the rest:
    the probabilities taken against a reference max that lags the true one must still match the oracle. Runs the
    Hopper kernel, or the sm100a kernel itself on a compute-capability-10.0 GPU."""
    if torch.cuda.is_available() and torch.cuda.get_device_capability() == (10, 0):
        monkeypatch.setenv("GNA_SM100_SELFCHECK", "skip")
    else:
        _needs_hopper()
    monkeypatch.setattr(cutlass, "SCHEDULE", schedule)
    monkeypatch.setattr(cutlass, "MAX_CTAS", 3)
    gen = torch.Generator(device="cuda").manual_seed(4242 if direction == "rising" else 4243)
    n, heads, head_dim = 3000, 2, 128
    q, k, v = (torch.randn(2, n, heads, head_dim, device="cuda", generator=gen) for _ in range(3))
    growth = torch.logspace(math.log10(0.05), math.log10(6.0), n, device="cuda")
    k = k * (growth if direction == "rising" else growth.flip(0))[None, :, None, None]
    spikes = torch.randint(0, n, (12,), device="cuda", generator=gen)
    # a key aligned with its own query: its score is ~40 (log2) above the rest of the row
    k[:, spikes] = q[:, spikes] * 2.5
    for dtype in (torch.bfloat16, torch.float16):
        args = [t.to(dtype) for t in (q, k, v)]
        kwargs = dict(grid=(n,), window=(1501,), stride=(1,), return_lse=True)
        ref, ref_lse = gna_attention(*args, backend="reference", **kwargs)
        out, lse = gna_attention(*args, backend="cutlass", **kwargs)
        assert torch.isfinite(out).all() and torch.isfinite(lse).all()
        err = _relative_error(out, ref)
        assert err <= TOLERANCE[dtype], f"relative error {err:.2e} ({direction}, {schedule}, {dtype})"
        lse_err = (lse - ref_lse).abs().max().item()
        assert lse_err <= LSE_TOLERANCE, f"lse max error {lse_err:.2e} ({direction}, {schedule}, {dtype})"


def test_auto_prefers_cutlass_on_hopper():
    _needs_hopper()
    q = torch.randn(1, 64, 2, 128, device="cuda", dtype=torch.bfloat16)
    inputs = make_inputs(q, q, q, grid=(8, 8), window=4)
    assert select_backend("auto", inputs).name == "cutlass"
    inputs32 = make_inputs(q.float(), q.float(), q.float(), grid=(8, 8), window=4)
    assert select_backend("auto", inputs32).name != "cutlass"
    assert "dtype" in cutlass._why_not(inputs32)


def _needs_blackwell():
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (10, 0):
        pytest.skip("needs a compute capability 10.0 GPU (B200/GB200)")


@pytest.mark.parametrize("index", range(len(_configs())))
def test_sm100_kernel_matches_reference(index, monkeypatch):
    """The sm100a kernel itself (its first-use self-check skipped), on the same configurations as the Hopper one.
    Never run here: no Blackwell GPU (docs/blackwell.md)."""
    _needs_blackwell()
    monkeypatch.setenv("GNA_SM100_SELFCHECK", "skip")
    _run_one(_configs()[index], seed=1000 + index)


@pytest.mark.parametrize("index", range(0, len(_configs()), 3))
def test_sm100_persistent_ctas_walk_many_tiles(index, monkeypatch):
    """The sm100a persistent schedule with its CTAs capped at a handful, so each CTA's roles carry their pipeline
    state across many work tiles. Never run here: no Blackwell GPU."""
    _needs_blackwell()
    monkeypatch.setenv("GNA_SM100_SELFCHECK", "skip")
    monkeypatch.setattr(cutlass, "SCHEDULE", "persistent")
    monkeypatch.setattr(cutlass, "MAX_CTAS", 1 + index % 5)
    _run_one(_configs()[index], seed=5000 + index)


@pytest.mark.parametrize("schedule", ["single", "persistent"])
def test_sm100_selfcheck_passes_and_auto_takes_cutlass(schedule, monkeypatch):
    _needs_blackwell()
    monkeypatch.setenv("GNA_SM100_SELFCHECK", "force")
    monkeypatch.setattr(cutlass, "SCHEDULE", schedule)
    q = torch.randn(1, 64, 2, 128, device="cuda", dtype=torch.bfloat16)
    inputs = make_inputs(q, q, q, grid=(8, 8), window=4)
    assert cutlass._why_not(inputs) is None
    assert select_backend("auto", inputs).name == "cutlass"
