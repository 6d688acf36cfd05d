"""A tree of time segments over [0, 1] (Xu et al. 2024, "Representing Long Volumetric Video with Temporal Gaussian
Hierarchy", §3.1): level 0 is the root [0, 1], level k splits it into `branching`^k equal segments.

Segments are half-open, [k / n, (k + 1) / n), except the last of each level, which also holds t = 1; times outside
[0, 1] belong to the first or last segment (they are clamped). Membership is computed once, as the leaf index
min(⌊clamp(t, 0, 1) · n_leaves⌋, n_leaves − 1), and a segment at level l holds t when leaf(t) // branching^(depth − l)
equals its index. Because every level is derived from the same integer leaf index, the segments of one level nest
exactly inside those of the level above, and because ⌊t · n⌋ is monotone in t, a segment that holds two times holds
every time between them. `assign` and `path` both go through `leaf_indices`, so the Gaussians a renderer needs at t
are always on `path(t)` (see `splat4d.hierarchy.build`).
"""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

MAX_LEAVES = 2**40
"""Upper bound on branching^depth: leaf boundaries k / n stay far apart compared with float64 rounding of t · n."""


@dataclass(frozen=True, order=True)
class Segment:
    """One node of a `TimeTree`: the `index`-th of the branching^`level` segments of its level."""

    level: int
    index: int


