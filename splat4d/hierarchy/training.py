"""Streamed training of a temporal Gaussian hierarchy: memory stays flat as the video gets longer, because only the
segments of one root-to-leaf path (and the views of one leaf) are resident at a time (Xu et al. 2024, "Representing
Long Volumetric Video with Temporal Gaussian Hierarchy", §3: "nearly constant GPU memory usage during the training
or rendering regardless of the video length").

The model. The scene at time t is the concatenation of the segments on `path(t)`, exactly what `HierarchicalScene`
renders; every stored Gaussian is its own parameter and is drawn only at times inside its segment. After every
visit a Gaussian moves down to the deepest segment of the path that contains its whole lifespan
(`TimeTree.deepest_on_path`) when its lifespan has shrunk into a smaller one: no image changes, since outside that
segment it was culled anyway, and the paths through its old segment's other children no longer carry it. One whose
lifespan outgrows its segment stays there, drawn only inside it: long-lived content is learned by the coarse
segments' own Gaussians, which every visit below them trains (`promote` moves such a Gaussian up instead; see there
for why that is off by default). There are no copies to keep in step: a Gaussian is in one segment.

The schedule. A *visit* trains `steps_per_visit` steps on the path of one leaf, each step on a training view whose
time lies in that leaf (`ViewSource`). A *sweep* visits every leaf that has views once, in a random order by
default (`order`: the coarse segments that every visit trains then see the video's times mixed, not in one run that
drags them towards its last times), or in time order, back and forth, so that consecutive visits share all but the
deepest segments and a cache of one path reads each segment once per sweep. Per visit: the path's segment states
(parameters and Adam moments, `SegmentStore`) are concatenated into one `Gaussians4D` with one Adam per parameter,
whose step count is the global step as in the flat trainer, trained with the dynamic pipeline's loss
(`pipelines.dynamic.pipeline.DynamicPipeline`: photometric + temporal-opacity + motion smoothness), and split back
into segments. The means' learning rate and the SH degree follow the global step.

Densification (`Density4DStrategy.refine`) runs per segment, once per refinement period (`densify`): a period is
one sweep, or as many as make up about the strategy's `refine_every` steps when a sweep is shorter (a short
video). Each segment's state keeps its Gaussians' image-plane gradient sums over all its visits in the period, and
the visit that is the segment's last of the period densifies it on them (the leaf after its visit, the root at the
end of the period), children staying on the path and re-homed like everyone else. So every segment is refined as
often however long the video is, and a shared coarse segment does not grow faster in a longer one, as it would if
it were densified at every visit. There are no opacity resets: a reset would only reach the segments of one path.

Coarse to fine (`coarse_until`): visits that start before that step train on half-resolution views, as the flat
trainer's first steps do.

Initialisation (`seed_segments`): the initial points are shared out over the levels, each segment of level l
getting its own random `points_per_path / (depth + 1)` of them at its centre, with a lifespan just inside the
segment. The root's copies are static (they live over the whole video, below which the leaves learn what moves),
unless the root is the only segment (depth 0), where they start like a leaf's: static, they would have to learn all
motion by densification (multi-view procedural scene, 600 steps: 22.9 dB static, 23.7 dB like a leaf's; at depth 1
the static root is as good). A path therefore starts with about `points_per_path` Gaussians, however long the
video.

Checkpoints: `SegmentStore.commit` every `checkpoint_every` visits and on Ctrl-C / SIGTERM; a rerun continues from
the last commit exactly (parameters, moments, position in the schedule, step, both RNGs).
"""

import dataclasses
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from rich.console import Console
from torch import Tensor

from splat4d.data.dataset import Batch
from splat4d.gaussians import Gaussians4D
from splat4d.hierarchy.lifespan import DEFAULT_THRESHOLD, lifespan_factor, lifespans
from splat4d.hierarchy.segment_store import (
    MOMENTS,
    STATE_NAME,
    SegmentState,
    SegmentStore,
    load_state_file,
    state_len,
)
from splat4d.hierarchy.storage import write_segments
from splat4d.hierarchy.tree import Segment, TimeTree
from splat4d.interrupts import terminate_as_interrupt
from splat4d.optim import Optim4DConfig, build_optimizers, set_lr
from splat4d.progress import make_console, training_progress
from splat4d.strategy import StepContext
from splat4d.strategy.density4d import Density4DConfig, Density4DStrategy
from splat4d.trainer import TrainingInterrupted

