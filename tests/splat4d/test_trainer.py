"""The shared trainer: it learns, checkpoints, survives Ctrl-C, a resumed run equals an uninterrupted one, and a
step of several views averages their gradients (the multi-process side: tests/distributed)."""

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from pipelines.static import PRESETS, build, with_steps
from splat4d.data.dataset import ImageDataset
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.errors import UsageError
from splat4d.initialization import InitConfig, scene_scale
from splat4d.io.checkpoint import list_checkpoints
from splat4d.strategy import DefaultStrategyConfig, MCMCStrategyConfig, Strategy
from splat4d.trainer import Trainer, TrainerConfig, TrainingInterrupted, _interrupts_deferred


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory):
    path = write_sample_scene(
        SampleConfig(n_views=8, width=64, height=48), tmp_path_factory.mktemp("s") / "s"
    )
    return read_nerfstudio(path)


def _trainer(scene, out: Path, steps: int, strategy=None, callbacks=None, batch_size: int = 1) -> Trainer:
    cfg = with_steps(PRESETS["fast"], 60)
    strategy = strategy or DefaultStrategyConfig(
        refine_start_iter=5, refine_stop_iter=50, refine_every=10, reset_every=30
    )
    cfg.init = InitConfig(sh_degree=1)
    cfg.sh_degree_interval = 20
    cfg.strategy = strategy
    cfg.trainer = TrainerConfig(
        steps=steps, checkpoint_every=10, progress=False, seed=3, coarse_until=8, batch_size=batch_size
    )
    pipeline = build(cfg, scene, torch.device("cpu"))
    data = ImageDataset(scene, scene.train_indices)
    return Trainer(
        pipeline, strategy.build(), data, out, scene_scale(scene.cameras), cfg.trainer, cfg.optim, callbacks
    )


def test_training_improves_the_fit_and_logs_json(tiny_scene, tmp_path: Path) -> None:
    trainer = _trainer(tiny_scene, tmp_path, steps=60)
    result = trainer.train()
    assert result.step == 60
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {"step", "loss", "psnr", "num_gaussians", "seconds"} <= lines[-1].keys()
    assert lines[-1]["psnr"] > lines[0]["psnr"] + 1.0, [line["psnr"] for line in lines]
    assert result.num_gaussians == len(trainer.pipeline.gaussians)


@pytest.mark.parametrize(
    "strategy", [None, MCMCStrategyConfig(cap_max=900, refine_start_iter=5, refine_every=10)]
)
def test_resumed_run_equals_uninterrupted_run(tiny_scene, tmp_path: Path, one_thread, strategy) -> None:
    straight = _trainer(tiny_scene, tmp_path / "a", steps=40, strategy=strategy)
    straight.train()

    def stop_at_25(step: int, pipeline) -> None:
        if step == 25:
            raise KeyboardInterrupt

    interrupted = _trainer(tiny_scene, tmp_path / "b", steps=40, strategy=strategy, callbacks=[stop_at_25])
    with pytest.raises(TrainingInterrupted) as info:
        interrupted.train()
    assert info.value.step == 25 and info.value.checkpoint.is_file()
    resumed = _trainer(tiny_scene, tmp_path / "b", steps=40, strategy=strategy)
    resumed.train()
    assert resumed.step == 40
    for name, value in straight.pipeline.gaussians.params.items():
        assert torch.equal(value, resumed.pipeline.gaussians.params[name]), name
    for name, opt in straight.optimizers.items():
        a, b = opt.state_dict()["state"][0], resumed.optimizers[name].state_dict()["state"][0]
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]), name


def test_only_the_newest_checkpoints_are_kept(tiny_scene, tmp_path: Path) -> None:
    trainer = _trainer(tiny_scene, tmp_path, steps=35)
    trainer.train()
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step-000030.pt", "step-000035.pt"]


def test_finished_run_is_not_retrained(tiny_scene, tmp_path: Path) -> None:
    _trainer(tiny_scene, tmp_path, steps=12).train()
    again = _trainer(tiny_scene, tmp_path, steps=12)
    result = again.train()
    assert result.step == 12
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 1


def test_coarse_steps_train_at_half_resolution(tiny_scene, tmp_path: Path) -> None:
    trainer = _trainer(tiny_scene, tmp_path, steps=12)
    seen = []
    step_fn = trainer.pipeline.train_step

    def spy(batch, step):
        seen.append((step, batch.rgb.shape[1:3], batch.cameras.width))
        return step_fn(batch, step)

    trainer.pipeline.train_step = spy
    trainer.train()
    assert seen[0] == (0, (24, 32), 32) and seen[7][1:] == ((24, 32), 32)
    assert seen[8] == (8, (48, 64), 64) and seen[-1][0] == 11


