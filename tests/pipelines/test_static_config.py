"""`--steps` rescales a preset's schedule without breaking it."""

from pipelines.static import PRESETS, with_steps
from splat4d.schedule import MIN_RESET_RECOVERY


def test_longer_runs_stretch_every_schedule() -> None:
    base = PRESETS["fast"]
    cfg = with_steps(base, base.trainer.steps * 2)
    assert cfg.trainer.steps == base.trainer.steps * 2
    assert cfg.strategy.refine_stop_iter == base.strategy.refine_stop_iter * 2
    assert cfg.strategy.reset_every == base.strategy.reset_every * 2
    assert cfg.trainer.coarse_until == base.trainer.coarse_until * 2
    assert cfg.sh_degree_interval == base.sh_degree_interval * 2
    assert cfg.strategy.refine_every == base.strategy.refine_every


def test_short_runs_keep_the_refine_interval_and_skip_resets_they_cannot_recover_from() -> None:
    cfg = with_steps(PRESETS["fast"], 150)
    assert cfg.strategy.refine_every == PRESETS["fast"].strategy.refine_every
    assert cfg.strategy.reset_every > cfg.trainer.steps
    assert with_steps(PRESETS["default"], 6000).strategy.reset_every >= MIN_RESET_RECOVERY


def test_presets_are_not_modified() -> None:
    before = PRESETS["default"].trainer.steps
    with_steps(PRESETS["default"], 10)
    assert PRESETS["default"].trainer.steps == before
