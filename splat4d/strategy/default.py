"""Adaptive density control of 3DGS (Kerbl et al. 2023): clone small and split large Gaussians whose
image-plane gradient is high, prune transparent and oversized ones, and periodically reset opacities.

Wraps `gsplat.strategy.DefaultStrategy`, which works with any renderer that reports means2d (retained in the
graph), radii, width, height, n_cameras and gaussian_ids, as `splat4d.render` does. gsplat's single
`step_post_backward` is taken in its two halves (gsplat 1.5's `_update_state` per view, then `_grow_gs` and
`_prune_gs` once per step), so that a step of several views, or of several ranks, refines once on all of them.
"""

from dataclasses import asdict, dataclass

import gsplat.strategy

from splat4d.gaussians import Gaussians
from splat4d.strategy.base import Optimizers, Statistic, StepContext, Strategy, StrategyState
from splat4d.strategy.gsplat_adapter import gsplat_view
from splat4d.strategy.ops import reset_opacities


@dataclass
class DefaultStrategyConfig:
    """Adaptive density control; defaults are those of 3DGS (and of gsplat's DefaultStrategy)."""

    prune_opa: float = 0.005
    """Gaussians with opacity below this are pruned; opacity resets clamp to twice this."""
    grow_grad2d: float = 0.0002
    """Mean image-plane gradient (in NDC units) above which a Gaussian is cloned or split. With absgrad, AbsGS
    suggests about 0.0008."""
    grow_scale3d: float = 0.01
    """Largest scale, relative to the scene scale, at or below which a growing Gaussian is cloned (above: split)."""
    grow_scale2d: float = 0.05
    """Screen-space radius, relative to the image size, above which a Gaussian is split (only before
    refine_scale2d_stop_iter)."""
    prune_scale3d: float = 0.1
    """Largest scale, relative to the scene scale, above which a Gaussian is pruned (after the first reset)."""
    prune_scale2d: float = 0.15
    """Screen-space radius, relative to the image size, above which a Gaussian is pruned (only before
    refine_scale2d_stop_iter)."""
    refine_scale2d_stop_iter: int = 0
    """Use the screen-space criteria until this step; 0 disables them (as 3DGS effectively does)."""
    refine_start_iter: int = 500
    """Refine only after this step."""
    refine_stop_iter: int = 15_000
    """Stop refining (and resetting opacities) at this step."""
    reset_every: int = 3000
    """Reset opacities every this many steps."""
    refine_every: int = 100
    """Refine every this many steps."""
    pause_refine_after_reset: int = 0
    """Skip refinement for this many steps after an opacity reset (e.g. the number of training images)."""
    absgrad: bool = False
    """Grow by absolute image-plane gradients (AbsGS, Ye et al. 2024); render with `RenderSettings(absgrad=True)`."""
    revised_opacity: bool = False
    """Split with the opacity correction of Rota Bulò et al. 2024 (arXiv:2404.06109)."""
    verbose: bool = False
    """Print how many Gaussians each refinement adds and removes."""

    def build(self) -> "DefaultStrategy":
        return DefaultStrategy(self)


class DefaultStrategy(Strategy):
    """3DGS adaptive density control through gsplat's DefaultStrategy.

    State: grad2d and count (per Gaussian, created by the first view accumulated; radii too with
    refine_scale2d_stop_iter > 0) and scene_scale.
    """

    def __init__(self, config: DefaultStrategyConfig) -> None:
        self.config = config
        self._gsplat = gsplat.strategy.DefaultStrategy(**asdict(config), key_for_gradient="means2d")

    def init_state(self, scene_scale: float = 1.0) -> StrategyState:
        return self._gsplat.initialize_state(scene_scale=scene_scale)

    def check(self, gaussians: Gaussians, optimizers: Optimizers) -> None:
        super().check(gaussians, optimizers)
        with gsplat_view(gaussians, optimizers) as (params, opts):
            self._gsplat.check_sanity(params, opts)

    def step_pre_backward(
        self, gaussians: Gaussians, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        _check_info(gaussians, ctx)
        with gsplat_view(gaussians, optimizers) as (params, opts):
            self._gsplat.step_pre_backward(params, opts, state, ctx.step, ctx.info)

    def statistics(self, gaussians: Gaussians, state: StrategyState) -> list[Statistic]:
        """grad2d and count (summed over views), and radii (maxed) when the screen-space criteria are on."""
        out = [Statistic(state, "grad2d", "sum"), Statistic(state, "count", "sum")]
        if self.config.refine_scale2d_stop_iter > 0:
            out.append(Statistic(state, "radii", "max"))
        return out

    def accumulate_view(self, gaussians: Gaussians, state: StrategyState, ctx: StepContext) -> None:
        c = self.config
        if ctx.step >= c.refine_stop_iter:
            return
        means2d = ctx.info["means2d"]
        if c.absgrad and getattr(means2d, "absgrad", None) is None:
            raise ValueError("DefaultStrategy(absgrad=True) needs a render with RenderSettings(absgrad=True)")
        if means2d.grad is None and not c.absgrad:
            raise ValueError(
                "DefaultStrategy: means2d has no gradient; call step_pre_backward before backward"
            )
        # gsplat reads only the number of Gaussians from `params` here (to create the accumulators).
        self._gsplat._update_state({"means": gaussians.params["means"]}, state, ctx.info, packed=False)

    def step_post_backward(
        self, gaussians: Gaussians, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        c = self.config
        if ctx.step >= c.refine_stop_iter:
            return
        if not ctx.accumulated:
            self.accumulate_view(gaussians, state, ctx)
        step = ctx.step
        due = step > c.refine_start_iter and step % c.refine_every == 0
        if due and step % c.reset_every >= c.pause_refine_after_reset and state["grad2d"] is not None:
            with gsplat_view(gaussians, optimizers) as (params, opts):
                n_dupli, n_split = self._gsplat._grow_gs(params, opts, state, step)
                n_prune = self._gsplat._prune_gs(params, opts, state, step)
            if c.verbose:
                print(f"step {step}: {n_dupli} cloned, {n_split} split, {n_prune} pruned → {len(gaussians)}")
            for key in ("grad2d", "count", "radii"):
                if state.get(key) is not None:
                    state[key].zero_()
        # gsplat 1.5.3 tests `step % reset_every == 0 & step > 0`, which chains to `... and 0 > 0` and never
        # resets, so the reset is done here.
        if ctx.step > 0 and ctx.step % c.reset_every == 0:
            reset_opacities(gaussians, optimizers, state, value=2.0 * c.prune_opa)


def _check_info(gaussians: Gaussians, ctx: StepContext) -> None:
    means2d = ctx.info.get("means2d")
    if means2d is None or means2d.shape[-2] != len(gaussians):
        shape = None if means2d is None else tuple(means2d.shape)
        raise ValueError(
            f"strategy: info['means2d'] {shape} must be [C, N, 2] for the scene's N = {len(gaussians)} Gaussians"
        )