INSIDE = 0.98
"""Initial half-lifespan of a segment's Gaussians as a fraction of half the segment: just inside it."""
STATIC_LOG_SCALE_T = math.log(10.0)
"""Initial temporal log-scale of the root's Gaussians when the root has children: σ_t = 10 video lengths, i.e.
static."""
HOME = "_segment_level"
"""Name of the frozen per-Gaussian parameter that carries each Gaussian's segment level through densification."""
ACCUMULATORS = ("acc/grad2d", "acc/count")
"""Per-Gaussian densification statistics kept in each segment's state between visits (`Density4DStrategy`'s
grad2d and count sums), so a segment is densified on the gradients of all its visits in a refinement period."""


@dataclass
class HierarchyTrainConfig:
    """Streamed training of a temporal Gaussian hierarchy (`splat4d.hierarchy.training`)."""

    depth: int = 3
    """Levels below the root: a leaf spans 1 / 2^depth of the video. Pick it so a leaf holds a few frames; add one
    level each time the video doubles in length."""
    sweeps: int = 4
    """Passes over all leaves."""
    steps_per_visit: int = 50
    """Training steps on one leaf's path per visit."""
    densify: Literal["sweep", "visit"] = "sweep"
    """sweep: each segment is densified once per sweep (or per few sweeps, as many as make up the strategy's
    `refine_every` steps, when a sweep is shorter), on the gradients of all its visits in them, so a shared
    coarse segment is refined as often whatever the video's length (memory flat); visit: the whole path is
    densified after every visit (coarse segments are refined once per visit under them: faster growth, and
    their size grows with the video's length)."""
    points_per_path: int = 10_000
    """Initial Gaussians on any one path (shared out over its depth + 1 segments)."""
    order: Literal["shuffle", "time"] = "shuffle"
    """Order of the leaves in a sweep: shuffle (a random order per sweep, so the coarse segments, which every visit
    trains, see the video's times mixed rather than in one run that drags them towards the last times; most of a
    path is read from disk per visit), or time (back and forth: consecutive visits share all but their deepest
    segments and one path of cache reads each segment once per sweep). Measured on the held-out camera of
    bench/hierarchy_training.py's video after one sweep: 4x, shuffle 20.3 dB, time 19.7 dB; 16x, 21.1 dB and
    18.0 dB."""
    promote: bool = False
    """Let a Gaussian whose lifespan has outgrown its segment move up to the segment of the path that contains it
    (False: it stays, drawn only inside its segment). Moving up shares long-lived content between leaves, but
    each leaf's copy of it then piles up in the coarse segments that every path holds, so a path grows with the
    number of leaves (measured: 6.4× more Gaussians on a path of a 16× longer video after one sweep)."""
    coarse_until: int = 0
    """Coarse to fine, as the flat trainer's `TrainerConfig.coarse_until`: a visit that starts before this global
    step trains on its views at half the resolution (4x fewer pixels per step). 0: full resolution throughout."""
    checkpoint_every: int = 8
    """Commit the store every this many visits (and at the end and on Ctrl-C)."""
    seed: int = 0
    progress: bool = True

    @property
    def tree(self) -> TimeTree:
        return TimeTree(self.depth)


@runtime_checkable
class ViewSource(Protocol):
    """The training views of a video, loaded a leaf at a time."""

    def times(self) -> Float[Tensor, " V"]:
        """Capture time of every training view, normalised to [0, 1]."""
        ...

    def load(self, ids: list[int], downscale: int = 1) -> Sequence[Batch]:
        """The views `ids` (positions in `times()`), as batches, at 1/`downscale` of their training resolution;
        released when the visit ends."""
        ...


@runtime_checkable
class StepLoss(Protocol):
    """What a visit trains with: `pipelines.dynamic.pipeline.DynamicPipeline` (built around the path's scene)."""

    def train_step(self, batch: Batch, step: int) -> Any: ...


@dataclass
class StreamedResult:
    step: int
    seconds: float
    num_gaussians: int
    """Gaussians stored in all segments."""
    resident_gaussians_max: int
    """Most Gaussians trained at once (one path)."""
    segments_read: int
    segments_written: int


