"""GNA parameters: one value per grid dimension, validated with errors that say what is allowed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

IntOrTuple = Union[int, Sequence[int]]
BoolOrTuple = Union[bool, Sequence[bool]]


def _per_dim(name: str, value, ndim: int, kind: type) -> tuple:
    """Expand an int/bool to one value per dimension, or check a sequence has exactly `ndim` values of `kind`."""
    # fast path for exact types (every call validates; bool is not int's type, so neither passes as the other)
    if type(value) is kind:
        return (value,) * ndim
    if type(value) is tuple and len(value) == ndim and all(type(v) is kind for v in value):
        return value

    def ok(v) -> bool:
        if kind is bool:
            return isinstance(v, bool)
        return isinstance(v, int) and not isinstance(v, bool)

    if ok(value):
        return (value,) * ndim
    if isinstance(value, (list, tuple)):
        if len(value) != ndim:
            raise ValueError(f"{name}={tuple(value)!r} has {len(value)} values; the grid has {ndim} dimensions, "
                             f"so give one {kind.__name__} or exactly {ndim} of them")
        for v in value:
            if not ok(v):
                raise TypeError(f"{name}={tuple(value)!r} holds {v!r} of type {type(v).__name__}; "
                                f"each value must be a {kind.__name__}")
        return tuple(value)
    raise TypeError(f"{name}={value!r} must be a {kind.__name__} or a sequence of {ndim} {kind.__name__}s, "
                    f"not {type(value).__name__}")


def normalize_grid(grid) -> tuple[int, ...]:
    if isinstance(grid, int) and not isinstance(grid, bool):
        grid = (grid,)
    if not isinstance(grid, (list, tuple)):
        raise TypeError(f"grid={grid!r} must be a sequence of 1, 2 or 3 ints, not {type(grid).__name__}")
    if not 1 <= len(grid) <= 3:
        raise ValueError(f"grid={tuple(grid)!r} has {len(grid)} dimensions; 1, 2 or 3 are allowed")
    for v in grid:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"grid={tuple(grid)!r} holds {v!r}; each grid length must be an int")
        if v < 1:
            raise ValueError(f"grid={tuple(grid)!r} holds {v}; each grid length must be >= 1")
    return tuple(grid)


@dataclass(frozen=True)
class GNAParams:
    """One validated GNA configuration over a concrete grid (all tuples have one entry per dimension)."""

    grid: tuple[int, ...]
    window: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    causal: tuple[bool, ...]

    @property
    def ndim(self) -> int:
        return len(self.grid)

    @property
    def tokens(self) -> int:
        n = 1
        for v in self.grid:
            n *= v
        return n

    @property
    def is_dense(self) -> bool:
        """Window covers the whole grid with no causal dimension: plain self-attention."""
        return all(w == L and d == 1 and not c
                   for w, L, d, c in zip(self.window, self.grid, self.dilation, self.causal))

    @classmethod
    def make(cls, grid, window: IntOrTuple, stride: IntOrTuple = 1, dilation: IntOrTuple = 1,
             causal: BoolOrTuple = False) -> "GNAParams":
        """Normalise and validate against the ranges of GNA_SEMANTICS.md; raise naming argument, dimension, limit."""
        grid = normalize_grid(grid)
        n = len(grid)
        window = _per_dim("window", window, n, int)
        stride = _per_dim("stride", stride, n, int)
        dilation = _per_dim("dilation", dilation, n, int)
        causal = _per_dim("causal", causal, n, bool)
        for i in range(n):
            L, w, s, d = grid[i], window[i], stride[i], dilation[i]
            if d < 1:
                raise ValueError(f"dilation={dilation!r}: dimension {i} has {d}; dilation must be >= 1")
            if w < 2:
                raise ValueError(f"window={window!r}: dimension {i} has {w}; window must be >= 2")
            if w * d > L:
                raise ValueError(f"window={window!r} with dilation={dilation!r}: dimension {i} needs "
                                 f"window*dilation = {w}*{d} = {w * d} <= grid length {L}")
            if s < 1:
                raise ValueError(f"stride={stride!r}: dimension {i} has {s}; stride must be >= 1")
            if s > w:
                raise ValueError(f"stride={stride!r}: dimension {i} has {s} > window {w}; "
                                 f"stride must satisfy 1 <= stride <= window")
        return cls(grid, window, stride, dilation, causal)
