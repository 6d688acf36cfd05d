"""Triangulation at known poses: the epipolar geometry, the guided matcher, and a tiny procedural scene whose
points must land on its true surfaces with the cameras unchanged."""

import math
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.data import load_scene
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.data.triangulate import (
    TriangulationConfig,
    epipolar_matches,
    fundamental_matrix,
    triangulate_views,
)
from splat4d.geometry import look_at


def _two_cameras() -> Cameras:
    up = torch.tensor([0.0, 0.0, 1.0])
    poses = [look_at(torch.tensor([3.0, 0.0, 1.0]), torch.zeros(3), up)]
    poses.append(look_at(torch.tensor([3.0 * math.cos(0.5), 3.0 * math.sin(0.5), 1.2]), torch.zeros(3), up))
    K = torch.tensor([[80.0, 0, 64], [0, 80.0, 48], [0, 0, 1]])
    return Cameras(torch.stack(poses), K.expand(2, 3, 3).clone(), 128, 96)


def _project(cameras: Cameras, i: int, points: np.ndarray) -> np.ndarray:
    T = cameras.T_cam_world[i].double().numpy()
    K = cameras.Ks[i].double().numpy()
    p = points @ T[:3, :3].T + T[:3, 3]
    return (p @ K.T)[:, :2] / p[:, 2:]


def test_fundamental_matrix_relates_projections_of_one_point() -> None:
    cameras = _two_cameras()
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (20, 3))
    xa, xb = _project(cameras, 0, points), _project(cameras, 1, points)
    F = fundamental_matrix(cameras, 0, 1)
    ha, hb = np.c_[xa, np.ones(20)], np.c_[xb, np.ones(20)]
    line_norm = np.linalg.norm((ha @ F.T)[:, :2], axis=1)
    np.testing.assert_allclose(np.einsum("ij,jk,ik->i", hb, F, ha) / line_norm, 0.0, atol=1e-9)


def test_matches_follow_the_epipolar_lines_and_skip_look_alikes_off_them() -> None:
    cameras = _two_cameras()
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.5, 0.5, (30, 3))
    xa, xb = _project(cameras, 0, points), _project(cameras, 1, points)
    desc = rng.random((30, 128))
    # b also holds, far from every epipolar line of a, exact copies of a's first 10 descriptors
    decoys = np.c_[np.full(10, -500.0), np.linspace(-500, 500, 10)]
    noisy = desc + 0.02 * rng.random((30, 128))
    matches = epipolar_matches(
        xa, desc, np.r_[xb, decoys], np.r_[noisy, desc[:10]], fundamental_matrix(cameras, 0, 1), 2.0, 0.8
    )
    assert matches.dtype == np.uint32
    assert sorted(map(tuple, matches.tolist())) == [(i, i) for i in range(30)]
    # a wrong geometry (camera b placed 0.5 higher) leaves the true correspondences off their lines
    T = cameras.T_world_cam.clone()
    T[1, 2, 3] += 0.5
    moved = Cameras(T, cameras.Ks, cameras.width, cameras.height)
    wrong = epipolar_matches(xa, desc, xb, noisy, fundamental_matrix(moved, 0, 1), 2.0, 0.8)
    assert len(wrong) < 5


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    cfg = SampleConfig(n_views=8, width=160, height=120, arc_degrees=90.0, n_points=100)
    write_sample_scene(cfg, folder, progress=False)
    return folder


def test_points_triangulated_at_known_poses_lie_on_the_true_surfaces(
    tiny_scene: Path, tmp_path: Path
) -> None:
    scene = load_scene(DataConfig(path=tiny_scene), tmp_path / "cache")
    views = scene.train_indices
    found = triangulate_views(scene, views, TriangulationConfig(), tmp_path / "tri")
    assert len(found.points) >= 50 and (found.track_lengths >= 3).all()
    assert found.colors.min() >= 0 and found.colors.max() <= 1

    # each point is, in some training view, within 2% of that view's exact depth at its pixel
    cams = scene.cameras
    rel = np.full(len(found.points), np.inf)
    for i in views:
        T, K = cams.T_cam_world[i].double().numpy(), cams.Ks[i].double().numpy()
        p = found.points @ T[:3, :3].T + T[:3, 3]
        uv = np.floor((p @ K.T)[:, :2] / p[:, 2:]).astype(int)
        inside = (p[:, 2] > 0) & (uv >= 0).all(1) & (uv[:, 0] < cams.width) & (uv[:, 1] < cams.height)
        depth = np.load(scene.depth_paths[i])
        z = depth[uv[inside, 1], uv[inside, 0]]
        rel[inside] = np.minimum(rel[inside], np.abs(z - p[inside, 2]) / p[inside, 2])
    assert np.mean(rel < 0.02) > 0.9, np.quantile(rel, [0.5, 0.9])

    # the model holds the cameras as given: same intrinsics and poses
    model = pycolmap.Reconstruction(tmp_path / "tri" / "model")
    assert model.num_reg_images() == len(views)
    for k, i in enumerate(views):
        image = model.find_image_with_name(f"view_{k:03d}.png")
        T = image.cam_from_world().matrix()
        np.testing.assert_allclose(T, cams.T_cam_world[i, :3].double().numpy(), atol=1e-5)
        K = image.camera.calibration_matrix()
        np.testing.assert_allclose(K, cams.Ks[i].double().numpy(), atol=1e-4)

    # the same inputs again: read from the folder, not triangulated anew
    stamp = (tmp_path / "tri" / "stamp.json").stat().st_mtime_ns
    again = triangulate_views(scene, views, TriangulationConfig(), tmp_path / "tri")
    np.testing.assert_array_equal(again.points, found.points)
    assert (tmp_path / "tri" / "stamp.json").stat().st_mtime_ns == stamp
