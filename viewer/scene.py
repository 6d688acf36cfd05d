"""What the viewer shows, and how it gets it: a fixed scene from disk, or snapshots published during training.

`ViewedScene` bundles a Gaussian scene (3D or 4D) with the render settings of the pipeline that made it (its
background, antialiasing) and its training cameras. `SceneSource` holds the current one and swaps it atomically, so
that client render threads never see a scene half-way through an optimiser step: training publishes *copies*.
"""

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.reconstruct import SceneFolderError
from splat4d.render import RenderSettings

if TYPE_CHECKING:
    from splat4d.hierarchy import HierarchicalScene


@dataclass(frozen=True)
class ViewedScene:
    gaussians: Gaussians | Gaussians4D
    settings: RenderSettings = field(default_factory=RenderSettings)
    cameras: Cameras | None = None
    """Training cameras (frustums in the viewer; a click moves the view there)."""
    step: int | None = None
    """Training step the parameters come from, when known."""
    stream: "HierarchicalScene | None" = None
    """A temporal hierarchy streamed from disk: then `gaussians` is only its path at t = 0.5 (for bounds), and
    `at(t)` loads the segments of t."""

    def at(self, t: float | None) -> Gaussians | Gaussians4D:
        """The Gaussians to render at t (the whole scene unless it is streamed)."""
        if self.stream is None or t is None:
            return self.gaussians
        return self.stream.gaussians_at(t)

    @property
    def num_gaussians(self) -> int:
        return self.stream.num_gaussians if self.stream is not None else len(self.gaussians)

    @property
    def is_4d(self) -> bool:
        return isinstance(self.gaussians, Gaussians4D)

    @property
    def frame_times(self) -> list[float]:
        """The distinct capture times of the cameras (for frame stepping); [] for a static scene."""
        if self.cameras is None or self.cameras.times is None:
            return []
        return sorted({round(float(t), 6) for t in self.cameras.times})

    def means(self) -> Tensor:
        g = self.gaussians
        return g.means4[:, :3] if isinstance(g, Gaussians4D) else g.means

    def bounds(self) -> tuple[list[float], list[float]]:
        """Axis-aligned box holding 98% of the Gaussians' centres along each axis (robust to far floaters)."""
        m = self.means().detach().float().cpu()
        if len(m) == 0:
            return [0.0] * 3, [0.0] * 3
        lo, hi = torch.quantile(m, torch.tensor([0.01, 0.99]), dim=0)
        return lo.tolist(), hi.tolist()


def detached_copy(gaussians: Gaussians | Gaussians4D) -> Gaussians | Gaussians4D:
    """A copy of the scene's parameters that later optimiser steps and densification do not touch."""
    params = {k: v.detach().clone() for k, v in gaussians.params.items()}
    if isinstance(gaussians, Gaussians4D):
        return Gaussians4D(params, time_period=gaussians.time_period)
    return Gaussians(params)


class SceneSource:
    """The current `ViewedScene`, replaced as a whole by `publish` (thread-safe)."""

    def __init__(self, scene: ViewedScene | None = None) -> None:
        self._lock = threading.Lock()
        self._scene = scene
        self._version = 0 if scene is None else 1
        self._listeners: list[Callable[[], None]] = []

    def publish(self, scene: ViewedScene) -> None:
        with self._lock:
            self._scene = scene
            self._version += 1
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def current(self) -> tuple[ViewedScene | None, int]:
        """The scene and its version number (0 while nothing is published yet)."""
        with self._lock:
            return self._scene, self._version

    def on_publish(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)


class ViewSceneError(SceneFolderError):
    """SCENE is neither a scene folder nor a splat PLY file."""


def load_view_scene(path: Path, pipelines: Mapping[str, Any], device: torch.device) -> ViewedScene:
    """A scene folder written by `splat4d reconstruct` (its pipeline, newest checkpoint and cameras), a temporal
    hierarchy folder written by `splat4d export hierarchy` (streamed), or a 3DGS / 4D splat4d PLY file (rendered
    on a black background, no cameras).

    Raises:
        ViewSceneError: SCENE is missing, or a PLY file or hierarchy that cannot be shown (damaged, or holding
            Gaussians that cannot be drawn); the message is one line naming the file.
    """
    from splat4d.hierarchy import MANIFEST_NAME, HierarchicalScene, HierarchyFormatError
    from splat4d.io.ply import PlyError, read_any_ply
    from splat4d.reconstruct import CONFIG_FILE

    path = Path(path)
    if (path / MANIFEST_NAME).is_file():
        try:
            stream = HierarchicalScene(path, device)
            return ViewedScene(stream.gaussians_at(0.5), stream=stream)
        except HierarchyFormatError as exc:
            raise ViewSceneError(str(exc)) from None
    if path.is_file():
        try:
            gaussians = read_any_ply(path)
        except PlyError as exc:
            raise ViewSceneError(str(exc)) from None
        return ViewedScene(gaussians.to(device))
    if path.is_dir() and path.suffix.lower() == ".ply" and not (path / CONFIG_FILE).exists():
        raise ViewSceneError(f"{path}: is a folder, not a PLY file; name the .ply file itself")
    if not path.is_dir():
        raise ViewSceneError(f"{path}: no such scene folder or PLY file")
    from splat4d.reconstruct import load_trained

    trained = load_trained(path, dict(pipelines), device)
    pipeline = trained.pipeline
    cameras = trained.scene.cameras[torch.tensor(trained.scene.train_indices)]
    # A streamed pipeline (the long pipeline's) has a `stream`: the viewer then loads the segments of each time.
    stream = getattr(pipeline, "stream", None)
    return ViewedScene(pipeline.gaussians, pipeline.settings(), cameras, trained.step, stream=stream)
