"""What every model's GNA processors share: the per-transformer state (grid, text length, dense-or-GNA now) and the
joint text + grid attention."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..backends.cutlass import arch_of, unsupported_query
from ..functional import gna_attention_op
from ..ops.params import GNAParams
from ..comm import HeadsToSeq, SeqToHeads
from ..recipe import LayerGroup, Recipe


@dataclass
class GNAState:
    """Shared by one transformer's GNA processors; updated once per transformer forward by a pre-hook."""

    recipe: Recipe
    scheduler: Optional[Any] = None          # the pipeline's scheduler: its step_index drives the dense steps
    num_inference_steps: Optional[int] = None  # bare transformer with a fractional dense_steps
    grid: Optional[tuple[int, ...]] = None
    text_len: int = 0                        # text tokens of the whole (unsharded) sequence
    text_valid: Optional[tuple[int, ...]] = None  # per batch entry, how many leading text tokens are real (the rest
    #                                               is padding every key mask drops); None: no padding, or unknown
    ulysses: Optional[Any] = None            # process group when diffusers' Ulysses context parallelism is on
    head_chunks: int = 1                     # Ulysses: attend this rank's heads in this many chunks, one after the
    #                                          other, so that a chunk's all-to-alls run under another's attention
    dense_now: bool = False
    step: int = 0
    _last_timestep: Optional[float] = None
    _resolved: dict = field(default_factory=dict)

    def params(self, group: LayerGroup) -> GNAParams:
        key = (id(group), self.grid)
        if key not in self._resolved:
            self._resolved[key] = self.recipe.resolve(group, self.grid)
        return self._resolved[key]

    def begin_forward(self, grid: tuple[int, ...], text_len: int, timestep: Optional[torch.Tensor],
                      ulysses: Optional[Any] = None, text_valid: Optional[tuple[int, ...]] = None) -> None:
        """Record the grid, the real text lengths (and the Ulysses group, if any) and decide whether this call is a
        dense step."""
        self.grid, self.text_len, self.ulysses = tuple(int(g) for g in grid), int(text_len), ulysses
        self.text_valid = text_valid
        if self.scheduler is not None:
            index = getattr(self.scheduler, "step_index", None)
            order = getattr(self.scheduler, "order", 1) or 1
            begin = getattr(self.scheduler, "begin_index", None) or 0
            self.step = 0 if index is None else max(0, index - begin) // order
            total = max(1, len(self.scheduler.timesteps) // order)
        else:
            # per-token or per-frame timesteps (Wan 2.2 TI2V, Cosmos-Predict2 video2world) hold the clean
            # conditioning frames' ~0 beside the step's noise level: the largest value is the step's
            t = float(timestep.max()) if timestep is not None else None
            if t is not None and self._last_timestep is not None and t != self._last_timestep:
                # a new denoising step; a timestep that goes back up starts a new run
                self.step = self.step + 1 if t < self._last_timestep else 0
            self._last_timestep = t
            total = self.num_inference_steps or 1
        self.dense_now = self.step < self.recipe.dense_step_count(total)

    @property
    def original_dense(self) -> bool:
        """Whether this call's attention goes to the model's own processor: a dense step the recipe keeps on the
        original path (under Ulysses the sharded sequence must go through our all-to-alls even then)."""
        return self.dense_now and self.recipe.dense_path == "original" and self.ulysses is None


def _original_attribute(name: str) -> property:
    """A diffusers processor attribute that `set_attention_backend` and `enable_parallelism` set on whatever processor
    a module holds: kept on the original processor, where it has one, so that calls handed to the original and the
    processor disable_gna restores see what was set while GNA was on (a context-parallel config above all)."""

    def get(self: "GNAProcessorBase") -> Any:
        return getattr(self.original, name) if hasattr(self.original, name) else self._own_attributes.get(name)

    def set(self: "GNAProcessorBase", value: Any) -> None:
        if hasattr(self.original, name):
            setattr(self.original, name, value)
        else:                       # processors without it (Cosmos') ignore it: never give them one
            self._own_attributes[name] = value
    return property(get, set)


class GNAProcessorBase:
    """Holds the original processor (used for dense steps and anything GNA does not cover), the shared state and
    the recipe group of this layer; diffusers' backend/parallel attributes are the original's."""

    _attention_backend = _original_attribute("_attention_backend")
    _parallel_config = _original_attribute("_parallel_config")

    def __init__(self, original, state: GNAState, group: LayerGroup) -> None:
        self.original, self.state, self.group = original, state, group
        self._own_attributes: dict[str, Any] = {}


def gna_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, params: GNAParams, backend: str,
           extra_key: Optional[torch.Tensor] = None, extra_value: Optional[torch.Tensor] = None,
           extra_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    return gna_attention_op(q, k, v, list(params.grid), list(params.window), list(params.stride),
                            list(params.dilation), list(params.causal), extra_key, extra_value, extra_mask,
                            q.shape[-1] ** -0.5, backend)


# Exact dense kernels, fastest first: cuDNN's fused attention runs ~1.6x torch's default (flash) kernel on Hopper and
# takes no mask, which is why padded keys are dropped rather than masked (../shared/DEVICE.md, bench/results/).
DENSE_KERNELS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                 SDPBackend.MATH]


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
          mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    with sdpa_kernel(DENSE_KERNELS, set_priority=True):
        return F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                                              attn_mask=mask).transpose(1, 2)


