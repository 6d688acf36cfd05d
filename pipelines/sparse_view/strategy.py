"""Densification for few views: 3DGS adaptive density control per field, plus FSGS unpooling, CoR-GS
co-pruning and floater pruning.

With 3 to 9 photos the image-plane gradients that drive 3DGS densification are few, so the scene stays as sparse
as its initial points. FSGS (Zhu et al. 2024) adds Gaussians by proximity instead: a Gaussian whose nearest
neighbours are far away gets new Gaussians at the midpoints between it and them ("unpooling"). CoR-GS (Zhang et
al. 2024) trains two fields that fit the photos equally well but differ where the photos do not constrain them,
and prunes the Gaussians of each field that have no counterpart in the other within a distance ("co-pruning").
Floater pruning removes Gaussians that sit well in front of the rendered surface in the training views that see
them: with few views, such translucent Gaussians explain one photo and cloud the others.

Each field keeps its own strategy state, in which the floater votes live alongside the density-control
accumulators (gsplat's clone, split and prune keep every per-Gaussian tensor of the state aligned, as do
`splat4d.strategy.ops.append` / `remove`). The strategy also keeps the partner field's means on the trainer's
learning-rate schedule, which the trainer applies to the parameter named `means` only.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from scipy.spatial import cKDTree
from torch import Tensor

from pipelines.sparse_view import fields
from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians
from splat4d.optim import set_lr
from splat4d.render import RenderOutput
from splat4d.strategy import DefaultStrategyConfig, Optimizers, StepContext, Strategy, StrategyState
from splat4d.strategy.base import Statistic, check_optimizers
from splat4d.strategy.ops import append, remove


@dataclass
class SparseStrategyConfig:
    """Density control for sparse views. Unpooling, co-pruning and floater pruning run in the refinement window of
    `densify` (from refine_start_iter to refine_stop_iter), each at its own interval."""

    densify: DefaultStrategyConfig = field(default_factory=DefaultStrategyConfig)
    """3DGS adaptive density control, run on each field separately."""
    unpool: bool = True
    """FSGS proximity-guided densification: add Gaussians between far-apart neighbours."""
    unpool_every: int = 100
    unpool_neighbours: int = 3
    """Neighbours of each Gaussian considered (FSGS's K)."""
    unpool_distance: float = 0.05
    """A Gaussian and a neighbour farther apart than this (× scene scale) get a Gaussian at their midpoint."""
    unpool_max: int = 10_000
    """At most this many Gaussians added per field and pass (the farthest pairs first)."""
    co_prune: bool = True
    """CoR-GS co-pruning (when the pipeline trains two fields): drop Gaussians without a counterpart."""
    co_prune_every: int = 200
    co_prune_sigmas: float = 3.0
    """A Gaussian whose nearest Gaussian of the other field is farther than this many of its own largest scale
    (clamped to the two distances below) is pruned: a counterpart elsewhere inside a large Gaussian's footprint, as
    after the random splits of densification, is not a disagreement."""
    co_prune_distance: float = 0.01
    """Least distance (× scene scale) that counts as unmatched."""
    co_prune_max_distance: float = 0.2
    """Distance (× scene scale) beyond which a Gaussian is unmatched however large it is (isolated floaters)."""
    floater_prune: bool = True
    """Prune Gaussians that lie in front of the rendered surface in most training views that see them."""
    floater_every: int = 200
    floater_margin: float = 0.2
    """'In front' means a centre depth below (1 − margin) × the rendered median depth at its pixel."""
    floater_fraction: float = 0.8
    """Pruned when in front in at least this fraction of the training steps that saw it..."""
    floater_min_seen: int = 3
    """...and seen in at least this many steps since the last pass."""

    def build(self) -> "SparseStrategy":
        return SparseStrategy(self)


class SparseStrategy(Strategy):
    """State: scene_scale and, per field prefix, the `densify` strategy's state plus the floater votes
    (floater_seen, floater_front: per-Gaussian step counts)."""

    def __init__(self, config: SparseStrategyConfig) -> None:
        self.config = config
        self.inner = config.densify.build()

    def init_state(self, scene_scale: float = 1.0) -> StrategyState:
        return {"scene_scale": scene_scale, "fields": {}}

    def _fields(self, gaussians: Gaussians, state: StrategyState) -> dict[str, StrategyState]:
        for prefix in fields.prefixes(gaussians):
            state["fields"].setdefault(prefix, self.inner.init_state(state["scene_scale"]))
        return state["fields"]

    def check(self, gaussians: Gaussians, optimizers: Optimizers) -> None:
        check_optimizers(gaussians, optimizers)
        for prefix in fields.prefixes(gaussians):
            self.inner.check(fields.field(gaussians, prefix), fields.field_optimizers(optimizers, prefix))

    def step_pre_backward(
        self, gaussians: Gaussians, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        partner_means = optimizers.get(fields.PARTNER + "means")
        if partner_means is not None:
            set_lr(partner_means, ctx.lr_means)
        for prefix, field_state in self._fields(gaussians, state).items():
            view = fields.field(gaussians, prefix)
            field_ctx = StepContext(ctx.step, ctx.info["fields"][prefix], ctx.lr_means)
            self.inner.step_pre_backward(
                view, fields.field_optimizers(optimizers, prefix), field_state, field_ctx
            )

    def statistics(self, gaussians: Gaussians, state: StrategyState) -> list[Statistic]:
        """Each field's density-control statistics, plus its floater votes (summed over views)."""
        out = []
        for prefix, field_state in self._fields(gaussians, state).items():
            out += self.inner.statistics(fields.field(gaussians, prefix), field_state)
            if self.config.floater_prune:
                out += [
                    Statistic(field_state, "floater_seen", "sum"),
                    Statistic(field_state, "floater_front", "sum"),
                ]
        return out

    def accumulate_view(self, gaussians: Gaussians, state: StrategyState, ctx: StepContext) -> None:
        for prefix, field_state in self._fields(gaussians, state).items():
            view, info = fields.field(gaussians, prefix), ctx.info["fields"][prefix]
            if self.config.floater_prune:
                _count_votes(field_state, info, len(view))
            self.inner.accumulate_view(view, field_state, StepContext(ctx.step, info, ctx.lr_means))

    def step_post_backward(
        self, gaussians: Gaussians, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        c = self.config
        per_field = self._fields(gaussians, state)
        for prefix, field_state in per_field.items():
            view, opts = fields.field(gaussians, prefix), fields.field_optimizers(optimizers, prefix)
            info = ctx.info["fields"][prefix]
            if c.floater_prune and not ctx.accumulated:
                _count_votes(field_state, info, len(view))
            field_ctx = StepContext(ctx.step, info, ctx.lr_means, accumulated=ctx.accumulated)
            self.inner.step_post_backward(view, opts, field_state, field_ctx)
            self._refine(view, opts, field_state, ctx.step, state["scene_scale"])
            fields.store(gaussians, prefix, view)
        if len(per_field) == 2 and c.co_prune and self._due(ctx.step, c.co_prune_every):
            self._co_prune(gaussians, optimizers, per_field, state["scene_scale"])

    def _due(self, step: int, every: int) -> bool:
        """Whether a pass with interval `every` runs at `step` (inside the refinement window, after its start)."""
        d = self.config.densify
        return d.refine_start_iter < step < d.refine_stop_iter and step % every == 0

    def _refine(
        self, view: Gaussians, opts: Optimizers, state: StrategyState, step: int, scale: float
    ) -> None:
        """Floater pruning and unpooling of one field, when due."""
        c = self.config
        if c.floater_prune and state.get("floater_seen") is not None and self._due(step, c.floater_every):
            _remove(view, opts, state, floaters(state["floater_seen"], state["floater_front"], c))
            state["floater_seen"].zero_()
            state["floater_front"].zero_()
        if c.unpool and self._due(step, c.unpool_every):
            src, dst = far_neighbour_pairs(view.means, c.unpool_neighbours, c.unpool_distance * scale)
            if len(src):
                append(view, opts, state, unpooled(view, src[: c.unpool_max], dst[: c.unpool_max]))

    def _co_prune(
        self,
        gaussians: Gaussians,
        optimizers: Optimizers,
        per_field: dict[str, StrategyState],
        scene_scale: float,
    ) -> None:
        c = self.config
        a, b = (fields.field(gaussians, prefix) for prefix in per_field)

        def reach(g: Gaussians) -> Tensor:
            size = c.co_prune_sigmas * g.scales.detach().amax(dim=-1)
            return size.clamp(c.co_prune_distance * scene_scale, c.co_prune_max_distance * scene_scale)

        masks = unmatched(a.means, b.means, reach(a)), unmatched(b.means, a.means, reach(b))
        for (prefix, field_state), view, mask in zip(per_field.items(), (a, b), masks, strict=True):
            _remove(view, fields.field_optimizers(optimizers, prefix), field_state, mask)
            fields.store(gaussians, prefix, view)


def _remove(view: Gaussians, opts: Optimizers, state: StrategyState, mask: Tensor) -> None:
    """Remove the masked Gaussians, unless that would leave the field empty."""
    if mask.any() and not mask.all():
        remove(view, opts, state, mask)


def _count_votes(state: StrategyState, info: dict, n: int) -> None:
    seen, front = info.get("floater_seen"), info.get("floater_front")
    if seen is None:
        return
    if state.get("floater_seen") is None or len(state["floater_seen"]) != n:
        state["floater_seen"] = torch.zeros(n, device=seen.device)
        state["floater_front"] = torch.zeros(n, device=seen.device)
    state["floater_seen"] += seen.float()
    state["floater_front"] += front.float()


# --- the three criteria, as pure functions ---------------------------------------------------------------------


def far_neighbour_pairs(
    means: Float[Tensor, "N 3"], k: int, distance: float
) -> tuple[Int[Tensor, " P"], Int[Tensor, " P"]]:
    """FSGS unpooling pairs: each Gaussian i with each of its `k` nearest neighbours j farther than `distance`,
    every unordered pair once, the farthest pairs first.

    Returns:
        (sources, destinations), indices into `means`.
    """
    n = len(means)
    empty = torch.zeros(0, dtype=torch.long, device=means.device)
    if n < 2:
        return empty, empty
    xyz = means.detach().cpu().double().numpy()
    dist, idx = cKDTree(xyz).query(xyz, k=min(k, n - 1) + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop each point itself
    src = np.repeat(np.arange(n), idx.shape[1])
    dst, d = idx.reshape(-1), dist.reshape(-1)
    far = d > distance
    lo, hi = np.minimum(src[far], dst[far]), np.maximum(src[far], dst[far])
    pairs, first = np.unique(np.stack([lo, hi], axis=1), axis=0, return_index=True)
    order = np.argsort(-d[far][first], kind="stable")
    pairs = torch.as_tensor(pairs[order], dtype=torch.long, device=means.device).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def unpooled(gaussians: Gaussians, src: Int[Tensor, " P"], dst: Int[Tensor, " P"]) -> dict[str, Tensor]:
    """Raw parameters of new Gaussians at the midpoints of the pairs (src, dst): the midpoint as mean, rotation,
    opacity and colour copied from the destination (as FSGS initialises them), and the destination's scales
    halved, as the gap the new Gaussian fills is half the pair's distance (copying them unchanged, as FSGS does,
    piles up large overlapping Gaussians in sparsely covered regions)."""
    with torch.no_grad():
        new = {name: gaussians.params[name][dst].clone() for name in fields.PARAMETERS}
        new["means"] = 0.5 * (gaussians.means[src] + gaussians.means[dst])
        new["log_scales"] -= math.log(2.0)
    return new


def unmatched(
    means: Float[Tensor, "N 3"], other: Float[Tensor, "M 3"], distance: float | Float[Tensor, " N"]
) -> Bool[Tensor, " N"]:
    """CoR-GS disagreement: True for each Gaussian of `means` whose nearest Gaussian in `other` is farther than
    `distance` (one value, or one per Gaussian)."""
    if len(other) == 0:
        return torch.ones(len(means), dtype=torch.bool, device=means.device)
    tree = cKDTree(other.detach().cpu().double().numpy())
    nearest, _ = tree.query(means.detach().cpu().double().numpy(), k=1)
    limit = distance.detach().cpu().double().numpy() if isinstance(distance, Tensor) else distance
    return torch.as_tensor(nearest > limit, device=means.device)


def floaters(
    seen: Float[Tensor, " N"], front: Float[Tensor, " N"], c: SparseStrategyConfig
) -> Bool[Tensor, " N"]:
    """Gaussians seen often enough and in front of the surface in at least `c.floater_fraction` of those views."""
    return (seen >= c.floater_min_seen) & (front >= c.floater_fraction * seen)


@torch.no_grad()
def floater_votes(
    means: Float[Tensor, "N 3"], out: RenderOutput, cameras: Cameras, margin: float
) -> tuple[Bool[Tensor, " N"], Bool[Tensor, " N"]]:
    """For one rendered training view (`cameras` holds one camera): which Gaussians it sees (projected inside the
    image, in front of the camera, on a pixel with a surface) and which of those lie in front of that surface
    (centre depth below (1 − margin) × the rendered median depth at the centre's pixel)."""
    uv = out.info["means2d"][0].detach()
    radii = out.info["radii"][0]
    visible = (radii > 0).reshape(len(means), -1).all(dim=-1)
    z = (cameras.T_cam_world[0, :3, :3] @ means.detach().T + cameras.T_cam_world[0, :3, 3:]).T[:, 2]
    u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height) & (z > 0)
    surface = out.median_depth[0, v.clamp(0, cameras.height - 1), u.clamp(0, cameras.width - 1), 0].detach()
    seen = visible & inside & (surface > 0)
    return seen, seen & (z < (1.0 - margin) * surface)
