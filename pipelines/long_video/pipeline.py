"""The long-video pipeline: `splat4d reconstruct VIDEO_INPUT -o OUT --pipeline long`.

Training streams through a temporal Gaussian hierarchy (`splat4d.hierarchy.training.StreamedTrainer`): one
root-to-leaf path of time segments and the training views of one leaf are in memory at a time, whatever the
video's length. The scene folder holds `store/` (the training state, one file per segment, from which a killed run
resumes) and `hierarchy/` (the trained scene, written when training ends), which `splat4d view OUT` and
`splat4d export video OUT` stream segment by segment (`StreamedPipeline`).
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from pipelines.dynamic.config import rigidity_weight_for
from pipelines.dynamic.pipeline import DynamicPipeline
from pipelines.dynamic.scene import is_monocular
from pipelines.long_video.config import LongVideoConfig
from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.dataset import Batch, ImageDataset, working_downscale
from splat4d.gaussians import Gaussians4D
from splat4d.hierarchy import MANIFEST_NAME, HierarchicalScene
from splat4d.hierarchy.segment_store import STATE_NAME, load_state_file
from splat4d.hierarchy.training import HierarchyTrainConfig, StreamedTrainer
from splat4d.hierarchy.tree import TimeTree
from splat4d.initialization import init_gaussians_4d, scene_extent
from splat4d.render import RenderOutput, RenderSettings

STORE, HIERARCHY = "store", "hierarchy"


class SceneViews:
    """A scene's training views, one leaf's worth decoded at a time (a `splat4d.hierarchy.training.ViewSource`)."""

    def __init__(self, scene: SceneData, downscale: int, device: torch.device) -> None:
        self.scene, self.downscale, self.device = scene, downscale, device

    def times(self) -> torch.Tensor:
        assert self.scene.cameras.times is not None
        return self.scene.cameras.times[torch.tensor(self.scene.train_indices)]

    def load(self, ids: list[int], downscale: int = 1) -> Sequence[Batch]:
        indices = [self.scene.train_indices[i] for i in ids]
        return ImageDataset(self.scene, indices, self.downscale * downscale, self.device)


class StreamedPipeline:
    """A trained long video as a `splat4d.pipeline.Pipeline` for viewing, evaluation and video export: renders
    stream the segments of each time from `stream`; `gaussians` is only the path at mid-sequence (for bounds)."""

    def __init__(self, stream: HierarchicalScene, render_settings: RenderSettings) -> None:
        self.stream = stream
        self._settings = render_settings
        self.gaussians: Gaussians4D = stream.gaussians_at(0.5)

    def settings(self) -> RenderSettings:
        return self._settings

    def train_step(self, batch: Batch, step: int) -> Any:
        raise TypeError("a streamed scene is trained by splat4d.hierarchy.training, not step by step")

    def render_view(self, cameras: Cameras, t: float | None = None) -> RenderOutput:
        if t is None:
            if cameras.times is None:
                raise ValueError("StreamedPipeline.render_view: a 4D scene needs a time (t or cameras.times)")
            t = float(cameras.times[0])
        return self.stream.render(cameras, t, self._settings)


def _check(cfg: LongVideoConfig, scene: SceneData) -> None:
    if scene.cameras.times is None:
        raise DatasetError(
            f"{cfg.data.path}: the long pipeline needs a capture time per image (a video, or `time` in "
            "transforms.json); this dataset has none — use the static pipeline"
        )


def _settings(cfg: LongVideoConfig, scene: SceneData) -> RenderSettings:
    background = cfg.background or scene.background or (0.0, 0.0, 0.0)
    return RenderSettings(background=tuple(background), antialiased=cfg.antialiased)


def hierarchy_config(cfg: LongVideoConfig, scene: SceneData) -> HierarchyTrainConfig:
    """The streamed schedule: the tree's depth from the number of capture times, and as many sweeps over the
    leaves as `cfg.trainer.steps` needs."""
    assert scene.cameras.times is not None
    times = scene.cameras.times[torch.tensor(scene.train_indices)]
    s = cfg.streaming
    depth = s.depth_for(len(torch.unique(times)))
    leaves = len(torch.unique(TimeTree(depth).leaf_indices(times)))
    per_sweep = leaves * s.steps_per_visit
    sweeps = max(1, round(cfg.trainer.steps / per_sweep))
    return HierarchyTrainConfig(
        depth=depth,
        sweeps=sweeps,
        steps_per_visit=s.steps_per_visit,
        points_per_path=s.points_per_path,
        densify=s.densify,
        promote=s.promote,
        order=s.order,
        coarse_until=cfg.trainer.coarse_until,
        checkpoint_every=max(1, cfg.trainer.checkpoint_every // s.steps_per_visit),
        seed=cfg.trainer.seed,
        progress=cfg.trainer.progress,
    )


def train(
    cfg: LongVideoConfig, scene: SceneData, out: Path, device: torch.device, console: Console
) -> tuple[StreamedPipeline, dict[str, Any]]:
    """Train streamed into `out/store`, write `out/hierarchy`; returns the streamed scene and training figures."""
    _check(cfg, scene)
    hcfg = hierarchy_config(cfg, scene)
    settings = _settings(cfg, scene)
    background = settings.background

    rigidity_weight = rigidity_weight_for(cfg, is_monocular(scene))

    def make_loss(gaussians: Gaussians4D) -> DynamicPipeline:
        return DynamicPipeline(cfg, gaussians, background, rigidity_weight)

    def initial() -> Gaussians4D:
        return init_gaussians_4d(scene, dataclasses.replace(cfg.init, time_copies=1))

    trainer = StreamedTrainer(
        hcfg, make_loss, SceneViews(scene, working_downscale(scene, cfg.data.downscale, cfg.data.max_size), device), Path(out) / STORE, initial,
        scene_extent(scene), cfg.optim, cfg.strategy, device, console,
    )  # fmt: skip
    console.print(
        f"streamed training: a depth-{hcfg.depth} time tree ({hcfg.tree.num_leaves} leaves), "
        f"{hcfg.sweeps} sweeps of {hcfg.steps_per_visit} steps per leaf, {trainer.total_steps} steps"
    )
    result = trainer.train()
    trainer.export(Path(out) / HIERARCHY)
    pipeline = StreamedPipeline(HierarchicalScene(Path(out) / HIERARCHY, device), settings)
    extra = {
        "steps": result.step,
        "train_seconds": result.seconds,
        "num_gaussians": result.num_gaussians,
        "resident_gaussians_max": result.resident_gaussians_max,
        "hierarchy_depth": hcfg.depth,
    }
    return pipeline, extra


def load(
    cfg: LongVideoConfig, scene: SceneData, out: Path, device: torch.device
) -> tuple[StreamedPipeline, int]:
    """The trained scene of folder `out` and the step it was trained to."""
    from splat4d.reconstruct import SceneFolderError

    folder = Path(out) / HIERARCHY
    if not (folder / MANIFEST_NAME).is_file():
        raise SceneFolderError(f"{out}: no trained hierarchy yet; train it with `splat4d reconstruct` first")
    state = load_state_file(Path(out) / STORE / STATE_NAME)
    return StreamedPipeline(HierarchicalScene(folder, device), _settings(cfg, scene)), int(state["step"])
