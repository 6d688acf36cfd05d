"""The scene as the dynamic pipeline reads it: the dataset, plus initial points triangulated from its first
instant when it comes without a point cloud.

Synchronised multi-view video (an N3DV folder) has poses but no points, and random initial points cost its
reconstructions about 4 dB on the bench (`bench/dynamic.py`, `multiview_video`). N3DV users run COLMAP on the
first frame of every camera; here the poses are known, so the training views at the earliest capture time are
triangulated at those poses (`splat4d.data.triangulate`, cached in the scene's work folder). The points are
static, so the 4D initialisation spreads copies of them over time (`Init4DConfig.time_copies`). With one camera
(D-NeRF style, one view per instant), or fewer than `triangulation.min_points` triangulated points, training
starts from random points as before.
"""

from pathlib import Path

import torch

from pipelines.dynamic.config import DynamicConfig
from splat4d.data import load_scene
from splat4d.data.base import SceneData
from splat4d.data.triangulate import with_triangulated_points


def first_instant_views(scene: SceneData) -> list[int]:
    """The training views captured at the earliest capture time among them (none when the views have no times:
    the dynamic pipeline refuses such a scene)."""
    times = scene.cameras.times
    if times is None or not scene.train_indices:
        return []
    first = min(float(times[i]) for i in scene.train_indices)
    return [i for i in scene.train_indices if abs(float(times[i]) - first) < 1e-6]


def is_monocular(scene: SceneData) -> bool:
    """Whether every capture time among the training views was seen by one view only (one moving camera, as
    D-NeRF's scenes), rather than by several cameras at once (multi-view video)."""
    times = scene.cameras.times
    if times is None or not scene.train_indices:
        return False
    moments = torch.round(times[scene.train_indices].double() * 1e6)
    return len(torch.unique(moments)) == len(scene.train_indices)


def load_dynamic_scene(cfg: DynamicConfig, workdir: Path) -> SceneData:
    """`cfg.data`'s scene, with points triangulated from its first instant when `cfg.triangulation.mode` asks."""
    scene = load_scene(cfg.data, workdir)
    mode = cfg.triangulation.mode
    if mode == "always" or (mode == "auto" and scene.points is None):
        views = first_instant_views(scene)
        if len(views) >= 2:
            scene = with_triangulated_points(scene, cfg.triangulation, Path(workdir) / "triangulation", views)
    return scene
