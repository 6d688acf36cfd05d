"""Stretching or squeezing a preset to another number of steps (`--steps`), shared by every pipeline's `with_steps`.

Step-based schedules are scaled by steps / preset steps: the densification window (`refine_start_iter`,
`refine_stop_iter`), opacity resets (`reset_every`, dropped when they would come less than `MIN_RESET_RECOVERY`
steps apart), the half-resolution start (`coarse_until`) and, by each pipeline, its own schedules (SH warm-up,
pseudo views, ...). The refinement interval is kept: refining more often would multiply the Gaussians of a short
run.
"""

import dataclasses
from typing import TypeVar

from splat4d.trainer import TrainerConfig

MIN_RESET_RECOVERY = 300
"""Steps an opacity reset needs before the image recovers; schedules squeezed below this skip resets."""
DENSITY_STEPS = ("refine_start_iter", "refine_stop_iter", "reset_every")
"""Step-valued fields of the densification configs (each config has those it uses)."""

S = TypeVar("S")


def scaled_steps(value: int, factor: float) -> int:
    """A step count scaled by `factor`, at least 1."""
    return max(1, round(value * factor))


def scaled_density(strategy: S, steps: int, factor: float) -> S:
    """`strategy` (a densification config dataclass) with its `DENSITY_STEPS` fields scaled; resets that would come
    less than MIN_RESET_RECOVERY steps apart are moved past the end (`steps + 1`)."""
    changes = {
        name: scaled_steps(getattr(strategy, name), factor)
        for name in DENSITY_STEPS
        if hasattr(strategy, name)
    }
    if changes.get("reset_every", MIN_RESET_RECOVERY) < MIN_RESET_RECOVERY:
        changes["reset_every"] = steps + 1
    return dataclasses.replace(strategy, **changes)


def scaled_trainer(trainer: TrainerConfig, steps: int, factor: float, checkpoints: int = 4) -> TrainerConfig:
    """`trainer` running `steps` steps, its half-resolution start scaled, and a checkpoint at least every
    steps / `checkpoints` steps."""
    return dataclasses.replace(
        trainer,
        steps=steps,
        checkpoint_every=min(trainer.checkpoint_every, max(steps // checkpoints, 1)),
        coarse_until=round(trainer.coarse_until * factor),
    )