def _without_padding(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """x's tokens less [start, stop): a view when the padding ends the sequence ([grid, text]), a copy of the keys
    when real tokens follow it ([text, grid])."""
    if stop >= x.shape[1]:
        return x[:, :start]
    return x if start == stop else torch.cat([x[:, :start], x[:, stop:]], dim=1)


def dense_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    key_mask: Optional[torch.Tensor] = None, valid_keys: Optional[Sequence[int]] = None,
                    padding_end: Optional[int] = None) -> torch.Tensor:
    """SDPA on [B, S, H, D], keys restricted by a [B, S_keys] bool mask, or by `valid_keys`: per batch entry, where its
    padded keys start; they run to `padding_end` (None: to the last key), and any keys after it are real. The second
    attends to the real keys alone, unmasked: the same function as the mask, on kernels that take no mask."""
    if valid_keys is None:
        return _sdpa(query, key, value, key_mask[:, None, None, :] if key_mask is not None else None)
    stop = key.shape[1] if padding_end is None else padding_end
    if len(set(valid_keys)) == 1:
        return _sdpa(query, _without_padding(key, valid_keys[0], stop), _without_padding(value, valid_keys[0], stop))
    return torch.cat([_sdpa(query[b:b + 1], _without_padding(key[b:b + 1], n, stop),
                            _without_padding(value[b:b + 1], n, stop)) for b, n in enumerate(valid_keys)])


def dense_kernel_backend(state: GNAState, query: torch.Tensor) -> Optional[str]:
    """The backend a dense step's grid queries run on with `dense_path: kernel`, or None for the SDPA dense path.

    Our kernel with the window equal to the grid is exactly dense attention, and with the valid text as its extra
    tokens it measured faster than cuDNN on the valid keys for HunyuanVideo 720p and Qwen-Image 4K on an H200 (271
    against 295 ms, 89 against 96 ms a layer; bench/results/dense_path_h200_*.json). With backend `auto` it is taken
    only where the compiled Hopper kernel serves these inputs: elsewhere `auto` would fall to a backend slower than
    cuDNN (and sm100a's is unmeasured). A recipe that names its backend gets it. Under Ulysses dense steps stay on
    SDPA (not measured there)."""
    if state.recipe.dense_path != "kernel" or state.ulysses is not None:
        return None
    if state.recipe.backend != "auto":
        return state.recipe.backend
    served = arch_of(query.device) == "sm90a" and unsupported_query(query) is None
    return "auto" if served else None


def dense_params(grid: Sequence[int]) -> GNAParams:
    """GNA parameters whose neighborhood is the whole grid: dense attention (GNA_SEMANTICS.md)."""
    return GNAParams.make(tuple(grid), tuple(grid))


def _text_grid_tail(tokens: int, text_len: int, text_first: bool, tail_len: int = 0) -> tuple[slice, slice, slice]:
    """Where the text, the grid and the tail lie in a sequence of `tokens` laid out as [text, grid, tail] or
    [grid, text] (a tail only follows the grid of a text-first layout)."""
    if tail_len and not text_first:
        raise ValueError(f"tail_len={tail_len}: dense tokens after the grid exist only in text-first layouts "
                         f"([text, grid, tail])")
    grid_len = tokens - text_len - tail_len
    if text_first:
        return slice(0, text_len), slice(text_len, text_len + grid_len), slice(text_len + grid_len, tokens)
    return slice(grid_len, tokens), slice(0, grid_len), slice(tokens, tokens)


