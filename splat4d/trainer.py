"""The one training loop every pipeline plugs into.

Each step: next image → `pipeline.train_step` (render + loss) → strategy pre-backward hook → backward → strategy
post-backward hook (densification) → optimiser step. Around it: the means' learning-rate schedule, a progress bar
(loss, PSNR, number of Gaussians, it/s, ETA), JSON-lines logs, and checkpoints every N steps and on Ctrl-C /
SIGTERM, from which a rerun continues exactly (parameters, Adam moments, strategy state, sampler position and RNG
states are all restored).
"""

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from splat4d.data.dataset import ImageDataset, TrainSampler
from splat4d.interrupts import terminate_as_interrupt
from splat4d.io.checkpoint import (
    CheckpointError,
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from splat4d.optim import OptimConfig, build_optimizers, set_lr
from splat4d.pipeline import Pipeline, load_params
from splat4d.strategy import StepContext, Strategy


@dataclass
class TrainerConfig:
    """Length of training, checkpoints and logging."""

    steps: int = 30_000
    """Training steps (one image each)."""
    checkpoint_every: int = 2000
    """Save a checkpoint every this many steps (and always at the end and on Ctrl-C)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    log_every: int = 50
    """Write a line to log.jsonl every this many steps."""
    coarse_until: int = 0
    """Coarse to fine: train on images at half the resolution until this step (4× fewer pixels per step, for
    the early steps where the scene is still blurry), then at full resolution. 0: full resolution throughout."""
    seed: int = 0
    progress: bool = True
    """Show a progress bar."""


@dataclass
class TrainResult:
    step: int
    """Steps completed."""
    seconds: float
    """Training wall time over all sessions of this run (resumes included)."""
    num_gaussians: int


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


StepCallback = Callable[[int, Pipeline], None]
"""Called after every optimiser step with (step, pipeline), e.g. by the live viewer."""


class Trainer:
    def __init__(
        self,
        pipeline: Pipeline,
        strategy: Strategy,
        dataset: ImageDataset,
        out_dir: Path,
        scene_scale: float,
        cfg: TrainerConfig | None = None,
        optim: OptimConfig | None = None,
        callbacks: list[StepCallback] | None = None,
        console: Console | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.strategy = strategy
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.scene_scale = scene_scale
        self.cfg = cfg or TrainerConfig()
        self.optim_cfg = optim or OptimConfig()
        self.callbacks = callbacks or []
        self.console = console or Console()
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.log_path = self.out_dir / "log.jsonl"

        params = pipeline.gaussians.params
        self.optimizers = build_optimizers(params, self.optim_cfg, scene_scale)
        self.strategy.check(pipeline.gaussians, self.optimizers)
        self.strategy_state = self.strategy.init_state(scene_scale)
        self.sampler = TrainSampler(len(dataset), seed=self.cfg.seed)
        self.step = 0
        self.seconds = 0.0
        self._coarse: ImageDataset | None = None
        self._bound: ImageDataset | None = None
        self.resumed_from: Path | None = None

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {k: v.detach().cpu() for k, v in self.pipeline.gaussians.params.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "strategy_state": self.strategy_state,
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
            "seconds": self.seconds,
        }

    def save(self) -> Path:
        return save_checkpoint(
            self.checkpoint_dir, self.step, self.state_dict(), keep=self.cfg.keep_checkpoints
        )

    def resume(self) -> bool:
        """Restore the newest checkpoint in `out_dir/checkpoints`, if any. Returns whether one was loaded."""
        found = load_latest_checkpoint(self.checkpoint_dir, set_aside=True)
        if found is None:
            return False
        path, payload = found
        params = self.pipeline.gaussians.params
        try:
            load_params(params, payload["params"])
            self.optimizers = build_optimizers(params, self.optim_cfg, self.scene_scale)
            for name, opt in self.optimizers.items():
                opt.load_state_dict(payload["optimizers"][name])
            device = next(iter(params.values())).device
            self.strategy_state = _to_device(payload["strategy_state"], device)
            self.sampler.load_state_dict(payload["sampler"])
            set_rng_state(payload["rng"])
            self.seconds = float(payload["seconds"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path}: does not fit this run ({type(exc).__name__}: {exc}); "
                "rerun with --overwrite to start over"
            ) from exc
        self.step = int(payload["step"])
        self.resumed_from = path
        return True

    # -- the loop -------------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimisation step on the next training image."""
        step = self.step
        lr_means = self.optim_cfg.means_lr_at(step, self.cfg.steps, self.scene_scale)
        scheduled = self.optim_cfg.scheduled_param
        if scheduled in self.optimizers:
            set_lr(self.optimizers[scheduled], lr_means)
        dataset = self._dataset_for(step)
        if dataset is not self._bound and hasattr(self.pipeline, "bind_views"):
            self.pipeline.bind_views(
                dataset
            )  # optional Pipeline hook (splat4d.pipeline), for multi-view losses
        self._bound = dataset
        batch = dataset[next(self.sampler)]
        result = self.pipeline.train_step(batch, step)
        regularizers = self.strategy.regularization_losses(self.pipeline.gaussians)
        loss = result.loss + sum(regularizers.values())
        ctx = StepContext(step=step, info=result.info, lr_means=lr_means)
        self.strategy.step_pre_backward(self.pipeline.gaussians, self.optimizers, self.strategy_state, ctx)
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        # After the optimiser step, as in gsplat's trainers: densification reads the image-plane gradients
        # kept on info["means2d"] and edits parameters and Adam moments together.
        self.strategy.step_post_backward(self.pipeline.gaussians, self.optimizers, self.strategy_state, ctx)
        self.step += 1
        return {
            "loss": float(loss.detach()),
            **result.logs,
            **{k: float(v.detach()) for k, v in regularizers.items()},
        }

    def _dataset_for(self, step: int) -> ImageDataset:
        if step >= self.cfg.coarse_until:
            self._coarse = None  # no longer needed: free its images
            return self.dataset
        if self._coarse is None:
            d = self.dataset
            self._coarse = ImageDataset(d.scene, d.indices, d.downscale * 2, d.device)
        return self._coarse

    def train(self) -> TrainResult:
        """Train to `cfg.steps`, resuming from the newest checkpoint when there is one."""
        torch.manual_seed(self.cfg.seed)
        if self.resume():
            self.console.print(f"resuming from step {self.step} ({self.resumed_from})")
        start_step = self.step
        if self.step >= self.cfg.steps:
            return TrainResult(self.step, self.seconds, len(self.pipeline.gaussians))
        # SIGTERM stops training as Ctrl-C does, so `kill` leaves a checkpoint too (main thread only).
        with (
            training_progress(self.cfg.progress, self.console) as progress,
            terminate_as_interrupt((signal.SIGTERM,)),
        ):
            task = progress.add_task("training", total=self.cfg.steps, completed=self.step, stats="")
            t_session = time.perf_counter()
            seconds_before = self.seconds
            try:
                while self.step < self.cfg.steps:
                    logs = self.train_step()
                    self.seconds = seconds_before + time.perf_counter() - t_session
                    for callback in self.callbacks:
                        callback(self.step, self.pipeline)
                    self._log(logs, progress, task, start_step)
                    if self.step % self.cfg.checkpoint_every == 0 and self.step < self.cfg.steps:
                        self.save()
            except KeyboardInterrupt as exc:
                path = self.save()
                raise TrainingInterrupted(self.step, path) from exc
        self.save()
        return TrainResult(self.step, self.seconds, len(self.pipeline.gaussians))

    def _log(self, logs: dict[str, float], progress: Progress, task: Any, start_step: int) -> None:
        n = len(self.pipeline.gaussians)
        if self.step % 10 == 0 or self.step == self.cfg.steps:
            rate = (self.step - start_step) / max(self.seconds, 1e-9) if self.step > start_step else 0.0
            stats = f"loss {logs['loss']:.4f}  psnr {logs.get('psnr', float('nan')):5.2f}  #G {n:,}  {rate:.1f} it/s"
            progress.update(task, completed=self.step, stats=stats)
        if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
            line = {"step": self.step, "seconds": round(self.seconds, 3), "num_gaussians": n, **logs}
            with self.log_path.open("a") as f:
                f.write(json.dumps(line) + "\n")


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


@contextmanager
def training_progress(enabled: bool, console: Console) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )
    with progress:
        yield progress
