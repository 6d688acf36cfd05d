"""`Strategy`: the one hook signature every densification strategy implements, and its `StepContext`.

A trainer calls the hooks the same way whatever the strategy (so it never branches on strategy type). A step may
render several views (`TrainerConfig.batch_size`, and one share per rank under torchrun); each view's statistics
are accumulated after its backward pass, and the strategy refines once per step:

```python
strategy = cfg.strategy.build()
state = strategy.init_state(scene_scale)
strategy.check(gaussians, optimizers)
for step in range(n_steps):
    for cameras in views_of(step):
        out = render(gaussians, cameras, settings)
        ctx = StepContext(step=step, info=out.info, lr_means=optimizers["means"].param_groups[0]["lr"])
        strategy.step_pre_backward(gaussians, optimizers, state, ctx)  # before backward: keeps means2d's gradient
        loss = photometric_loss + sum(strategy.regularization_losses(gaussians).values())
        loss.backward()
        strategy.accumulate_view(gaussians, state, ctx)  # this view's image-plane gradients, visibility, radii
    # (gradients averaged over the views; `strategy.statistics(gaussians, state)` reduced over the ranks)
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad(set_to_none=True)
    strategy.step_post_backward(gaussians, optimizers, state, replace(ctx, accumulated=True))  # grow, prune, move
```

With one view per step, `step_post_backward` with `accumulated=False` (the default) accumulates `ctx.info` itself
and then refines: the single-hook form of gsplat's strategies, which a strategy that does not implement
`accumulate_view` keeps (it then trains with one view per step on one process only).

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
from typing import Any, Literal, NamedTuple

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
    accumulated: bool = False
    """In `step_post_backward`: True when every view of this step has already been passed to `accumulate_view`
    (and its statistics reduced over the ranks), so the hook only refines; `info` is then one of the views, for
    hooks that need a render's sizes. False: `info` is the step's one view, whose statistics the hook adds
    first."""


class Statistic(NamedTuple):
    """A per-Gaussian tensor of a strategy's state that `accumulate_view` adds each view to, named by where it
    lives: `holder[key]` (None, or absent, until the first view)."""

    holder: dict[str, Any]
    """The state dict, or a nested dict of it, that holds the tensor."""
    key: str
    reduce: Literal["sum", "max"]
    """How the views' contributions combine: summed (gradient norms, visibility counts) or maxed (screen radii)."""


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

    def accumulate_view(self, gaussians: AnyGaussians, state: StrategyState, ctx: StepContext) -> None:
        """Called after each view's `loss.backward()`: add that view's statistics (read from `ctx.info`) to
        `state`, into the tensors `statistics(state)` names, creating them when they are None. A strategy that
        implements it can train on several views per step and on several ranks; one that has no statistics
        implements it as a no-op.

        Raises:
            NotImplementedError: the strategy accumulates inside `step_post_backward` only (one view per step).
        """
        raise NotImplementedError(
            f"{type(self).__name__} accumulates its statistics in step_post_backward only"
        )

    def statistics(self, gaussians: AnyGaussians, state: StrategyState) -> list[Statistic]:
        """The tensors of `state` that `accumulate_view` adds views to, and how views combine (none by default);
        a holder that is created lazily is created here.

        The trainer sets each to None before a step's views, reduces what the views accumulated over the ranks,
        and combines it with the value before the step, so every rank refines on the statistics of all views."""
        return []

    @abc.abstractmethod
    def step_post_backward(
        self, gaussians: AnyGaussians, optimizers: Optimizers, state: StrategyState, ctx: StepContext
    ) -> None:
        """Called once per step after the optimizer step: may add, remove or move Gaussians. Unless
        `ctx.accumulated`, first adds the statistics of `ctx.info` (the step's one view)."""

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


def takes_views(strategy: Strategy) -> bool:
    """Whether `strategy` accumulates per view (`accumulate_view`), as training on several views per step or on
    several ranks needs."""
    return type(strategy).accumulate_view is not Strategy.accumulate_view