def test_trainer_binds_the_dataset_it_draws_from_coarse_then_full(tiny_scene, tmp_path: Path) -> None:
    trainer = _trainer(tiny_scene, tmp_path, steps=12)  # coarse_until=8
    bound = []
    trainer.pipeline.bind_views = bound.append
    trainer.train()
    assert len(bound) == 2 and bound[1] is trainer.dataset
    assert bound[0].width == trainer.dataset.width // 2


def _one_view(scene):
    """The scene with a single training view, so that a batch of two views is that view twice."""
    return dataclasses.replace(scene, train_indices=scene.train_indices[:1])


def _means_grads(trainer: Trainer) -> list[torch.Tensor]:
    """Records the gradient the means' optimiser steps with, at every step."""
    seen: list[torch.Tensor] = []
    trainer.optimizers["means"].register_step_pre_hook(
        lambda opt, args, kwargs: seen.append(opt.param_groups[0]["params"][0].grad.clone())
    )
    return seen


def test_a_batch_averages_the_gradients_of_its_views(tiny_scene, tmp_path: Path, one_thread) -> None:
    scene = _one_view(tiny_scene)
    single = _trainer(scene, tmp_path / "a", steps=12)
    batched = _trainer(scene, tmp_path / "b", steps=12, batch_size=2)
    single_grads, batched_grads = _means_grads(single), _means_grads(batched)
    single.train()
    batched.train()
    # The same view twice: its gradient summed twice and divided by 2 is that view's gradient, exactly, and the
    # densification statistics count each view (twice the sums, the same means), so the runs stay identical.
    assert len(batched_grads) == 12 and batched.sampler.state_dict()["epoch"] == 23
    for a, b in zip(single_grads, batched_grads, strict=True):
        assert torch.equal(a, b)
    for name, value in single.pipeline.gaussians.params.items():
        assert torch.equal(value, batched.pipeline.gaussians.params[name]), name


class _OneViewStrategy(Strategy):
    """A strategy in the single-hook form: it accumulates inside step_post_backward only."""

    def init_state(self, scene_scale: float = 1.0) -> dict:
        return {}

    def step_post_backward(self, gaussians, optimizers, state, ctx) -> None:
        state["views"] = state.get("views", 0) + 1


def test_a_strategy_without_per_view_statistics_trains_one_view_per_step_only(
    tiny_scene, tmp_path: Path
) -> None:
    trainer = _trainer(tiny_scene, tmp_path / "one", steps=3, strategy=None)
    Trainer(
        trainer.pipeline,
        _OneViewStrategy(),
        trainer.dataset,
        tmp_path,
        1.0,
        TrainerConfig(steps=3, progress=False),
    )
    with pytest.raises(UsageError, match=r"--batch-size 2\): _OneViewStrategy accumulates"):
        Trainer(
            trainer.pipeline, _OneViewStrategy(), trainer.dataset, tmp_path, 1.0,
            TrainerConfig(steps=3, progress=False, batch_size=2),
        )  # fmt: skip


def test_an_interrupt_between_the_views_of_a_step_abandons_the_whole_step(
    tiny_scene, tmp_path: Path, one_thread
) -> None:
    straight = _trainer(tiny_scene, tmp_path / "a", steps=24, batch_size=2)
    straight.train()

    interrupted = _trainer(tiny_scene, tmp_path / "b", steps=24, batch_size=2)
    render = interrupted.pipeline.train_step
    calls = []

    def second_view_of_step_15(batch, step):
        calls.append(step)
        if (
            len(calls) == 2 * 15 + 2
        ):  # step 15's second view: its first view has already accumulated statistics
            raise KeyboardInterrupt
        return render(batch, step)

    interrupted.pipeline.train_step = second_view_of_step_15
    with pytest.raises(TrainingInterrupted) as info:
        interrupted.train()
    assert info.value.step == 15
    resumed = _trainer(tiny_scene, tmp_path / "b", steps=24, batch_size=2)
    resumed.train()
    for name, value in straight.pipeline.gaussians.params.items():
        assert torch.equal(value, resumed.pipeline.gaussians.params[name]), name


def test_signals_during_the_optimiser_step_wait_for_it_to_end() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), _interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("the rest of the step")
    assert done == ["the rest of the step"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
