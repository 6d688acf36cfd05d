"""3D Gaussian Splatting as Markov Chain Monte Carlo (Kheradmand et al. 2024): move dead (near-transparent)
Gaussians onto live ones, add Gaussians sampled by opacity up to a cap, and perturb positions with noise that
fades as opacity grows.

Wraps `gsplat.strategy.MCMCStrategy`. On the CPU its two CUDA-only helpers are replaced, for the duration of each
call, by the torch versions in `splat4d.strategy.ops`. The paper's opacity and scale regularisers are part of
the method; `regularization_losses` returns them for the trainer to add to the loss.
"""

from dataclasses import dataclass

import gsplat.strategy
from torch import Tensor

from splat4d.gaussians import Gaussians
from splat4d.strategy.base import Optimizers, StepContext, Strategy, StrategyState
from splat4d.strategy.gsplat_adapter import gsplat_view
from splat4d.strategy.ops import binomial_table, torch_ops_for_gsplat

# Largest number of copies one relocation handles; gsplat's MCMCStrategy uses the same table size.
N_MAX_COPIES = 51


@dataclass
class MCMCStrategyConfig:
    """3DGS-as-MCMC; defaults are gsplat's (and the paper's regulariser weights)."""

    cap_max: int = 1_000_000
    """Largest number of Gaussians; each refinement adds 5% until it is reached."""
    noise_lr: float = 5e5
    """Position noise scale, multiplied by the current means learning rate."""
    refine_start_iter: int = 500
    """Relocate and add only after this step."""
    refine_stop_iter: int = 25_000
    """Relocate and add only before this step (the position noise continues)."""
    refine_every: int = 100
    """Relocate and add every this many steps."""
    min_opacity: float = 0.005
    """Gaussians at or below this opacity are dead and get relocated."""
    opacity_reg: float = 0.01
    """Weight of the mean opacity, added to the loss (L1 opacity regulariser)."""
    scale_reg: float = 0.01
    """Weight of the mean scale, added to the loss (L1 scale regulariser)."""
    gsplat_cuda_ops: bool = True
    """On a GPU, use gsplat's CUDA kernels for covariances and relocation (JIT-built by gsplat on first use);
    False uses splat4d's torch versions on every device."""
    verbose: bool = False
    """Print how many Gaussians each refinement relocates and adds."""

    def build(self) -> "MCMCStrategy":
        return MCMCStrategy(self)


class MCMCStrategy(Strategy):
    """3DGS-as-MCMC through gsplat's MCMCStrategy.

    State: binoms, the binomial table relocation reads (no per-Gaussian state).
    """

    def __init__(self, config: MCMCStrategyConfig) -> None:
        self.config = config
        c = config
        self._gsplat = gsplat.strategy.MCMCStrategy(
            cap_max=c.cap_max,
            noise_lr=c.noise_lr,
            refine_start_iter=c.refine_start_iter,
            refine_stop_iter=c.refine_stop_iter,
            refine_every=c.refine_every,
            min_opacity=c.min_opacity,
            verbose=c.verbose,
        )

    def init_state(self, scene_scale: float = 1.0) -> StrategyState:
        """{"binoms": the binomial table}; MCMC has no scene-relative thresholds, so scene_scale is unused."""
        return {"binoms": binomial_table(N_MAX_COPIES)}

    def check(self, gaussians: Gaussians, optimizers: Optimizers) -> None:
        super().check(gaussians, optimizers)
        with gsplat_view(gaussians, optimizers) as (params, opts):
            self._gsplat.check_sanity(params, opts)

    def accumulate_view(self, gaussians: Gaussians, state: StrategyState, ctx: StepContext) -> None:
        """Nothing: MCMC decides from opacities alone, not from per-view statistics."""

    def step_post_backward(
        self, gaussians: Gaussians, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        on_gpu = gaussians.means.is_cuda and self.config.gsplat_cuda_ops
        with torch_ops_for_gsplat(enabled=not on_gpu), gsplat_view(gaussians, optimizers) as (params, opts):
            self._gsplat.step_post_backward(params, opts, state, ctx.step, ctx.info, lr=ctx.lr_means)

    def regularization_losses(self, gaussians: Gaussians) -> dict[str, Tensor]:
        """{"opacity_reg": opacity_reg · mean opacity, "scale_reg": scale_reg · mean scale} (paper, sec. 4)."""
        return {
            "opacity_reg": self.config.opacity_reg * gaussians.opacities.abs().mean(),
            "scale_reg": self.config.scale_reg * gaussians.scales.abs().mean(),
        }