def _key_mask(text_mask: Optional[torch.Tensor], other_len: int, text_first: bool) -> Optional[torch.Tensor]:
    """The text mask widened to every key of the sequence (the `other_len` grid and tail keys always valid), or None
    without one."""
    if text_mask is None:
        return None
    other_keys = torch.ones(text_mask.shape[0], other_len, dtype=torch.bool, device=text_mask.device)
    return torch.cat([text_mask, other_keys] if text_first else [other_keys, text_mask], dim=1)


# How dense attention restricts the keys: (key mask, valid_keys, padding_end), dense_attention's last arguments
KeyRestriction = tuple[Optional[torch.Tensor], Optional[list[int]], Optional[int]]


def _key_restriction(state: GNAState, tokens: int, text: slice, text_mask: Optional[torch.Tensor],
                     text_first: bool) -> KeyRestriction:
    """The keys dense queries see in a whole sequence of `tokens` with its text at `text`: where the model pads text
    only at its end (`state.text_valid`), every key but each entry's padding, dropped; else the text mask, if any."""
    if state.text_valid is not None:
        return None, [text.start + n for n in state.text_valid], text.stop
    return _key_mask(text_mask, tokens - (text.stop - text.start), text_first), None, None


def _dense_tokens(x: torch.Tensor, text: slice, tail: slice) -> torch.Tensor:
    """The text tokens of x, followed by its tail tokens if there are any (a view when there are none)."""
    return x[:, text] if tail.start == tail.stop else torch.cat([x[:, text], x[:, tail]], dim=1)


def _grid_queries(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, state: GNAState, params: GNAParams,
                  text: slice, grid: slice, tail: slice, text_mask: Optional[torch.Tensor],
                  backend: str) -> torch.Tensor:
    """GNA of the grid queries: their neighborhood plus every (unmasked) text token and every tail token.

    Where every batch entry has the same number of real text tokens, first (`state.text_valid`, known on the host),
    the extra tokens are those alone, unmasked: the same function, without the mask's compaction in every layer (a
    sort and two gathers) and without padded extra tiles."""
    valid = set(state.text_valid or ())
    if len(valid) == 1:
        text = slice(text.start, text.start + valid.pop())
        text_mask = None
    extra_mask = text_mask
    if text_mask is not None and tail.start != tail.stop:
        extra_mask = _key_mask(text_mask, tail.stop - tail.start, text_first=True)
    extra_key, extra_value = _dense_tokens(key, text, tail), _dense_tokens(value, text, tail)
    if extra_key.shape[1] == 0:
        extra_key = extra_value = None
    return gna_op(query[:, grid], key[:, grid], value[:, grid], params, backend, extra_key, extra_value, extra_mask)


def _dense_queries(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, text: slice, tail: slice,
                   keys: KeyRestriction) -> torch.Tensor:
    """Dense attention of the text (and tail) queries to every key, as in the original model."""
    return dense_attention(_dense_tokens(query, text, tail), key, value, *keys)


def _joint(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, state: GNAState, params: GNAParams,
           text_len: int, text_first: bool, text_mask: Optional[torch.Tensor], tail_len: int) -> torch.Tensor:
    """Joint attention over a whole sequence laid out as [text, grid, tail] or [grid, text] on one rank."""
    text, grid, tail = _text_grid_tail(query.shape[1], text_len, text_first, tail_len)
    keys = _key_restriction(state, query.shape[1], text, text_mask, text_first)
    backend = state.recipe.backend
    if state.dense_now:
        backend = dense_kernel_backend(state, query)
        if backend is None:
            return dense_attention(query, key, value, *keys)
        params = dense_params(params.grid)
    if text_len == 0 and tail_len == 0:
        return gna_op(query, key, value, params, backend)
    grid_out = _grid_queries(query, key, value, state, params, text, grid, tail, text_mask, backend)
    dense_out = _dense_queries(query, key, value, text, tail, keys)
    if not text_first:
        return torch.cat([grid_out, dense_out], dim=1)
    text_out, tail_out = dense_out.split_with_sizes([text_len, tail_len], dim=1)
    return torch.cat([text_out, grid_out, tail_out], dim=1)


