"""Sequence <-> heads all-to-alls for Ulysses context parallelism, below the model processors.

Each rank holds a contiguous slice of the sequence. GNA needs whole grids, so the GNA processors trade sequence for
heads with all-to-alls (`SeqToHeads`: every rank then holds all tokens, in order, for 1/P of the heads), run attention
unchanged, and trade back (`HeadsToSeq`). Text and grid travel as separate segments received straight into their
places, the all-to-alls run asynchronously under the packing of the next tensor (and, with head chunks, under
attention), and the output lands in one preallocated tensor: no concatenations. Wiring a pipeline for context
parallelism (plans, launch) is `parallel.py`'s job, above the models.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist


def ulysses_group(parallel_config: Any) -> Optional[dist.ProcessGroup]:
    """The Ulysses process group of a diffusers ParallelConfig, or None when there is no sequence sharding."""
    cp = getattr(parallel_config, "context_parallel_config", None)
    if cp is None or (cp.ulysses_degree or 1) <= 1:
        return None
    if (cp.ring_degree or 1) > 1:
        raise ValueError(f"ring_degree={cp.ring_degree}: GNA composes with Ulysses context parallelism only; "
                         f"use ContextParallelConfig(ulysses_degree=N)")
    return cp._ulysses_mesh.get_group()


def _segment_lengths(segments: Optional[Sequence[int]], tokens: int) -> list[int]:
    """The lengths of the consecutive parts of a local sequence of `tokens` tokens (one part when not given)."""
    if segments is None:
        return [tokens]
    lengths = [int(length) for length in segments]
    if any(length < 0 for length in lengths) or sum(lengths) != tokens:
        raise ValueError(f"segments={lengths} must be non-negative lengths adding up to the {tokens} tokens of this "
                         f"rank's sequence")
    return lengths


def _rank_heads(x: torch.Tensor, world: int, chunk: int, chunks: int) -> torch.Tensor:
    """View [B, s, H, D] as [P, B, s, H/(P*chunks), D]: for each rank j, chunk `chunk` of the H/P heads j attends."""
    b, s, h, d = x.shape
    return x.unflatten(2, (world, chunks, h // (world * chunks)))[:, :, :, chunk].permute(2, 0, 1, 3, 4)


class _Exchange:
    """One all-to-all in flight: part j of `send` ([P, ...]) goes to rank j; part j of `place` comes from rank j.

    It is received straight into `place` when that is contiguous (a batch of one), else into a buffer copied there
    on `finish`, because all_to_all_single writes contiguous outputs only."""

    def __init__(self, send: torch.Tensor, place: torch.Tensor, group: dist.ProcessGroup) -> None:
        self.send, self.place = send, place
        self.received = place if place.is_contiguous() else send.new_empty(place.shape)
        self.work = dist.all_to_all_single(self.received, send, group=group, async_op=True)

    def finish(self) -> None:
        self.work.wait()
        if self.received is not self.place:
            self.place.copy_(self.received)


class SeqToHeads:
    """All-to-alls, started at once, that trade sequence for heads: each [B, S/P, H, D] on each rank becomes
    [B, S, H/(P*chunks), D], all tokens for chunk `chunk` of this rank's heads; `result()` waits for them.

    `segments` cuts the local sequence into consecutive parts (e.g. [text_len, grid_len]); every part arrives as its
    slices from all ranks in rank order, parts in the same order, so [text_r, grid_r] on rank r becomes
    [text_0 .. text_P-1, grid_0 .. grid_P-1] without a concatenation. Each all-to-all runs while the next part or
    tensor is packed for sending."""

    def __init__(self, tensors: Sequence[torch.Tensor], group: dist.ProcessGroup,
                 segments: Optional[Sequence[int]] = None, chunk: int = 0, chunks: int = 1) -> None:
        world = dist.get_world_size(group)
        self.exchanges: list[_Exchange] = []
        self.results: list[torch.Tensor] = []
        for x in tensors:
            b, s, h, d = x.shape
            if h % (world * chunks):
                raise ValueError(f"heads={h} is not divisible by the Ulysses degree {world} x head_chunks={chunks}; "
                                 f"choose a degree and head_chunks whose product divides {h}")
            full = x.new_empty(b, world * s, h // (world * chunks), d)
            start = 0
            for length in _segment_lengths(segments, s):
                if length:
                    place = full[:, world * start:world * (start + length)].unflatten(1, (world, length))
                    send = _rank_heads(x[:, start:start + length], world, chunk, chunks).contiguous()
                    self.exchanges.append(_Exchange(send, place.transpose(0, 1), group))
                start += length
            self.results.append(full)

    def result(self) -> list[torch.Tensor]:
        """Wait for every all-to-all; the tensors in the order given, [B, S, H/(P*chunks), D] each."""
        for exchange in self.exchanges:
            exchange.finish()
        return self.results


class HeadsToSeq:
    """The inverse of `SeqToHeads`, one segment (and head chunk) at a time: `send` starts that part's all-to-all at
    once, so it runs while the caller computes the next part; `result()` lands every part in its place in one
    [B, S/P, H, D] output (one copy each, no concatenation)."""

    def __init__(self, group: dist.ProcessGroup, segments: Sequence[int], chunks: int = 1) -> None:
        self.group, self.world, self.chunks = group, dist.get_world_size(group), chunks
        self.segments = [int(length) for length in segments]
        self.exchanges: dict[tuple[int, int], _Exchange] = {}
        self.out: Optional[torch.Tensor] = None

    def send(self, index: int, part: torch.Tensor, chunk: int = 0) -> None:
        """Start returning segment `index` of head chunk `chunk`: [B, P * segments[index], H/(P*chunks), D]."""
        length = self.segments[index]
        b, s, h, d = part.shape
        if s != self.world * length:
            raise ValueError(f"segment {index} has {s} tokens; expected {self.world} ranks x {length} = "
                             f"{self.world * length}")
        if self.out is None:
            self.out = part.new_empty(b, sum(self.segments), self.world * self.chunks * h, d)
        start = sum(self.segments[:index])
        place = _rank_heads(self.out[:, start:start + length], self.world, chunk, self.chunks)
        send = part.unflatten(1, (self.world, length)).transpose(0, 1).contiguous()   # free for a batch of one
        self.exchanges[index, chunk] = _Exchange(send, place, self.group)

    def send_all(self, x: torch.Tensor, chunk: int = 0) -> None:
        """Start returning a whole sequence [B, S, H/(P*chunks), D], segment by segment."""
        start = 0
        for index, length in enumerate(self.segments):
            if length:
                self.send(index, x[:, self.world * start:self.world * (start + length)], chunk)
            start += length

    def result(self) -> torch.Tensor:
        """Wait for every part and return [B, S/P, H, D]."""
        missing = [(index, chunk) for index, length in enumerate(self.segments) for chunk in range(self.chunks)
                   if length and (index, chunk) not in self.exchanges]
        if missing or self.out is None:
            raise ValueError(f"(segment, head chunk) parts {missing} were never sent; send every non-empty segment "
                             f"of every chunk before result()")
        for exchange in self.exchanges.values():
            exchange.finish()
        return self.out