@torch.no_grad()
def seed_segments(
    base: Gaussians4D, tree: TimeTree, points_per_path: int, seed: int = 0
) -> dict[Segment, Gaussians4D]:
    """Initial Gaussians of every segment: a random `points_per_path / (depth + 1)` of `base`'s Gaussians (one per
    initial point; their times are replaced) per segment, at the segment's centre with a lifespan just inside it;
    the root's are static when it has children. See the module docstring."""
    generator = torch.Generator().manual_seed(seed)
    n = len(base)
    per_segment = min(n, max(1, math.ceil(points_per_path / (tree.depth + 1))))
    k = lifespan_factor(DEFAULT_THRESHOLD)
    out = {}
    for segment in tree.segments():
        ids = torch.randperm(n, generator=generator)[:per_segment].to(base.means4.device)
        params = {name: p.detach()[ids].clone() for name, p in base.params.items()}
        start, end = tree.bounds(segment)
        params["means4"][:, 3] = 0.5 * (start + end)
        if segment.level == 0 and tree.depth > 0:
            params["log_scales4"][:, 3] = STATIC_LOG_SCALE_T
        else:
            params["log_scales4"][:, 3] = math.log(INSIDE * 0.5 * (end - start) / k)
        out[segment] = Gaussians4D(params, base.time_period)
    return out


