"""The dynamic pipeline's initial points for multi-view video without a point cloud (`pipelines.dynamic.scene`):
the training cameras' views of the first instant are triangulated at their known poses; one camera (D-NeRF style)
or `triangulation.mode = "never"` leaves random initial points."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from pipelines import PIPELINES
from pipelines.dynamic.scene import first_instant_views, load_dynamic_scene
from splat4d.data import load_scene
from splat4d.data.config import DataConfig, MultiviewVideoConfig
from splat4d.data.n3dv_sample import write_n3dv_sample
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.data.triangulate import TriangulationConfig

N_CAMERAS, N_FRAMES = 8, 2


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-camera rig over an 80° arc, 2 frames at 320×240 (SIFT needs the resolution), camera 2 held out."""
    cfg = SampleConfig(
        dynamic=True,
        layout="multiview",
        n_cameras=N_CAMERAS,
        n_frames=N_FRAMES,
        arc_degrees=80.0,
        test_camera=2,
    )
    out = tmp_path_factory.mktemp("sample") / "multiview"
    write_sample_scene(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def n3dv(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_n3dv_sample(sample, tmp_path_factory.mktemp("n3dv") / "scene")


def _cfg(path: Path, **triangulation):
    cfg = PIPELINES["dynamic"].presets["fast"]
    data = DataConfig(path=path, multiview=MultiviewVideoConfig(test_cameras=(2,)))
    return dataclasses.replace(cfg, data=data, triangulation=TriangulationConfig(**triangulation))


def test_first_instant_views_are_the_training_cameras_at_time_zero(n3dv: Path, tmp_path: Path) -> None:
    scene = load_scene(_cfg(n3dv).data, tmp_path)
    views = first_instant_views(scene)
    assert len(views) == N_CAMERAS - 1  # the held-out camera is not among them
    assert all(float(scene.cameras.times[i]) == 0.0 for i in views)
    assert set(views) <= set(scene.train_indices)


def test_multiview_video_gets_points_on_the_surface_from_its_first_frames(
    sample: Path, n3dv: Path, tmp_path: Path
) -> None:
    assert load_scene(_cfg(n3dv).data, tmp_path).points is None  # N3DV folders carry no point cloud
    scene = load_dynamic_scene(_cfg(n3dv), tmp_path / "cache")
    n = scene.metadata["triangulated_points"]
    assert scene.points is not None and len(scene.points) == n >= 100
    truth = trimesh.load(sample / "points3d.ply").vertices
    spacing = np.median(cKDTree(truth).query(truth, k=2)[0][:, 1])
    distance = cKDTree(truth).query(scene.points)[0]
    # The truth samples the surface about `spacing` apart, so a point on the surface lies within about that of one.
    assert np.median(distance) < 1.5 * spacing, (np.median(distance), spacing)
    assert scene.point_colors is not None and scene.point_colors.shape == scene.points.shape
    again = load_dynamic_scene(_cfg(n3dv), tmp_path / "cache")  # the cached triangulation is reused
    np.testing.assert_array_equal(again.points, scene.points)


def test_never_and_monocular_scenes_keep_random_initial_points(
    sample: Path, n3dv: Path, tmp_path: Path
) -> None:
    assert load_dynamic_scene(_cfg(n3dv, mode="never"), tmp_path / "never").points is None
    mono = tmp_path / "mono"
    write_sample_scene(
        SampleConfig(dynamic=True, n_views=6, width=64, height=48, n_points=50), mono, progress=False
    )
    cfg = dataclasses.replace(_cfg(mono, mode="always"), data=DataConfig(path=mono))
    scene = load_dynamic_scene(cfg, tmp_path / "cache")
    assert (
        len(first_instant_views(scene)) == 1
    )  # one moving camera: one view per instant, nothing to triangulate
    assert "triangulated_points" not in scene.metadata and len(scene.points) == 50  # the dataset's own points
    assert not (tmp_path / "cache" / "triangulation").exists()


def test_views_without_capture_times_have_no_first_instant(tmp_path: Path) -> None:
    static = tmp_path / "static"
    write_sample_scene(SampleConfig(n_views=4, width=32, height=24, n_points=20), static, progress=False)
    assert (
        first_instant_views(load_scene(DataConfig(path=static), tmp_path)) == []
    )  # build refuses it with one line
