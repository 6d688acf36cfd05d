"""From a flat `Gaussians4D` to a temporal hierarchy of per-segment Gaussian sets, and back.

Assignment rule (`TimeTree.assign`): each Gaussian goes to the deepest level whose segments are at least as long as
its lifespan (`splat4d.hierarchy.lifespan`, clamped to [0, 1]), into the one or two segments of that level that the
lifespan touches. Long-lived Gaussians (static background) therefore sit at the root, short-lived ones (fast motion)
at the leaves, and a short-lived Gaussian whose lifespan straddles a segment boundary is stored in both neighbours
at its own level, rather than in whichever coarse segment holds that boundary in its interior (which for the
boundary t = 0.5 is the root, loaded for every frame). Each segment holds its *primary* Gaussians first (those whose
lifespan starts in it) and then the copies; `flatten` keeps only the primaries, so `flatten(build(g))` is a
permutation of g. A Gaussian with an empty lifespan (never drawn) goes to the root.

Why the renderer sees the same Gaussians: if w(t) >= threshold then t lies in the Gaussian's lifespan, so the
segment of the Gaussian's level that holds t overlaps the lifespan and holds a copy; that segment is the one of its
level on `path(t)`, and no other segment of that level is. So concatenating the segments on `path(t)` gives every
Gaussian drawn at t exactly once (plus some that are culled), and `render` of that concatenation equals `render` of
the flat scene at t. The tree holds depth + 1 segments per time; each holds the Gaussians of one lifespan scale that
overlap it, so for content of constant density per unit of time their sizes do not grow with the video's length.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from torch import Tensor

from splat4d.gaussians import Gaussians4D
from splat4d.hierarchy.lifespan import DEFAULT_THRESHOLD, lifespans
from splat4d.hierarchy.tree import Segment, TimeTree


@dataclass
class Hierarchy:
    """Per-segment Gaussian sets of one 4D scene, all in memory."""

    tree: TimeTree
    segments: dict[Segment, Gaussians4D]
    """Non-empty segments only, in the tree's canonical order (root first, then level by level)."""
    template: Gaussians4D
    """Zero Gaussians with the scene's parameter names and trailing shapes: what an empty concatenation gives."""
    threshold: float = DEFAULT_THRESHOLD
    """Temporal cull threshold the lifespans were computed for; rendering must cull at this or above."""
    primary: dict[Segment, int] = field(default_factory=dict)
    """Per segment, how many of its leading Gaussians are primaries (the rest are copies of primaries of the
    segment before it, at the same level); a segment missing here holds primaries only."""

    @property
    def time_period(self) -> float:
        return self.template.time_period

    def __len__(self) -> int:
        """Number of distinct Gaussians (copies not counted)."""
        return sum(self.primary_count(s) for s in self.segments)

    def primary_count(self, segment: Segment) -> int:
        return self.primary.get(segment, len(self.segments[segment]))

    def counts(self) -> dict[Segment, int]:
        """Gaussians stored per segment, copies included."""
        return {segment: len(g) for segment, g in self.segments.items()}

    def segments_at(self, t: float) -> list[Segment]:
        """The non-empty segments on `path(t)`, root to leaf."""
        return [s for s in self.tree.path(t) if s in self.segments]

    def gaussians_at(self, t: float) -> Gaussians4D:
        """Every Gaussian that can be drawn at t: the segments on `path(t)`, concatenated root to leaf."""
        return concat([self.segments[s] for s in self.segments_at(t)], self.template)


def assign(
    gaussians: Gaussians4D, tree: TimeTree, threshold: float = DEFAULT_THRESHOLD
) -> tuple[Int[Tensor, " N"], Int[Tensor, " N"], Int[Tensor, " N"]]:
    """The level and the first and last segment of each Gaussian under the assignment rule (module docstring).

    Returns:
        (levels [N], first [N], last [N]) int64, on the scene's device.
    """
    starts, ends = lifespans(gaussians, threshold)
    return tree.assign(starts, ends)


