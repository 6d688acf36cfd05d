"""Optimisers and learning-rate schedules: one Adam per parameter tensor (what densification strategies expect).

Learning rates follow 3DGS (Kerbl et al. 2023): the means' rate scales with the scene's size and decays
exponentially to 1% over the run; the others are constant. Schedules are pure functions of the step, so a resumed
run sets exactly the rates an uninterrupted one would.
"""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass
class OptimConfig:
    """Per-parameter Adam learning rates."""

    means_lr: float = 1.6e-4
    """Initial learning rate of the means, in units of the scene scale."""
    means_lr_final_factor: float = 0.01
    """The means' rate decays exponentially to this fraction of its initial value by the last step."""
    log_scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacity_logits_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    """Higher SH bands learn 20× slower than the base colour (3DGS)."""
    eps: float = 1e-15
    """Adam epsilon; tiny, as gradients of Gaussian parameters are small."""

    scheduled_param: ClassVar[str] = "means"
    """The parameter whose rate follows `means_lr_at` (the others keep their initial rate)."""

    def initial_lrs(self, scene_scale: float) -> dict[str, float]:
        return {
            "means": self.means_lr * scene_scale,
            "log_scales": self.log_scales_lr,
            "quats": self.quats_lr,
            "opacity_logits": self.opacity_logits_lr,
            "sh0": self.sh0_lr,
            "shN": self.shN_lr,
        }

    def means_lr_at(self, step: int, total_steps: int, scene_scale: float) -> float:
        """Exponential decay from means_lr × scene_scale at step 0 to the final factor at `total_steps`."""
        progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
        return self.means_lr * scene_scale * math.exp(progress * math.log(self.means_lr_final_factor))


@dataclass
class Optim4DConfig(OptimConfig):
    """Per-parameter Adam learning rates of a 4D scene (`Gaussians4D`). The 4D means (x, y, z, t) share one rate,
    scaled by the scene size and decayed like the 3D means': with times normalised to [0, 1], a scene a few units
    across moves its Gaussians in time by about the same fraction of the sequence as of the scene per step."""

    rotation_lr: float = 1e-3
    """Left/right quaternions or rotors of the 4D rotation."""

    scheduled_param: ClassVar[str] = "means4"

    def initial_lrs(self, scene_scale: float) -> dict[str, float]:
        return {
            "means4": self.means_lr * scene_scale,
            "log_scales4": self.log_scales_lr,
            "quats_l": self.rotation_lr,
            "quats_r": self.rotation_lr,
            "rotors": self.rotation_lr,
            "opacity_logits": self.opacity_logits_lr,
            "sh0": self.sh0_lr,
            "shN": self.shN_lr,
        }


def build_optimizers(
    params: torch.nn.ParameterDict,
    cfg: OptimConfig,
    scene_scale: float,
    adam: type[torch.optim.Optimizer] = torch.optim.Adam,
) -> dict[str, torch.optim.Optimizer]:
    """One Adam per parameter, keyed by the parameter's name (the layout gsplat-style strategies edit); `adam` is
    torch's, or `RowAdam` for streamed training.

    Parameters without a rate in `cfg` (e.g. extra per-Gaussian features of a pipeline) are an error rather than
    silently frozen.
    """
    lrs = cfg.initial_lrs(scene_scale)
    unknown = set(params.keys()) - lrs.keys()
    if unknown:
        raise ValueError(f"build_optimizers: no learning rate for parameters {sorted(unknown)}")
    return {
        name: adam([{"params": [param], "lr": lrs[name], "name": name}], eps=cfg.eps)
        for name, param in params.items()
    }


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class RowAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015) whose bias correction counts steps per row (per Gaussian) rather than per tensor.

    Streamed training (`splat4d.hierarchy.training`) trains a concatenation of segments that joined training at
    different times: with one step count for the tensor, a segment first trained at step 5,000 would get no bias
    correction on its fresh (zero) moments and take steps several times larger than Adam's first ones. Here the
    state holds `exp_avg`, `exp_avg_sq` and `row_step` ([N], steps taken by each row), all with the parameter's
    rows first, so the densification strategies' row edits (`splat4d.strategy`) keep them aligned: a new row
    starts at step 0 like its zero moments. With equal row steps it computes exactly torch's Adam (no weight
    decay, no amsgrad), up to rounding."""

    def __init__(
        self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        if closure is not None:
            raise ValueError("RowAdam.step does not take a closure")
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["row_step"] = torch.zeros(p.shape[0], device=p.device)
                m, v, steps = state["exp_avg"], state["exp_avg_sq"], state["row_step"]
                steps += 1
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                shape = (-1,) + (1,) * (p.dim() - 1)
                correction1 = (1 - beta1**steps).view(shape)
                correction2 = (1 - beta2**steps).view(shape)
                denom = (v / correction2).sqrt_().add_(group["eps"])
                p.addcdiv_(m / correction1, denom, value=-group["lr"])
        return None