@dataclass(frozen=True)
class TimeTree:
    """Levels 0..`depth` of equal time segments over [0, 1]; level k has `branching`^k of them."""

    depth: int
    branching: int = 2

    def __post_init__(self) -> None:
        if self.depth < 0:
            raise ValueError(f"TimeTree: depth must be >= 0, got {self.depth}")
        if self.branching < 2:
            raise ValueError(f"TimeTree: branching must be >= 2, got {self.branching}")
        if self.branching**self.depth > MAX_LEAVES:
            raise ValueError(
                f"TimeTree: {self.branching}^{self.depth} leaves is more than the supported {MAX_LEAVES}"
            )

    @property
    def num_leaves(self) -> int:
        return self.branching**self.depth

    def num_segments(self, level: int) -> int:
        self._check_level(level)
        return self.branching**level

    def segments(self) -> list[Segment]:
        """Every segment, root first, then level by level in time order (the canonical order of a hierarchy)."""
        return [Segment(level, i) for level in range(self.depth + 1) for i in range(self.num_segments(level))]

    def canonical_index(self, segment: Segment) -> int:
        """Position of `segment` in `segments()`: the segments of all coarser levels come first."""
        return (self.branching**segment.level - 1) // (self.branching - 1) + segment.index

    def contains_segment(self, segment: Segment) -> bool:
        return 0 <= segment.level <= self.depth and 0 <= segment.index < self.branching**segment.level

    def bounds(self, segment: Segment) -> tuple[float, float]:
        """(start, end) of `segment`: it holds start <= t < end (t <= end for the last one of its level)."""
        if not self.contains_segment(segment):
            raise ValueError(f"TimeTree: {segment} is not in a tree of depth {self.depth}")
        n = self.branching**segment.level
        return segment.index / n, (segment.index + 1) / n

    def leaf_indices(self, times: Float[Tensor, " N"]) -> Int[Tensor, " N"]:
        """Index of the leaf segment holding each time (clamped to [0, 1]), computed in float64."""
        n = self.num_leaves
        x = times.detach().to(torch.float64).clamp(0.0, 1.0)
        return torch.floor(x * n).to(torch.int64).clamp_max(n - 1)

    def path(self, t: float) -> list[Segment]:
        """The segments holding t, root to leaf: one per level."""
        if not math.isfinite(t):
            raise ValueError(f"TimeTree.path: t must be finite, got {t}")
        leaf = int(self.leaf_indices(torch.tensor([float(t)], dtype=torch.float64))[0])
        return [Segment(level, leaf // self._span(level)) for level in range(self.depth + 1)]

    def assign(
        self, starts: Float[Tensor, " N"], ends: Float[Tensor, " N"]
    ) -> tuple[Int[Tensor, " N"], Int[Tensor, " N"], Int[Tensor, " N"]]:
        """Where each interval [start, end] is stored: the deepest level whose segments are at least as long as
        the interval, and the first and last segment of that level that it touches (one or two: equal when it
        fits inside one).

        An interval that straddles a boundary is therefore stored twice, at the level that matches its length,
        instead of moving up to the coarse segment that happens to contain that boundary: the segments on any
        path stay the size that the content's density per unit of time sets, however long the video (a
        Gaussian living 3 frames across t = 0.5 would otherwise sit in the root and be loaded for every frame).

        Intervals are clamped to [0, 1] first. Empty intervals (start > end, or NaN) go to the root.

        Returns:
            (levels [N], first [N], last [N]) int64 on the inputs' device; last - first is 0 or 1.
        """
        empty = ~(starts <= ends)
        lo = torch.where(empty, torch.zeros_like(starts), starts).detach().to(torch.float64).clamp(0.0, 1.0)
        hi = torch.where(empty, torch.ones_like(ends), ends).detach().to(torch.float64).clamp(0.0, 1.0)
        leaf_lo, leaf_hi = self.leaf_indices(lo), self.leaf_indices(hi)
        levels = torch.zeros_like(leaf_lo)
        # Both conditions only get harder deeper down (segments shrink; floor(leaf / span) drifts apart), so
        # counting the levels that meet them gives the deepest one.
        for level in range(1, self.depth + 1):
            span = self._span(level)
            fits = (hi - lo <= 1.0 / self.branching**level) & (leaf_hi // span - leaf_lo // span <= 1)
            levels += fits.to(torch.int64)
        spans = self.branching ** (self.depth - levels)
        return levels, leaf_lo // spans, leaf_hi // spans

    def deepest_on_path(
        self, starts: Float[Tensor, " N"], ends: Float[Tensor, " N"], t: float
    ) -> Int[Tensor, " N"]:
        """For each interval [start, end], the deepest level whose segment on `path(t)` contains all of it (clamped
        to [0, 1]; the root contains every interval). Empty intervals (start > end, or NaN) get the root.

        This is where streamed training (`splat4d.hierarchy.training`) keeps a Gaussian of the path it is
        training: moving one down to such a segment leaves every image unchanged (outside that segment its
        temporal weight is below the cull threshold anyway), and moving one up is what lets a Gaussian whose
        lifespan has grown be drawn over all of it.

        Returns:
            levels [N] int64 on the inputs' device.
        """
        if not math.isfinite(t):
            raise ValueError(f"TimeTree.deepest_on_path: t must be finite, got {t}")
        empty = ~(starts <= ends)
        lo = torch.where(empty, torch.zeros_like(starts), starts).detach().to(torch.float64).clamp(0.0, 1.0)
        hi = torch.where(empty, torch.ones_like(ends), ends).detach().to(torch.float64).clamp(0.0, 1.0)
        leaf_lo, leaf_hi = self.leaf_indices(lo), self.leaf_indices(hi)
        leaf = int(self.leaf_indices(torch.tensor([float(t)], dtype=torch.float64))[0])
        levels = torch.zeros_like(leaf_lo)
        for level in range(1, self.depth + 1):  # containment only gets harder deeper down: count the levels
            span = self._span(level)
            inside = (leaf_lo // span == leaf // span) & (leaf_hi // span == leaf // span)
            levels += (inside & ~empty).to(torch.int64)
        return levels

    def _span(self, level: int) -> int:
        """Number of leaves under one segment of `level`."""
        self._check_level(level)
        return self.branching ** (self.depth - level)

    def _check_level(self, level: int) -> None:
        if not 0 <= level <= self.depth:
            raise ValueError(f"TimeTree: level {level} is outside 0..{self.depth}")
