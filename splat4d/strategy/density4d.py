"""Adaptive density control for 4D Gaussians (`Gaussians4D`): 3DGS's clone / split / prune, in space *and* time.

As in 4DGS (Yang et al. 2024), a Gaussian whose image-plane gradient is high, averaged over the views in which it
was rendered, grows: small ones (spatial scale below `grow_scale3d` × scene scale, temporal scale below
`grow_scale_t`) are cloned, the others split into two drawn from their own 4D distribution — so a Gaussian that
lives too long is divided in time as a too-large one is divided in space — with all four scales shrunk by 1.6.
Transparent Gaussians (opacity below `prune_opa`) and, after the first opacity reset, spatially huge ones are
pruned; opacities are reset periodically. With `split_in_time` off (the dynamic pipeline's default), growth is in
space only and every Gaussian keeps its lifespan: for one moving camera, dividing a still background in time leaves
each piece seen by a few neighbouring frames only.

Hand-written rather than gsplat's DefaultStrategy, whose split samples 3D means from 3D scales and quaternions:
here the parameters are `means4`, `log_scales4` and a 4D rotation, and only the Gaussians kept at the rendered
time (`info["kept_ids"]`) have image-plane gradients.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from splat4d.gaussians import Gaussians4D
from splat4d.strategy.base import Optimizers, Statistic, StepContext, Strategy, StrategyState
from splat4d.strategy.ops import edit_rows


@dataclass
class Density4DConfig:
    """4D adaptive density control; the spatial thresholds are those of 3DGS."""

    prune_opa: float = 0.005
    """Gaussians with opacity below this are pruned; opacity resets clamp to twice this."""
    grow_grad2d: float = 0.0002
    """Mean image-plane gradient (NDC units) above which a Gaussian grows."""
    grow_scale3d: float = 0.01
    """Largest spatial scale, relative to the scene scale, up to which a growing Gaussian is cloned."""
    grow_scale_t: float = 0.05
    """Temporal scale (normalised time) up to which a growing Gaussian is cloned; longer-lived ones are split
    (when `split_in_time`)."""
    split_in_time: bool = True
    """Growth divides Gaussians in time as well as space (4DGS): a split draws both children from the 4D
    distribution and shrinks all four scales, and a long-lived Gaussian is split rather than cloned. False: growth
    is in space only — the children are drawn from the Gaussian's 3D slice at its temporal mean and keep its
    lifespan, and `grow_scale_t` plays no part — so a Gaussian of a still background stays visible to all the
    views of its time span (one moving camera sees each moment once)."""
    prune_scale3d: float = 0.1
    """Largest spatial scale, relative to the scene scale, above which a Gaussian is pruned (from
    `prune_scale_after` on)."""
    prune_scale_after: int | None = None
    """Step after which spatially huge Gaussians are pruned too; None: after the first opacity reset
    (`reset_every`), as 3DGS does. Streamed training (`splat4d.hierarchy.training`), which never resets, sets it to
    the step of the first reset it skips, so that its scenes are pruned by size as flat training's are."""
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    reset_every: int = 3000
    refine_every: int = 100
    max_gaussians: int = 2_000_000
    """Growth stops at this many Gaussians (memory guard)."""
    verbose: bool = False

    def build(self) -> "Density4DStrategy":
        return Density4DStrategy(self)


SPLIT_SHRINK = 1.6
"""Scales of the two halves of a split Gaussian: the original's divided by this (3DGS: 0.8 × 2 children)."""