class StreamedTrainer:
    """Trains the hierarchy in `work_dir` (its `SegmentStore`) on `views`, one path at a time.

    Args:
        cfg: streamed-training settings.
        make_loss: builds the per-visit loss around the path's scene (`DynamicPipeline(dcfg, scene, background)`).
        views: the training views.
        work_dir: the store's folder; a committed state there is resumed.
        initial: the initial Gaussians (one per point; `seed_segments` places them), built only on a fresh start.
        scene_scale: scene extent, for the means' learning rate and densification thresholds.
        optim: learning rates; strategy: densification (its `refine_start_iter` / `refine_stop_iter` are global
            steps; a segment is refined at the end of every `sweeps_per_refine` sweeps, as many as make up
            about `refine_every` steps, and `reset_every` does not apply).
    """

    def __init__(
        self,
        cfg: HierarchyTrainConfig,
        make_loss: Callable[[Gaussians4D], StepLoss],
        views: ViewSource,
        work_dir: Path,
        initial: Callable[[], Gaussians4D],
        scene_scale: float,
        optim: Optim4DConfig | None = None,
        strategy: Density4DConfig | None = None,
        device: torch.device | str = "cpu",
        console: Console | None = None,
    ) -> None:
        self.cfg = cfg
        self.tree = cfg.tree
        self.make_loss = make_loss
        self.views = views
        self.work_dir = Path(work_dir)
        self.initial = initial
        self.scene_scale = scene_scale
        self.optim = optim or Optim4DConfig()
        self.strategy_cfg = strategy
        self.device = torch.device(device)
        self.console = console or make_console()
        self.leaf_views = self._views_per_leaf()
        self.schedule = self._schedule()
        self.sweeps_per_refine = self._sweeps_per_refine()
        self._leaving = self._leaving_levels()
        self.total_steps = len(self.schedule) * cfg.steps_per_visit
        self.store: SegmentStore | None = None
        self.template: Gaussians4D | None = None
        self.visit = 0
        self.step = 0
        self.seconds = 0.0
        self.resident_max = 0
        self.generator = torch.Generator().manual_seed(cfg.seed)
        """Draws the view of each step (its state is checkpointed)."""
        self._putting = False

    # -- schedule ---------------------------------------------------------------------------------------------
    def _views_per_leaf(self) -> dict[int, list[int]]:
        leaves = self.tree.leaf_indices(self.views.times()).tolist()
        out: dict[int, list[int]] = {}
        for view, leaf in enumerate(leaves):
            out.setdefault(leaf, []).append(view)
        if not out:
            raise ValueError("StreamedTrainer: no training views")
        return dict(sorted(out.items()))

    def _schedule(self) -> list[int]:
        """The leaf of every visit: all leaves with views once per sweep, in time order (reversed on odd sweeps)
        or, with `order` shuffle, in a random order drawn per sweep from `seed`."""
        leaves = list(self.leaf_views)
        if self.cfg.order == "shuffle":
            g = torch.Generator().manual_seed(self.cfg.seed)
            return [
                leaves[i] for _ in range(self.cfg.sweeps) for i in torch.randperm(len(leaves), generator=g)
            ]
        return [leaf for s in range(self.cfg.sweeps) for leaf in (leaves if s % 2 == 0 else leaves[::-1])]

    def _sweeps_per_refine(self) -> int:
        """Sweeps between two densifications of a segment: as many as make up about the strategy's
        `refine_every` steps, at least one. A short video's sweep is a few visits; densifying every segment after
        each would refine (and grow) it several times as often as the flat trainer refines its Gaussians, each
        time on the gradients of fewer steps. A long video's sweep is longer than `refine_every`: one."""
        refine_every = (self.strategy_cfg or Density4DConfig()).refine_every
        return max(1, round(refine_every / (len(self.leaf_views) * self.cfg.steps_per_visit)))

    def _leaving_levels(self) -> list[int]:
        """Per visit, the shallowest level whose path segment no later visit of the same refinement period (of
        `sweeps_per_refine` sweeps) trains: that segment and those below it, a suffix of the path, are densified
        at the end of the visit. A visit that leaves nothing gets the path's length."""
        period = len(self.leaf_views) * self.sweeps_per_refine
        out = [0] * len(self.schedule)
        for start in range(0, len(self.schedule), period):
            later: set[Segment] = set()
            for v in reversed(range(start, min(start + period, len(self.schedule)))):
                path = self.tree.path(self.leaf_time(self.schedule[v]))
                out[v] = next((s.level for s in path if s not in later), len(path))
                later.update(path)
        return out

    def leaving_level(self, visit: int) -> int:
        """The shallowest level whose path segment visit `visit` is the last of its refinement period to train:
        that segment and those below it are densified at the end of the visit (the root at the end of each
        period); the path's length when the visit leaves none."""
        return self._leaving[visit]

    def leaf_time(self, leaf: int) -> float:
        return (leaf + 0.5) / self.tree.num_leaves

    # -- state ------------------------------------------------------------------------------------------------
    def _open_store(self) -> bool:
        """Open the store, seeding it on a fresh start; returns whether a committed state was resumed."""
        template = self.initial() if not (self.work_dir / STATE_NAME).is_file() else None
        if template is None:
            meta = load_state_file(self.work_dir / STATE_NAME)
            layout = {k: (tuple(shape), _dtype(dtype)) for k, (shape, dtype) in meta["layout"].items()}
            time_period = float(meta["time_period"])
        else:
            layout = {}
            for name, p in template.params.items():
                layout[name] = (tuple(p.shape[1:]), p.dtype)
                for moment in MOMENTS:
                    layout[f"{moment}/{name}"] = (tuple(p.shape[1:]), p.dtype)
            for name in ACCUMULATORS:
                layout[name] = ((), torch.float32)
            time_period = template.time_period
        names = [k for k in layout if "/" not in k]
        self.template = Gaussians4D({k: torch.zeros(0, *layout[k][0]) for k in names}, time_period)
        self.store = SegmentStore(self.work_dir, self.tree, layout, self.tree.depth + 1, self.device)
        self._layout_record = {k: (list(shape), str(dtype)) for k, (shape, dtype) in layout.items()}
        if template is None:
            extra = self.store.restore()
            self.visit, self.step, self.seconds = (
                int(extra["visit"]),
                int(extra["step"]),
                float(extra["seconds"]),
            )
            self.resident_max = int(extra["resident_max"])
            self.generator.set_state(extra["view_rng"])
            torch.set_rng_state(extra["torch_rng"])
            return True
        seeded = seed_segments(template, self.tree, self.cfg.points_per_path, self.cfg.seed)
        for segment, gaussians in seeded.items():
            self.store.put(segment, _with_zero_moments(gaussians, self.device))
        self.commit()
        return False

    def commit(self) -> None:
        assert self.store is not None
        self.store.commit(
            {
                "layout": self._layout_record,
                "time_period": self.template.time_period,
                "visit": self.visit,
                "step": self.step,
                "seconds": self.seconds,
                "resident_max": self.resident_max,
                "view_rng": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
            }
        )

    # -- training ---------------------------------------------------------------------------------------------
    def train(self, max_visits: int | None = None) -> StreamedResult:
        """Run the schedule to its end (or `max_visits` more visits), resuming a committed state in `work_dir`."""
        torch.manual_seed(self.cfg.seed)
        if self._open_store():
            self.console.print(f"resuming streamed training at visit {self.visit} of {len(self.schedule)}")
        stop = len(self.schedule) if max_visits is None else min(len(self.schedule), self.visit + max_visits)
        with (
            training_progress(self.cfg.progress, self.console) as progress,
            terminate_as_interrupt((signal.SIGTERM,)),
        ):
            task = progress.add_task("training", total=self.total_steps, completed=self.step, stats="")
            t_session, seconds_before = time.perf_counter(), self.seconds
            before = (self.step, self.generator.get_state(), torch.get_rng_state())
            try:
                while self.visit < stop:
                    before = (self.step, self.generator.get_state(), torch.get_rng_state())
                    logs = self._visit(self.schedule[self.visit])
                    self.visit += 1
                    self.seconds = seconds_before + time.perf_counter() - t_session
                    progress.update(task, completed=self.step, stats=logs)
                    if self.visit % self.cfg.checkpoint_every == 0:
                        self.commit()
            except KeyboardInterrupt as exc:
                if not self._putting:
                    # The store still holds the state from before the interrupted visit: commit that, with the
                    # step and RNGs of then, so the visit is redone exactly on resume.
                    self.step, view_rng, torch_rng = before
                    self.generator.set_state(view_rng)
                    torch.set_rng_state(torch_rng)
                    self.commit()
                # (interrupted while putting a visit's segments back: the last commit stands)
                raise TrainingInterrupted(self.step, self.store.state_path) from exc
        self.commit()
        return self.result()

    def result(self) -> StreamedResult:
        assert self.store is not None
        return StreamedResult(
            self.step, self.seconds, len(self.store), self.resident_max, self.store.reads, self.store.writes
        )

    def _visit(self, leaf: int) -> str:
        """Train `steps_per_visit` steps on `leaf`'s path; returns a progress line."""
        assert self.store is not None
        t = self.leaf_time(leaf)
        path = self.tree.path(t)
        states = [self.store.get(s) for s in path]
        scene, optimizers = self._assemble(states)
        self.resident_max = max(self.resident_max, len(scene))
        loss_fn = self.make_loss(scene)
        strategy = Density4DStrategy(self._strategy_config())
        strategy_state = strategy.init_state(self.scene_scale)
        strategy_state["grad2d"], strategy_state["count"] = (
            torch.cat([s[name] for s in states]).to(self.device) for name in ACCUMULATORS
        )
        ids = self.leaf_views[leaf]
        batches = self.views.load(ids, 2 if self.step < self.cfg.coarse_until else 1)
        step0, loss, psnr = self.step, 0.0, float("nan")
        for _ in range(self.cfg.steps_per_visit):
            lr = self.optim.means_lr_at(self.step, self.total_steps, self.scene_scale)
            set_lr(optimizers["means4"], lr)
            batch = batches[int(torch.randint(len(batches), (1,), generator=self.generator))]
            result = loss_fn.train_step(batch, self.step)
            ctx = StepContext(step=self.step, info=result.info, lr_means=lr)
            strategy.step_pre_backward(scene, optimizers, strategy_state, ctx)
            result.loss.backward()
            for opt in optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            strategy.accumulate(len(scene), strategy_state, result.info)
            loss, psnr = float(result.loss.detach()), result.logs.get("psnr", psnr)
            self.step += 1
        # The segments this refinement period leaves now (a suffix of the path, so a suffix of the rows) are
        # densified on the gradients of all their visits in the period; the others keep accumulating.
        level = self.leaving_level(self.visit) if self.cfg.densify == "sweep" else 0
        kept = sum(state_len(s) for s in states[:level])
        accumulated = [strategy_state[key][:kept].clone() for key in ("grad2d", "count")]
        # Each row's segment level rides through densification as a frozen extra parameter (the strategy's edits
        # carry every parameter: a clone or split child inherits its parent's), for re-homing below.
        homes = [torch.full((state_len(x),), float(s.level)) for s, x in zip(path, states, strict=True)]
        scene.params[HOME] = torch.nn.Parameter(torch.cat(homes).to(self.device), requires_grad=False)
        c = strategy.config
        if kept < len(scene) and c.refine_start_iter <= step0 and self.step <= c.refine_stop_iter:
            strategy.refine(scene, optimizers, strategy_state, self.step, first_eligible=kept)
        floor = scene.params.pop(HOME).detach().long()
        fresh = torch.zeros(len(scene) - kept, device=self.device)
        self.resident_max = max(self.resident_max, len(scene))
        self.put_back(path, scene, optimizers, t, [torch.cat([a, fresh]) for a in accumulated], floor)
        n = len(scene)
        return (
            f"visit {self.visit + 1}/{len(self.schedule)}  loss {loss:.4f}  psnr {psnr:5.2f}  #G path {n:,}"
        )

    def _strategy_config(self) -> Density4DConfig:
        """The densification config with its own schedule switched off: `_visit` refines, and never resets. Pruning
        by size starts where flat training's would, after the step of the first reset (skipped here)."""
        base = self.strategy_cfg or Density4DConfig()
        after = base.reset_every if base.prune_scale_after is None else base.prune_scale_after
        return dataclasses.replace(
            base,
            refine_every=self.total_steps + 1,
            reset_every=self.total_steps + 1,
            prune_scale_after=after,
        )

    def _assemble(self, states: list[SegmentState]) -> tuple[Gaussians4D, dict[str, torch.optim.Optimizer]]:
        """One scene of the path's Gaussians, root first, with one Adam per parameter holding their moments."""
        assert self.template is not None
        names = list(self.template.params)
        scene = Gaussians4D({k: torch.cat([s[k] for s in states]) for k in names}, self.template.time_period)
        scene = scene.to(self.device)
        # One Adam step count for the whole path, the global step, as the flat trainer's torch Adam has for every
        # Gaussian: fresh moments (a segment first trained late, a densification child) then get no bias
        # correction, exactly as new Gaussians do in flat training, which the learning rates are tuned for.
        optimizers = build_optimizers(scene.params, self.optim, self.scene_scale)
        step = torch.tensor(float(self.step))
        for name, opt in optimizers.items():
            opt.state[scene.params[name]] = {"step": step.clone()} | {
                m: torch.cat([s[f"{m}/{name}"] for s in states]).to(self.device) for m in MOMENTS
            }
        return scene, optimizers

    @torch.no_grad()
    def put_back(
        self,
        path: list[Segment],
        scene: Gaussians4D,
        optimizers: dict[str, torch.optim.Optimizer],
        t: float,
        accumulated: list[Tensor] | None = None,
        floor: Tensor | None = None,
    ) -> None:
        """Re-home every Gaussian of `scene` (the Gaussians of `path`, the path of time t) into the deepest segment
        of the path that contains its lifespan, and put each segment's share, parameters with their Adam moments
        and densification statistics (`accumulated`: grad2d and count sums [N], zero when None), back in the
        store (module docstring). Unless `cfg.promote`, no Gaussian moves above its `floor` level [N] (its own
        segment's level; None: the root, no limit)."""
        assert self.store is not None
        starts, ends = lifespans(scene)
        levels = self.tree.deepest_on_path(starts, ends, t)
        if floor is not None and not self.cfg.promote:
            levels = torch.maximum(levels, floor.to(levels.device))
        levels = levels.to(scene.means4.device)
        tensors = {}
        for name, param in scene.params.items():
            tensors[name] = param.detach()
            state = optimizers[name].state.get(param, {})
            for m in MOMENTS:
                tensors[f"{m}/{name}"] = state[m] if m in state else torch.zeros_like(param)
        for name, value in zip(ACCUMULATORS, accumulated or [None, None], strict=True):
            tensors[name] = (
                value if value is not None else torch.zeros(len(scene), device=scene.means4.device)
            )
        shares = [(s, {k: v[levels == s.level].clone() for k, v in tensors.items()}) for s in path]
        self._putting = True  # the puts below change the store segment by segment: not a state to commit
        for segment, state in shares:
            self.store.put(segment, state)
        self._putting = False

    # -- output -----------------------------------------------------------------------------------------------
    def export(self, directory: Path) -> Path:
        """Write the trained hierarchy as a `splat4d.hierarchy` folder (one segment in memory at a time), which
        `HierarchicalScene` and `splat4d view` stream. Returns the manifest's path."""
        if self.store is None:
            self._open_store()
        assert self.store is not None and self.template is not None
        names = list(self.template.params)

        def items():
            for segment, state in self.store.states():
                g = Gaussians4D({k: state[k].detach().cpu() for k in names}, self.template.time_period)
                yield segment, g, len(g)

        return write_segments(Path(directory), self.tree, self.template, DEFAULT_THRESHOLD, items())


def _with_zero_moments(gaussians: Gaussians4D, device: torch.device) -> SegmentState:
    state = {}
    for name, p in gaussians.params.items():
        state[name] = p.detach().to(device)
        for m in MOMENTS:
            state[f"{m}/{name}"] = torch.zeros_like(state[name])
    for name in ACCUMULATORS:
        state[name] = torch.zeros(len(gaussians), device=device)
    return state


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} in a streamed-training state")
    return value
