"""`Strategy`: the one hook signature every densification strategy implements, and its `StepContext`.

A trainer calls the hooks the same way whatever the strategy (so it never branches on strategy type):

```python
strategy = cfg.strategy.build()
state = strategy.init_state(scene_scale)
strategy.check(gaussians, optimizers)
for step in range(n_steps):
    out = render(gaussians, cameras, settings)
    ctx = StepContext(step=step, info=out.info, lr_means=optimizers["means"].param_groups[0]["lr"])
    strategy.step_pre_backward(gaussians, optimizers, state, ctx)  # before backward: keeps means2d's gradient
    loss = photometric_loss + sum(strategy.regularization_losses(gaussians).values())
    loss.backward()
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad(set_to_none=True)
    # (LR schedulers step here)
    strategy.step_post_backward(gaussians, optimizers, state, ctx)  # may grow, prune or move Gaussians
```

`optimizers` holds one optimizer per trainable entry of `gaussians.params`, keyed by the same name, each with
exactly one param group holding that one parameter (gsplat's convention). A strategy that changes the number
of Gaussians replaces entries of `gaussians.params` with new `nn.Parameter`s and updates the optimizers'
param groups, their per-parameter state (Adam's `exp_avg`, `exp_avg_sq`) and the strategy state together.

The strategy state is a plain dict of tensors, numbers and None: `torch.save` / `torch.load` round-trip it, so a
run resumed from a checkpoint (params, optimizer state dicts, strategy state, torch RNG state: the strategies draw
from torch's global generator) continues as the uninterrupted run would.
"""

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from splat4d.gaussians import Gaussians, Gaussians4D

AnyGaussians = Gaussians | Gaussians4D

Optimizers = dict[str, torch.optim.Optimizer]
"""One optimizer per trainable parameter, keyed by its name in `Gaussians.params`."""

StrategyState = dict[str, Any]
"""Running state of a strategy: tensors (per-Gaussian ones first dimension N), numbers and None."""


@dataclass(frozen=True)
class StepContext:
    """What a strategy needs to know about the current training step."""

    step: int
    """Index of the current step (0-based, the same value in the pre- and post-backward hooks)."""
    info: dict[str, Any]
    """`RenderOutput.info` of this step's render: means2d (in the graph), radii, width, height, n_cameras,
    gaussian_ids."""
    lr_means: float
    """Current learning rate of the means; 3DGS-as-MCMC scales its position noise with it."""


class Strategy(abc.ABC):
    """Densification strategy: edits the set of Gaussians during training through the hooks below."""

    @abc.abstractmethod
    def init_state(self, scene_scale: float = 1.0) -> StrategyState:
        """Fresh running state for a scene of extent `scene_scale` (scene-relative thresholds scale with it)."""

    def check(self, gaussians: AnyGaussians, optimizers: Optimizers) -> None:
        """Raise ValueError unless `optimizers` has one single-parameter optimizer per trainable parameter of
        `gaussians`, each pointing at that parameter."""
        check_optimizers(gaussians, optimizers)

    def step_pre_backward(  # noqa: B027 (an optional hook: most strategies need nothing before backward)
        self, gaussians: AnyGaussians, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        """Called after rendering and before `loss.backward()` (e.g. to retain the image-plane gradients)."""

    @abc.abstractmethod
    def step_post_backward(
        self, gaussians: AnyGaussians, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        """Called after `loss.backward()` (and the optimizer step): may add, remove or move Gaussians."""

    def regularization_losses(self, gaussians: AnyGaussians) -> dict[str, Tensor]:
        """Weighted loss terms this strategy asks the trainer to add to the loss (none by default)."""
        return {}


def check_optimizers(gaussians: AnyGaussians, optimizers: Optimizers) -> None:
    """Raise ValueError unless every trainable parameter has its own optimizer with one param group holding
    exactly that parameter (and no optimizer is left over)."""
    trainable = {name for name, p in gaussians.params.items() if p.requires_grad}
    if trainable != set(optimizers):
        raise ValueError(
            f"strategy: optimizers {sorted(optimizers)} must match the trainable parameters {sorted(trainable)}"
        )
    for name, optimizer in optimizers.items():
        groups = optimizer.param_groups
        if len(groups) != 1 or len(groups[0]["params"]) != 1:
            raise ValueError(f"strategy: optimizer {name!r} must have one param group with one parameter")
        if groups[0]["params"][0] is not gaussians.params[name]:
            raise ValueError(f"strategy: optimizer {name!r} does not point at gaussians.params[{name!r}]")