class Density4DStrategy(Strategy):
    """State: grad2d and count (per Gaussian) and scene_scale."""

    def __init__(self, config: Density4DConfig) -> None:
        self.config = config

    def init_state(self, scene_scale: float = 1.0) -> StrategyState:
        return {"grad2d": None, "count": None, "scene_scale": scene_scale}

    def step_pre_backward(
        self, gaussians: Gaussians4D, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        if "kept_ids" not in ctx.info:
            raise ValueError(
                "Density4DStrategy needs a 4D render (info['kept_ids']); is the scene Gaussians4D?"
            )
        ctx.info["means2d"].retain_grad()

    def statistics(self, gaussians: Gaussians4D, state: StrategyState) -> list[Statistic]:
        return [Statistic(state, "grad2d", "sum"), Statistic(state, "count", "sum")]

    def accumulate_view(self, gaussians: Gaussians4D, state: StrategyState, ctx: StepContext) -> None:
        if ctx.step < self.config.refine_stop_iter:
            self.accumulate(len(gaussians), state, ctx.info)

    def step_post_backward(
        self, gaussians: Gaussians4D, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        c = self.config
        if ctx.step >= c.refine_stop_iter:
            return
        if not ctx.accumulated:
            self.accumulate(len(gaussians), state, ctx.info)
        if ctx.step > c.refine_start_iter and ctx.step % c.refine_every == 0:
            self.refine(gaussians, optimizers, state, ctx.step)
        if ctx.step > 0 and ctx.step % c.reset_every == 0:
            value = 2.0 * c.prune_opa
            limit = math.log(value / (1.0 - value))
            edit_rows(
                gaussians, optimizers,
                lambda name, x: x.clamp_max(limit) if name == "opacity_logits" else x,
                lambda name, x: torch.zeros_like(x) if name == "opacity_logits" else x,
            )  # fmt: skip

    def refine(
        self,
        gaussians: Gaussians4D,
        optimizers: Optimizers,
        state: StrategyState,
        step: int,
        first_eligible: int = 0,
    ) -> tuple[int, int]:
        """Grow and prune on the gradients accumulated since the last refinement, then start accumulating afresh
        (what `step_post_backward` does every `refine_every` steps; a trainer with its own schedule, such as
        `splat4d.hierarchy.training`, calls it directly). Returns (grown, pruned).

        Only Gaussians from row `first_eligible` on may grow or be pruned: rows [0, first_eligible) come out
        unchanged and in place (growth appends rows and removals only touch rows after them)."""
        grown = self._grow(gaussians, optimizers, state, first_eligible)
        pruned = self._prune(gaussians, optimizers, state, step, first_eligible)
        if self.config.verbose:
            print(f"step {step}: +{grown} -{pruned} → {len(gaussians)} Gaussians")
        state["grad2d"] = state["count"] = None
        return grown, pruned

    def accumulate(self, n: int, state: StrategyState, info: dict) -> None:
        """Add this step's image-plane gradients (of the render `info`, after backward) to the running means."""
        means2d = info["means2d"]
        if means2d.grad is None:
            raise ValueError(
                "Density4DStrategy: means2d has no gradient; call step_pre_backward before backward"
            )
        grads = means2d.grad.detach().clone()  # [C, K, 2]
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        radii = info["radii"]
        visible = (radii > 0).all(-1) if radii.dim() == 3 else radii > 0  # [C, K]
        ids = info["kept_ids"].to(grads.device)[None].expand_as(visible)[visible]
        if state["grad2d"] is None or state["grad2d"].shape[0] != n:
            state["grad2d"] = torch.zeros(n, device=grads.device)
            state["count"] = torch.zeros(n, device=grads.device)
        state["grad2d"].index_add_(0, ids, grads.norm(dim=-1)[visible])
        state["count"].index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))

    def _grow(
        self, gaussians: Gaussians4D, optimizers: Optimizers, state: StrategyState, first_eligible: int = 0
    ) -> int:
        c = self.config
        if state["grad2d"] is None or len(gaussians) >= c.max_gaussians:
            return 0
        avg = state["grad2d"] / state["count"].clamp_min(1.0)
        high = avg > c.grow_grad2d
        high[:first_eligible] = False
        scales4 = gaussians.scales4.detach()
        small = scales4[:, :3].amax(-1) <= c.grow_scale3d * state["scene_scale"]
        if c.split_in_time:
            small &= scales4[:, 3] <= c.grow_scale_t
        room = c.max_gaussians - len(gaussians)
        clone = _first(high & small, room)
        split = _first(high & ~small, max(room - int(clone.sum()), 0))
        if clone.any():
            duplicate(gaussians, optimizers, clone)
            split = torch.cat([split, torch.zeros(int(clone.sum()), dtype=torch.bool, device=split.device)])
        if split.any():
            split_4d(gaussians, optimizers, split, in_time=c.split_in_time)
        return int(clone.sum()) + int(split.sum())

    def _prune(
        self,
        gaussians: Gaussians4D,
        optimizers: Optimizers,
        state: StrategyState,
        step: int,
        first_eligible: int = 0,
    ) -> int:
        c = self.config
        with torch.no_grad():
            prune = gaussians.opacities < c.prune_opa
            if step > (c.reset_every if c.prune_scale_after is None else c.prune_scale_after):
                prune |= gaussians.scales4[:, :3].amax(-1) > c.prune_scale3d * state["scene_scale"]
            prune[:first_eligible] = False
        if prune.any():
            remove(gaussians, optimizers, prune)
        return int(prune.sum())