@torch.no_grad()
def build(
    gaussians: Gaussians4D, depth: int, branching: int = 2, threshold: float = DEFAULT_THRESHOLD
) -> Hierarchy:
    """Split `gaussians` into the segments of a `TimeTree(depth, branching)`.

    Each segment keeps its primaries and then its copies, each group in the original order; parameters are
    copied (detached).
    """
    tree = TimeTree(depth, branching)
    levels, first, last = (x.cpu() for x in assign(gaussians, tree, threshold))
    n = len(levels)
    copied = torch.nonzero(last != first).squeeze(1)
    # One entry per stored Gaussian: primaries in their first segment, copies in their last.
    ids = torch.cat([torch.arange(n), copied])
    seg_levels = torch.cat([levels, levels[copied]])
    seg_indices = torch.cat([first, last[copied]])
    is_copy = torch.cat([torch.zeros(n, dtype=torch.int64), torch.ones(len(copied), dtype=torch.int64)])
    # Sort by canonical segment position (`TimeTree.canonical_index`), primaries before copies, stable.
    keys = (branching**seg_levels - 1) // (branching - 1) + seg_indices
    order = torch.argsort(keys * 2 + is_copy, stable=True)
    _, counts = torch.unique_consecutive(keys[order], return_counts=True)
    segments, primary = {}, {}
    for rows in torch.split(order, counts.tolist()):
        segment = Segment(int(seg_levels[rows[0]]), int(seg_indices[rows[0]]))
        segments[segment] = select(gaussians, ids[rows].to(gaussians.means4.device))
        primary[segment] = int((is_copy[rows] == 0).sum())
    return Hierarchy(tree, segments, empty_like(gaussians), threshold, primary)


def flatten(hierarchy: Hierarchy) -> Gaussians4D:
    """All Gaussians of `hierarchy` in one scene, copies left out, in canonical segment order (a permutation of
    the built scene)."""
    parts = [
        select(g, torch.arange(hierarchy.primary_count(s), device=g.means4.device))
        for s, g in hierarchy.segments.items()
    ]
    return concat(parts, hierarchy.template)


@torch.no_grad()
def select(gaussians: Gaussians4D, ids: Int[Tensor, " K"]) -> Gaussians4D:
    """The Gaussians `ids` of `gaussians`, as a new scene with copied (detached) parameters."""
    return Gaussians4D({k: v.detach()[ids] for k, v in gaussians.params.items()}, gaussians.time_period)


def empty_like(gaussians: Gaussians4D) -> Gaussians4D:
    """A scene of zero Gaussians with the parameter names, trailing shapes, dtypes and device of `gaussians`."""
    return select(gaussians, torch.zeros(0, dtype=torch.int64, device=gaussians.means4.device))


@torch.no_grad()
def concat(parts: Sequence[Gaussians4D], template: Gaussians4D) -> Gaussians4D:
    """One scene holding `parts` in order; `template` (any scene of the same layout) gives the empty result.

    A single part is not copied: the result shares its parameter storage.

    Raises:
        ValueError: when a part's parameter names, trailing shapes or time period differ from the template's.
    """
    for part in parts:
        _check_same_layout(part, template)
    if not parts:
        return empty_like(template)
    if len(parts) == 1:
        return Gaussians4D({k: v.detach() for k, v in parts[0].params.items()}, template.time_period)
    return Gaussians4D(
        {k: torch.cat([p.params[k].detach() for p in parts]) for k in template.params},
        template.time_period,
    )


def _check_same_layout(part: Gaussians4D, template: Gaussians4D) -> None:
    layout = {k: tuple(v.shape[1:]) for k, v in part.params.items()}
    expected = {k: tuple(v.shape[1:]) for k, v in template.params.items()}
    if layout != expected or part.time_period != template.time_period:
        raise ValueError(
            f"concat: a part has parameters {layout} and time_period {part.time_period}, expected {expected} "
            f"and {template.time_period}"
        )