def _ulysses(state: GNAState, tensors: Sequence[torch.Tensor], segments: Sequence[int],
             attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, HeadsToSeq, int], None]) -> torch.Tensor:
    """Trade this rank's q, k, v slices for heads, `state.head_chunks` chunks of heads at a time, and call
    `attend(q, k, v, back, chunk)` on each chunk as it arrives; `attend` sends its output with `back.send`.

    Every chunk's all-to-alls are started at once, so later chunks travel while earlier ones attend, and each chunk's
    output travels back while the next one attends."""
    chunks = state.head_chunks
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"head_chunks={chunks!r}: must be a positive integer dividing the heads per rank")
    incoming = [SeqToHeads(tensors, state.ulysses, segments, chunk, chunks) for chunk in range(chunks)]
    back = HeadsToSeq(state.ulysses, segments, chunks)
    for chunk, arriving in enumerate(incoming):
        attend(*arriving.result(), back, chunk)
    return back.result()


def joint_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, state: GNAState, params: GNAParams,
                    text_len: int, text_first: bool, text_mask: Optional[torch.Tensor] = None,
                    tail_len: int = 0) -> torch.Tensor:
    """Attention over [text, grid] (or [grid, text]) tokens, [B, S, H, D]: grid queries see their neighborhood plus
    all (unmasked) text; text queries see everything, densely, as in the original model.

    `tail_len` tokens may follow the grid of a text-first layout ([text, grid, tail]: FLUX.2's reference images,
    Qwen-Image-Edit's condition images); like text they are keys every grid query sees and queries that attend
    densely. It counts tokens of the whole sequence, as `text_mask` covers the whole text.

    Under Ulysses the tensors are this rank's slice ([text_r, grid_and_tail_r]) and `text_len` the local text length;
    text and the rest are traded for heads as two segments, so the whole sequence arrives in order, and the grid's
    output travels back while the text queries attend. Dense steps under Ulysses come here too (on SDPA)."""
    if state.ulysses is None:
        return _joint(query, key, value, state, params, text_len, text_first, text_mask, tail_len)
    world = dist.get_world_size(state.ulysses)
    local_rest = query.shape[1] - text_len
    segments = [text_len, local_rest] if text_first else [local_rest, text_len]
    text, grid, tail = _text_grid_tail(world * query.shape[1], world * text_len, text_first, tail_len)
    text_index, rest_index = (0, 1) if text_first else (1, 0)
    keys = _key_restriction(state, world * query.shape[1], text, text_mask, text_first)

    def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, back: HeadsToSeq, chunk: int) -> None:
        if state.dense_now:
            back.send_all(dense_attention(query, key, value, *keys), chunk)
        elif text_len == 0 and tail_len == 0:
            back.send_all(gna_op(query, key, value, params, state.recipe.backend), chunk)
        else:
            grid_out = _grid_queries(query, key, value, state, params, text, grid, tail, text_mask,
                                     state.recipe.backend)
            if tail_len == 0:                   # the grid's output travels while the text queries attend
                back.send(rest_index, grid_out, chunk)
                back.send(text_index, dense_attention(query[:, text], key, value, *keys), chunk)
                return
            text_out, tail_out = _dense_queries(query, key, value, text, tail, keys).split_with_sizes(
                [text.stop - text.start, tail_len], dim=1)
            back.send(rest_index, torch.cat([grid_out, tail_out], dim=1), chunk)
            back.send(text_index, text_out, chunk)
    return _ulysses(state, [query, key, value], segments, attend)


def _grid_only(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, state: GNAState,
               params: GNAParams) -> torch.Tensor:
    if not state.dense_now:
        return gna_op(query, key, value, params, state.recipe.backend)
    backend = dense_kernel_backend(state, query)
    if backend is None:
        return dense_attention(query, key, value)
    return gna_op(query, key, value, dense_params(params.grid), backend)


def grid_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, state: GNAState,
                   params: GNAParams) -> torch.Tensor:
    """Self-attention over grid tokens only ([B, S, H, D]; this rank's slice under Ulysses)."""
    if state.ulysses is None:
        return _grid_only(query, key, value, state, params)
    return _ulysses(state, [query, key, value], [query.shape[1]],
                    lambda q, k, v, back, chunk: back.send_all(_grid_only(q, k, v, state, params), chunk))