def _first(mask: Tensor, k: int) -> Tensor:
    """`mask` with only its first `k` True entries kept."""
    if int(mask.sum()) <= k:
        return mask
    out = torch.zeros_like(mask)
    out[torch.nonzero(mask)[:k, 0]] = True
    return out


def duplicate(gaussians: Gaussians4D, optimizers: Optimizers, mask: Tensor) -> None:
    """Append a copy of the masked Gaussians (their optimizer moments start at zero)."""
    edit_rows(
        gaussians, optimizers,
        lambda _, x: torch.cat([x, x[mask]]),
        lambda _, s: torch.cat([s, torch.zeros_like(s[mask])]),
    )  # fmt: skip


def remove(gaussians: Gaussians4D, optimizers: Optimizers, mask: Tensor) -> None:
    keep = ~mask
    edit_rows(gaussians, optimizers, lambda _, x: x[keep], lambda _, s: s[keep])


def _unpack_covars4(packed: Tensor) -> Tensor:
    """[N, 10] (xx, xy, xz, xt, yy, yz, yt, zz, zt, tt) → [N, 4, 4]."""
    rows, cols = torch.triu_indices(4, 4)
    full = packed.new_zeros(packed.shape[0], 4, 4)
    full[:, rows, cols] = packed
    full[:, cols, rows] = packed
    return full


def split_4d(gaussians: Gaussians4D, optimizers: Optimizers, mask: Tensor, in_time: bool = True) -> None:
    """Replace each masked Gaussian by two drawn from its 4D distribution, all four scales divided by 1.6; with
    `in_time` False, two drawn from its 3D slice at its temporal mean (the conditional covariance
    Σ_xyz − Σ_xt Σ_tt⁻¹ Σ_tx), the three spatial scales divided and the temporal one kept."""
    with torch.no_grad():
        cov = _unpack_covars4(gaussians.covars4[mask].detach().double())
        if not in_time:
            cross = cov[:, :3, 3:]  # [M, 3, 1]
            sliced = cov[:, :3, :3] - cross @ cross.transpose(1, 2) / cov[:, 3:, 3:].clamp_min(1e-20)
            cov = torch.zeros_like(cov)
            cov[:, :3, :3] = sliced
        # A square root by eigendecomposition, not Cholesky: covariances built in float32 from scales that span
        # many orders of magnitude can come out (slightly) indefinite, which Cholesky refuses mid-training.
        eigvals, eigvecs = torch.linalg.eigh(cov)
        root = eigvecs * eigvals.clamp_min(0.0).sqrt()[:, None, :]  # root @ root.T = cov, negatives clamped
        samples = (root[None] @ torch.randn(2, *cov.shape[:-1], 1, dtype=cov.dtype, device=cov.device))[
            ..., 0
        ]
        offsets = samples.to(gaussians.params["means4"].dtype)  # [2, M, 4]
    keep = ~mask

    def param_fn(name: str, x: Tensor) -> Tensor:
        children = x[mask].repeat(2, *([1] * (x.dim() - 1)))
        if name == "means4":
            children = children + offsets.reshape(-1, 4)
        elif name == "log_scales4":
            shrink = children.new_tensor(
                [math.log(SPLIT_SHRINK)] * 3 + [math.log(SPLIT_SHRINK) if in_time else 0]
            )
            children = children - shrink
        return torch.cat([x[keep], children])

    def state_fn(_: str, s: Tensor) -> Tensor:
        return torch.cat([s[keep], torch.zeros_like(s[mask]).repeat(2, *([1] * (s.dim() - 1)))])

    edit_rows(gaussians, optimizers, param_fn, state_fn)
