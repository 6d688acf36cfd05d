"""The one training loop every pipeline plugs into.

Each step: the next views (`batch_size` on each rank; one shared order split across the ranks under torchrun,
`splat4d.distributed`) → per view: `pipeline.train_step` (render + loss) → strategy pre-backward hook → backward →
the strategy accumulates the view's statistics; then gradients averaged over all the step's views and statistics
reduced over the ranks → optimiser step → strategy post-backward hook (densification). Around it: the means'
learning-rate schedule, a progress bar (loss, PSNR, number of Gaussians, it/s, ETA), JSON-lines logs, and
checkpoints every N steps and on Ctrl-C / SIGTERM, from which a rerun continues exactly (parameters, Adam moments,
strategy state, sampler position and RNG states are all restored). Torch's generator is reseeded from (seed, step,
view) for every view and for densification, so a view draws the same random numbers whichever rank renders it.

An interruption never leaves half a step behind: one that arrives while the views are rendered or the ranks
exchange gradients abandons the step (nothing has changed yet), and one that arrives during the optimiser step and
densification waits for them to finish; the checkpoint saved is that of a whole step.
"""

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import Tensor

from splat4d.data.dataset import ImageDataset, TrainSampler
from splat4d.distributed import SINGLE, RankLostError, Ranks, strategy_seed, view_seed
from splat4d.errors import UsageError
from splat4d.interrupts import TERMINATING_SIGNALS, terminate_as_interrupt
from splat4d.io.checkpoint import (
    CheckpointError,
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from splat4d.optim import OptimConfig, build_optimizers, set_lr
from splat4d.pipeline import Pipeline, load_params
from splat4d.progress import make_console, training_progress
from splat4d.strategy import Statistic, StepContext, Strategy, takes_views


@dataclass
class TrainerConfig:
    """Length of training, checkpoints and logging."""

    steps: int = 30_000
    """Training steps (each of `batch_size` views on every rank)."""
    batch_size: int = 1
    """Views per step on each rank (gsplat's batch_size): their gradients are averaged, and densification counts
    each as a view of its own. Under torchrun a step takes world size × batch_size views of one shared order, so N
    ranks × 1 view compute what 1 process × N views does; a run resumes only with the same views per step."""
    dist_timeout: float = 300.0
    """Under torchrun: seconds a rank waits for the others at a step before it stops with an error (a rank that
    died or hangs)."""
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
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint (on rank 0; `checkpoint` is None on the
    other ranks of a distributed run)."""

    def __init__(self, step: int, checkpoint: Path | None, ranks: Ranks = SINGLE) -> None:
        saved = (
            f"checkpoint saved to {checkpoint}" if checkpoint is not None else "rank 0 saves the checkpoint"
        )
        super().__init__(f"{ranks.label()}interrupted at step {step}; {saved}")
        self.step = step
        self.checkpoint = checkpoint


StepCallback = Callable[[int, Pipeline], None]
"""Called after every optimiser step with (step, pipeline), e.g. by the live viewer."""

GLOBAL_LOGS = ("loss", "psnr")
"""Log figures averaged over all the step's views on every rank; the others are rank 0's views' mean."""


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
        ranks: Ranks = SINGLE,
    ) -> None:
        self.pipeline = pipeline
        self.strategy = strategy
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.scene_scale = scene_scale
        self.cfg = cfg or TrainerConfig()
        self.optim_cfg = optim or OptimConfig()
        self.callbacks = callbacks or []
        self.console = console or make_console()
        self.ranks = ranks
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.log_path = self.out_dir / "log.jsonl"

        batch = self.cfg.batch_size
        if batch < 1:
            raise UsageError(f"--batch-size: must be at least 1, got {batch}")
        self.views_per_step = ranks.world_size * batch
        """Views of the shared order each step takes, over all ranks."""
        self._slots = range(ranks.rank * batch, (ranks.rank + 1) * batch)
        """This rank's share of a step's views (positions among them)."""
        self._per_view = takes_views(strategy)
        if self.views_per_step > 1 and not self._per_view:
            raise UsageError(
                f"{self.views_per_step} views per step ({ranks.world_size} rank(s) × --batch-size {batch}): "
                f"{type(strategy).__name__} accumulates its densification statistics for one view per step only; "
                "train it on one process with batch size 1"
            )
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
            "views_per_step": self.views_per_step,
            "world_size": self.ranks.world_size,
        }

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 only; the ranks hold the same state). Returns its path,
        None on the other ranks."""
        if not self.ranks.is_main:
            return None
        return save_checkpoint(
            self.checkpoint_dir, self.step, self.state_dict(), keep=self.cfg.keep_checkpoints
        )

    def resume(self) -> bool:
        """Restore the newest checkpoint in `out_dir/checkpoints`, if any (read by rank 0 and handed to every
        rank). Returns whether one was loaded.

        Raises:
            UsageError: the checkpoint was trained with another number of views per step (world size × batch
                size): continuing would not be the same run.
            CheckpointError: it is unreadable or does not fit the model.
        """
        found = self.ranks.from_main(self._load_checkpoint, "reading the checkpoint")
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

    def _load_checkpoint(self) -> tuple[Path, dict[str, Any]] | None:
        found = load_latest_checkpoint(self.checkpoint_dir, set_aside=True)
        if found is None:
            return None
        path, payload = found
        stored = int(payload.get("views_per_step", 1))
        if stored != self.views_per_step:
            world = int(payload.get("world_size", 1))
            batch = max(stored // world, 1)
            raise UsageError(
                f"{path}: trained with {stored} views per step ({world} rank(s) × batch size {batch}), this run "
                f"would take {self.views_per_step} ({self.ranks.world_size} × {self.cfg.batch_size}); resume with "
                f"ranks × --batch-size = {stored} (e.g. --nproc {world} --batch-size {batch}, or one process with "
                f"--batch-size {stored}), or pass --overwrite to start over"
            )
        return found

    # -- the loop -------------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimisation step on this rank's share of the next `views_per_step` training views."""
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
        sampler_state = self.sampler.state_dict()
        statistics = (
            self.strategy.statistics(self.pipeline.gaussians, self.strategy_state) if self._per_view else []
        )
        before = [s.holder.get(s.key) for s in statistics]
        committed = False
        try:
            # The views accumulate into fresh statistics, which are reduced over the ranks and only then added to
            # the running ones: an abandoned step leaves them as they were.
            for s in statistics:
                s.holder[s.key] = None
            views = self.sampler.take(self.views_per_step)
            rendered = [self._view(dataset, views[slot], slot, step, lr_means) for slot in self._slots]
            logs = self._average([logs for logs, _ in rendered], statistics)
            with _interrupts_deferred():
                for s, value in zip(statistics, before, strict=True):
                    s.holder[s.key] = _combine(value, s.holder[s.key], s.reduce)
                for opt in self.optimizers.values():
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                # After the optimiser step, as in gsplat's trainers: densification edits parameters and Adam
                # moments together, on the statistics of all the step's views.
                torch.manual_seed(strategy_seed(self.cfg.seed, step))
                ctx = StepContext(
                    step=step, info=rendered[-1][1], lr_means=lr_means, accumulated=self._per_view
                )
                self.strategy.step_post_backward(
                    self.pipeline.gaussians, self.optimizers, self.strategy_state, ctx
                )
                self.step += 1
                committed = True
        except BaseException:
            if not committed:  # nothing of the step is kept
                for s, value in zip(statistics, before, strict=True):
                    s.holder[s.key] = value
                self.sampler.load_state_dict(sampler_state)
                for opt in self.optimizers.values():
                    opt.zero_grad(set_to_none=True)
            raise
        return logs

    def _view(
        self, dataset: ImageDataset, index: int, slot: int, step: int, lr_means: float
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Render view `index` (the step's `slot`-th), back-propagate its loss (gradients add up over the views)
        and hand its statistics to the strategy. Returns its logs and render info."""
        torch.manual_seed(view_seed(self.cfg.seed, step, slot))
        gaussians = self.pipeline.gaussians
        result = self.pipeline.train_step(dataset[index], step)
        regularizers = self.strategy.regularization_losses(gaussians)
        loss = result.loss + sum(regularizers.values())
        ctx = StepContext(step=step, info=result.info, lr_means=lr_means)
        self.strategy.step_pre_backward(gaussians, self.optimizers, self.strategy_state, ctx)
        loss.backward()
        if self._per_view:
            self.strategy.accumulate_view(gaussians, self.strategy_state, ctx)
        logs = {
            "loss": float(loss.detach()),
            **result.logs,
            **{k: float(v.detach()) for k, v in regularizers.items()},
        }
        return logs, result.info

    def _average(self, view_logs: list[dict[str, float]], statistics: list[Statistic]) -> dict[str, float]:
        """Turn the summed gradients of this rank's views into the mean over all the step's views, reduce the
        fresh statistics over the ranks, and return the logs (mean over the views; `GLOBAL_LOGS` over all ranks).

        One all-reduce (sum) carries every gradient, the summed statistics and the global log sums; a second
        (max) the maxed statistics, when the strategy has any."""
        logs = {
            k: sum(v[k] for v in view_logs if k in v) / sum(k in v for v in view_logs) for k in view_logs[0]
        }
        params = [p for p in self.pipeline.gaussians.params.values() if p.requires_grad]
        if not self.ranks.distributed:
            if self.views_per_step > 1:
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(self.views_per_step)
            return logs
        device = params[0].device
        sums = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        has_grad = torch.tensor([float(p.grad is not None) for p in params], device=device)
        summed = [s.holder[s.key] for s in statistics if s.reduce == "sum" and s.holder[s.key] is not None]
        log_sums = torch.tensor(
            [
                x
                for k in GLOBAL_LOGS
                for x in (sum(v.get(k, 0.0) for v in view_logs), sum(k in v for v in view_logs))
            ],
            device=device,
        )
        flat = torch.cat([t.reshape(-1).float() for t in (*sums, has_grad, *summed, log_sums)])
        self.ranks.all_reduce(flat, "sum", f"step {self.step}: averaging gradients")
        parts = iter(flat.split([t.numel() for t in (*sums, has_grad, *summed, log_sums)]))
        grads = [next(parts) for _ in sums]
        present = next(parts)
        for p, g, flag in zip(params, grads, present.tolist(), strict=True):
            p.grad = g.view_as(p).to(p.dtype).div_(self.views_per_step) if flag > 0 else None
        for t in summed:
            t.copy_(next(parts).view_as(t))
        totals = next(parts).tolist()
        for i, k in enumerate(GLOBAL_LOGS):
            if totals[2 * i + 1] > 0:
                logs[k] = totals[2 * i] / totals[2 * i + 1]
        maxed = [s.holder[s.key] for s in statistics if s.reduce == "max" and s.holder[s.key] is not None]
        if maxed:
            flat = torch.cat([t.reshape(-1).float() for t in maxed])
            self.ranks.all_reduce(flat, "max", f"step {self.step}: reducing densification statistics")
            for t, part in zip(maxed, flat.split([t.numel() for t in maxed]), strict=True):
                t.copy_(part.view_as(t))
        return logs

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
            if self.ranks.is_main:
                self.console.print(f"resuming from step {self.step} ({self.resumed_from})")
        else:  # every rank starts from rank 0's Gaussians, whatever its own initialisation drew
            self.ranks.broadcast_(
                [p.data for p in self.pipeline.gaussians.params.values()], "starting from rank 0's Gaussians"
            )
        start_step = self.step
        # Rank 0's callbacks (the live viewer) may hold training paused: the other ranks then wait for it at each
        # step without the training timeout.
        wait_for_callbacks = self.ranks.from_main(lambda: bool(self.callbacks), "starting")
        if self.step >= self.cfg.steps:
            return TrainResult(self.step, self.seconds, len(self.pipeline.gaussians))
        # SIGTERM stops training as Ctrl-C does, so `kill` leaves a checkpoint too (main thread only).
        with (
            training_progress(self.cfg.progress and self.ranks.is_main, self.console) as progress,
            terminate_as_interrupt((signal.SIGTERM,)),
        ):
            task = progress.add_task("training", total=self.cfg.steps, completed=self.step, stats="")
            t_session = time.perf_counter()
            seconds_before = self.seconds
            try:
                while self.step < self.cfg.steps:
                    logs = self.train_step()
                    self.seconds = seconds_before + time.perf_counter() - t_session
                    if self.ranks.is_main:
                        self._log(logs, progress, task, start_step)
                    for callback in self.callbacks:
                        callback(self.step, self.pipeline)
                    if wait_for_callbacks:
                        self.ranks.wait_for_main(f"step {self.step}: waiting for rank 0's live viewer")
                    if self.step % self.cfg.checkpoint_every == 0 and self.step < self.cfg.steps:
                        self.save()
            except KeyboardInterrupt as exc:
                with _interrupts_deferred(
                    reraise=False
                ):  # a second Ctrl-C (or torchrun's SIGTERM) while saving
                    path = self.save()
                raise TrainingInterrupted(self.step, path, self.ranks) from exc
            except RankLostError as exc:
                with _interrupts_deferred(reraise=False):
                    path = self.save()
                kept = (
                    f"checkpoint of step {self.step} saved to {path}"
                    if path
                    else "rank 0 keeps the checkpoints"
                )
                raise RankLostError(f"{exc}; {kept}; rerun the same command to resume") from exc
        self.save()
        return TrainResult(self.step, self.seconds, len(self.pipeline.gaussians))

    def _log(self, logs: dict[str, float], progress: Any, task: Any, start_step: int) -> None:
        n = len(self.pipeline.gaussians)
        if self.step % 10 == 0 or self.step == self.cfg.steps:
            rate = (self.step - start_step) / max(self.seconds, 1e-9) if self.step > start_step else 0.0
            stats = f"loss {logs['loss']:.4f}  psnr {logs.get('psnr', float('nan')):5.2f}  #G {n:,}  {rate:.1f} it/s"
            progress.update(task, completed=self.step, stats=stats)
        if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
            line = {"step": self.step, "seconds": round(self.seconds, 3), "num_gaussians": n, **logs}
            with self.log_path.open("a") as f:
                f.write(json.dumps(line) + "\n")


def _combine(before: Tensor | None, fresh: Tensor | None, reduce: str) -> Tensor | None:
    """A running statistic after adding one step's views to it (either may be None: nothing yet)."""
    if before is None or fresh is None:
        return fresh if before is None else before
    return before + fresh if reduce == "sum" else torch.maximum(before, fresh)


@contextmanager
def _interrupts_deferred(reraise: bool = True) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP arriving inside the block raise `KeyboardInterrupt` when it ends (with
    `reraise`; else they are dropped: the caller is stopping already), not inside it: the optimiser step,
    densification and the checkpoint written on the way out never stop half-way. Signals whose handler is not a
    Python function (ignored, or the default) are left alone; outside the main thread the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    try:
        for signum in TERMINATING_SIGNALS:
            if callable(signal.getsignal(signum)):
                previous[signum] = signal.signal(signum, lambda signum, frame: caught.append(signum))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught and reraise:
        raise KeyboardInterrupt


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value
