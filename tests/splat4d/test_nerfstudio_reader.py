"""`read_nerfstudio` on the procedural sample scene: cameras, split, times and the OpenGL→OpenCV convention."""

from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d.data.nerfstudio import DatasetError, read_nerfstudio
from splat4d.data.synthetic import SampleConfig, write_sample_scene


@pytest.fixture(scope="module")
def static_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scene") / "static"
    write_sample_scene(SampleConfig(n_views=9, width=64, height=48), out, progress=False)
    return out


def test_reader_returns_every_frame_with_the_file_split(static_scene: Path) -> None:
    scene = read_nerfstudio(static_scene)
    assert len(scene.cameras) == 9 and (scene.cameras.width, scene.cameras.height) == (64, 48)
    assert sorted(scene.train_indices + scene.test_indices) == list(range(9))
    assert not set(scene.train_indices) & set(scene.test_indices)
    assert scene.cameras.times is None
    assert scene.points is not None and scene.points.shape[1] == 3


def _backproject(depth: torch.Tensor, K: torch.Tensor, T_world_cam: torch.Tensor) -> torch.Tensor:
    v, u = torch.nonzero(depth > 0, as_tuple=True)
    z = depth[v, u]
    x = (u + 0.5 - K[0, 2]) / K[0, 0] * z
    y = (v + 0.5 - K[1, 2]) / K[1, 1] * z
    return torch.stack([x, y, z], -1) @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]


def test_depth_of_one_view_reprojects_onto_the_depth_of_another(static_scene: Path) -> None:
    # Exercises the OpenGL→OpenCV conversion: wrong axes put the points somewhere the other view sees otherwise.
    scene = read_nerfstudio(static_scene)
    i, j = scene.train_indices[0], scene.train_indices[1]
    cams = scene.cameras
    points = _backproject(torch.from_numpy(np.load(scene.depth_paths[i])), cams.Ks[i], cams.T_world_cam[i])
    p_cam = points @ cams.T_cam_world[j][:3, :3].T + cams.T_cam_world[j][:3, 3]
    uv = p_cam[:, :2] / p_cam[:, 2:] @ cams.Ks[j][:2, :2].T + cams.Ks[j][:2, 2]
    u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (p_cam[:, 2] > 0) & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
    assert inside.float().mean() > 0.3
    depth_j = torch.from_numpy(np.load(scene.depth_paths[j]))[v[inside], u[inside]]
    rel = (depth_j - p_cam[inside, 2]).abs() / p_cam[inside, 2]
    assert rel.median() < 0.03  # occlusions and pixel rounding only affect a minority


def test_reader_names_the_file_when_it_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"transforms\.json"):
        read_nerfstudio(tmp_path)
