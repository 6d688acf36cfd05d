"""Where the sparse pipeline's initial points come from: the dataset's point cloud, points triangulated from the
chosen views at their known poses, or random points when too few triangulate."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.sparse_view import PRESETS, build, load_sparse_scene
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import SampleConfig, write_sample_scene


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    cfg = SampleConfig(n_views=8, width=160, height=120, arc_degrees=90.0, n_points=300)
    write_sample_scene(cfg, folder, progress=False)
    return folder


def _cfg(photos: Path, mode: str, views: int | None = None, min_points: int = 10):
    cfg = PRESETS["fast"]
    triangulation = dataclasses.replace(cfg.triangulation, mode=mode, min_points=min_points)
    return dataclasses.replace(cfg, data=DataConfig(path=photos), views=views, triangulation=triangulation)


def test_the_dataset_point_cloud_is_kept_unless_triangulation_is_forced(photos: Path, tmp_path: Path) -> None:
    auto = load_sparse_scene(_cfg(photos, "auto"), tmp_path)
    assert auto.points is not None and len(auto.points) == 300  # points3d.ply
    assert "triangulated_points" not in auto.metadata and not (tmp_path / "triangulation").exists()
    forced = load_sparse_scene(_cfg(photos, "always", views=4), tmp_path)
    n = forced.metadata["triangulated_points"]
    assert n >= 10 and len(forced.points) == n and forced.point_colors.shape == (n, 3)
    # the points come from the 4 chosen views only: in front of every one of them
    for i in forced.train_indices:
        T = forced.cameras.T_cam_world[i].double().numpy()
        assert ((forced.points @ T[:3, :3].T + T[:3, 3])[:, 2] > 0).mean() > 0.9
    # and the Gaussians start there, one per point in each field
    gaussians = build(_cfg(photos, "always", views=4), forced, torch.device("cpu")).gaussians
    np.testing.assert_allclose(gaussians.means.detach().numpy(), forced.points, atol=1e-5)


def test_too_few_triangulated_points_fall_back_to_random_ones(photos: Path, tmp_path: Path) -> None:
    cfg = _cfg(photos, "always", views=4, min_points=100_000)
    scene = load_sparse_scene(cfg, tmp_path)
    assert scene.points is None and scene.metadata["triangulated_points"] > 0
    gaussians = build(cfg, scene, torch.device("cpu")).gaussians
    assert len(gaussians) == cfg.init.random_points
