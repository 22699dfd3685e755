"""Tiled token layout: reorder row-major grid tokens so that every multi-dimensional tile is one contiguous run.

Order of the tiled sequence, slowest first: dilation group per dimension (g_0.., each in [0, dilation_i)), tile index
per dimension (n_0..), position inside the tile per dimension (u_0..). The grid coordinate of (g, n, u) along
dimension i is ``x = (n * tile_i + u) * dilation_i + g``; positions with ``x >= grid_i`` are padding (zeros in,
dropped out). Every dilation group is padded to the same length ``ceil(ceil(grid_i / dilation_i) / tile_i) * tile_i``,
so groups are equal blocks of the sequence and a block-sparse kernel never mixes them. Compiled kernels use the same
arithmetic. Only `coordinates`/`valid` need torch, imported there: the simulator uses the layout's arithmetic alone and
stays free of torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from .params import _per_dim, normalize_grid

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TiledLayout:
    grid: tuple[int, ...]
    tile: tuple[int, ...]
    dilation: tuple[int, ...]

    @classmethod
    def make(cls, grid, tile, dilation=1) -> "TiledLayout":
        grid = normalize_grid(grid)
        tile = _per_dim("tile", tile, len(grid), int)
        dilation = _per_dim("dilation", dilation, len(grid), int)
        for i, (t, d) in enumerate(zip(tile, dilation)):
            if t < 1:
                raise ValueError(f"tile={tile!r}: dimension {i} has {t}; tile sizes must be >= 1")
            if d < 1:
                raise ValueError(f"dilation={dilation!r}: dimension {i} has {d}; dilation must be >= 1")
        return cls(grid, tile, dilation)

    @property
    def ndim(self) -> int:
        return len(self.grid)

    @cached_property
    def group_grid(self) -> tuple[int, ...]:
        """Longest dilation sub-grid per dimension (the first groups may be one longer than the rest)."""
        return tuple(-(-L // d) for L, d in zip(self.grid, self.dilation))

    @cached_property
    def tiles_per_dim(self) -> tuple[int, ...]:
        return tuple(-(-g // t) for g, t in zip(self.group_grid, self.tile))

    @cached_property
    def padded_group_grid(self) -> tuple[int, ...]:
        return tuple(n * t for n, t in zip(self.tiles_per_dim, self.tile))

    @property
    def tile_volume(self) -> int:
        return math.prod(self.tile)

    @property
    def num_groups(self) -> int:
        return math.prod(self.dilation)

    @property
    def tiles_per_group(self) -> int:
        return math.prod(self.tiles_per_dim)

    @property
    def num_tiles(self) -> int:
        return self.num_groups * self.tiles_per_group

    @property
    def tiled_tokens(self) -> int:
        return self.num_tiles * self.tile_volume

    @property
    def tokens(self) -> int:
        return math.prod(self.grid)

    @cached_property
    def is_identity(self) -> bool:
        """True when the tiled order equals row-major order (no padding, no dilation, tiles span all inner dims)."""
        if self.tiled_tokens != self.tokens or self.num_groups != 1:
            return False
        return all(t == L for t, L in zip(self.tile[1:], self.grid[1:]))

    def _split_shape(self) -> list[int]:
        shape = []
        for n, t, d in zip(self.tiles_per_dim, self.tile, self.dilation):
            shape += [n, t, d]
        return shape

    def _to_tiled_perm(self) -> list[int]:
        k = self.ndim
        # axes of the split view: 0 batch, then (n_i, t_i, d_i) per dim at 1+3i.., then heads, head_dim
        groups = [1 + 3 * i + 2 for i in range(k)]
        tiles = [1 + 3 * i for i in range(k)]
        inner = [1 + 3 * i + 1 for i in range(k)]
        return [0] + groups + tiles + inner + [1 + 3 * k, 2 + 3 * k]

    def to_tiled(self, x: torch.Tensor) -> torch.Tensor:
        """[B, tokens, H, D] row-major -> [B, tiled_tokens, H, D] tiled (padding filled with zeros)."""
        b, n, h, dh = x.shape
        if n != self.tokens:
            raise ValueError(f"to_tiled: x has {n} tokens; the layout's grid {self.grid} has {self.tokens}")
        if self.is_identity:
            return x
        full = [p * d for p, d in zip(self.padded_group_grid, self.dilation)]
        g = x.reshape(b, *self.grid, h, dh)
        if list(self.grid) != full:
            padded = x.new_zeros(b, *full, h, dh)
            padded[(slice(None),) + tuple(slice(0, L) for L in self.grid)] = g
            g = padded
        g = g.view(b, *self._split_shape(), h, dh).permute(self._to_tiled_perm())
        return g.reshape(b, self.tiled_tokens, h, dh)

    def from_tiled(self, y: torch.Tensor) -> torch.Tensor:
        """[B, tiled_tokens, H, D] tiled -> [B, tokens, H, D] row-major (padding dropped)."""
        b, n, h, dh = y.shape
        if n != self.tiled_tokens:
            raise ValueError(f"from_tiled: y has {n} tokens; the layout holds {self.tiled_tokens}")
        if self.is_identity:
            return y
        perm = self._to_tiled_perm()
        inverse = [perm.index(i) for i in range(len(perm))]
        tiled_shape = ([b] + list(self.dilation) + list(self.tiles_per_dim) + list(self.tile) + [h, dh])
        g = y.reshape(tiled_shape).permute(inverse)
        full = [p * d for p, d in zip(self.padded_group_grid, self.dilation)]
        g = g.reshape(b, *full, h, dh)
        if list(self.grid) != full:
            g = g[(slice(None),) + tuple(slice(0, L) for L in self.grid)]
        return g.reshape(b, self.tokens, h, dh)

    def coordinates(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """[tiled_tokens, ndim] int64 grid coordinate of every tiled position (padding gets coordinates >= grid)."""
        import torch

        axes = ([torch.arange(d, device=device) for d in self.dilation]
                + [torch.arange(n, device=device) for n in self.tiles_per_dim]
                + [torch.arange(t, device=device) for t in self.tile])
        mesh = torch.meshgrid(*axes, indexing="ij")
        k = self.ndim
        coords = [(mesh[k + i] * self.tile[i] + mesh[2 * k + i]) * self.dilation[i] + mesh[i] for i in range(k)]
        return torch.stack([c.reshape(-1) for c in coords], dim=1)

    def valid(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """[tiled_tokens] bool: position holds a real token (not padding)."""
        import torch

        c = self.coordinates(device)
        return (c < torch.tensor(self.grid, device=device)).all(dim=1)
