"""The LLFF reader: poses_bounds.npy beside images/ and images_<k>/, the folder chosen by --data.downscale, LLFF's
axes converted to OpenCV, the sparse-view protocol's split and evenly spaced training views."""

import dataclasses
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pipelines.sparse_view.views import even_views, select_views
from splat4d.data import detect_format, load_scene
from splat4d.data.base import DatasetError
from splat4d.data.config import DataConfig
from splat4d.data.dataset import ImageDataset
from splat4d.data.llff_poses import llff_to_opencv, opencv_to_llff
from splat4d.geometry import look_at
from tests.reliability.conftest import assert_one_line_error, run_cli

N, W, H, FOCAL = 10, 64, 48, 60.0


def _poses() -> np.ndarray:
    """N forward-facing cameras on a small arc looking at the origin, as LLFF rows (3x5 + near, far)."""
    rows = []
    for i in range(N):
        eye = torch.tensor([0.3 * np.sin(i / N), 0.1 * np.cos(i), -3.0], dtype=torch.float32)
        T = look_at(eye, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])).double().numpy()
        rows.append(np.concatenate([opencv_to_llff(T, float(H), float(W), FOCAL).ravel(), [1.5, 6.0]]))
    return np.stack(rows)


def write_llff(root: Path, factors: tuple[int, ...] = (1, 2), poses: np.ndarray | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "poses_bounds.npy", _poses() if poses is None else poses)
    rng = np.random.default_rng(0)
    for k in factors:
        folder = root / ("images" if k == 1 else f"images_{k}")
        folder.mkdir()
        for i in range(N):
            iio.imwrite(folder / f"img{i:03d}.png", rng.integers(0, 255, (H // k, W // k, 3), dtype=np.uint8))
    return root


def test_an_llff_folder_is_detected_and_read_in_opencv_axes(tmp_path):
    root = write_llff(tmp_path / "scene")
    assert detect_format(root) == "llff"
    scene = load_scene(DataConfig(path=root), tmp_path / "work")
    assert (scene.cameras.width, scene.cameras.height) == (W, H)
    expected = np.stack([llff_to_opencv(row[:15].reshape(3, 5)) for row in _poses()])
    np.testing.assert_allclose(scene.cameras.T_world_cam.numpy(), expected, atol=1e-5)
    # OpenCV axes: every camera looks along +z towards the origin.
    forward = scene.cameras.T_world_cam[:, :3, 2]
    to_origin = torch.nn.functional.normalize(-scene.cameras.centers, dim=-1)
    assert ((forward * to_origin).sum(-1) > 0.99).all()
    assert scene.test_indices == [0, 8] and scene.train_indices == [1, 2, 3, 4, 5, 6, 7, 9]
    assert scene.metadata["near"][0] == 1.5 and scene.metadata["scene_depth"] == [1.5, 6.0]


@pytest.mark.parametrize(("downscale", "folder", "size", "trained"), [
    (1, "images", (W, H), (W, H)),
    (2, "images_2", (W // 2, H // 2), (W // 2, H // 2)),
    (4, "images_2", (W // 2, H // 2), (W // 4, H // 4)),
])  # fmt: skip
def test_the_folder_matches_the_downscale_and_intrinsics_follow_it(
    tmp_path, downscale, folder, size, trained
):
    root = write_llff(tmp_path / "scene")
    scene = load_scene(DataConfig(path=root, downscale=downscale), tmp_path / "work")
    assert scene.image_paths[0].parent.name == folder and scene.metadata["image_folder"] == folder
    assert (scene.cameras.width, scene.cameras.height) == size
    assert scene.cameras.Ks[0, 0, 0].item() == pytest.approx(FOCAL * size[0] / W)
    data = ImageDataset(scene, scene.train_indices, downscale)  # only what the folder has not applied yet
    assert (data.width, data.height) == trained


def test_only_a_downsampled_folder_is_read_at_its_own_size(tmp_path):
    root = write_llff(tmp_path / "scene", factors=(2,))
    scene = load_scene(DataConfig(path=root), tmp_path / "work")
    assert scene.metadata["prescaled"] == 2 and (scene.cameras.width, scene.cameras.height) == (
        W // 2,
        H // 2,
    )
    assert ImageDataset(scene, [1], 1).width == W // 2


def test_views_are_evenly_spaced_over_the_training_images(tmp_path):
    assert even_views(17, 3) == [0, 8, 16] and even_views(5, 1) == [0] and even_views(4, 4) == [0, 1, 2, 3]
    scene = load_scene(DataConfig(path=write_llff(tmp_path / "scene")), tmp_path / "work")
    picked = select_views(scene, 3)
    assert picked.metadata["view_rule"] == "even"
    assert picked.metadata["source_views"] == [0, 1, 5, 8, 9]  # train 1, 5, 9 (of 1..7, 9) and test 0, 8
    assert select_views(scene, 3, "farthest").metadata["view_rule"] == "farthest"


@pytest.mark.parametrize("fault", ["rows", "shape", "nan", "bounds", "factor"])
def test_a_broken_llff_folder_is_one_line_naming_the_file(capsys, tmp_path, fault):
    poses = _poses()
    factors = (2,)
    if fault == "rows":
        poses = poses[:-1]
    elif fault == "shape":
        poses = poses[:, :15]
    elif fault == "nan":
        poses[3, 7] = np.nan
    elif fault == "bounds":
        poses[2, 15:] = [4.0, 1.0]
    root = write_llff(tmp_path / "scene", factors, poses)
    if fault == "factor":
        (root / "images_2").rename(root / "images_4")
    named = root / ("images_4" if fault == "factor" else "poses_bounds.npy")
    result = run_cli(capsys, "reconstruct", root, "-o", tmp_path / "out", "--steps", "2", "--no-progress")
    assert_one_line_error(result, named)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetError):
        load_scene(DataConfig(path=root), tmp_path / "work")


def test_the_real_fern_scene_follows_the_protocol(shared_data):
    fern = shared_data / "llff_fern"
    if not fern.is_dir():
        pytest.skip(f"{fern} not found")
    scene = load_scene(DataConfig(path=fern), fern / "__never_written__")
    assert len(scene.cameras) == 20 and (scene.cameras.width, scene.cameras.height) == (504, 378)
    assert scene.test_indices == [0, 8, 16]
    assert select_views(scene, 3).metadata["source_views"] == [0, 1, 8, 10, 16, 19]
    assert not (fern / "__never_written__").exists()


def test_random_points_of_a_forward_facing_scene_lie_in_the_cameras_depth_range(tmp_path):
    from splat4d.initialization import InitConfig, init_gaussians

    scene = load_scene(DataConfig(path=write_llff(tmp_path / "scene")), tmp_path / "work")
    means = init_gaussians(scene, InitConfig(random_points=2000, seed=3)).means.detach()
    T_cam_world = scene.cameras.T_cam_world[1]  # a training camera
    z = (T_cam_world[:3, :3] @ means.T).T[:, 2] + T_cam_world[2, 3]
    assert z.min() > 1.0 and z.max() < 6.5  # bounds 1.5..6 from every camera of a shallow arc
    assert z.median() < 3.5  # uniform in disparity: most points nearer than the middle depth


def test_a_forward_facing_scene_is_measured_by_its_depth_not_its_rig(tmp_path):
    from splat4d.initialization import scene_extent, scene_scale

    scene = load_scene(DataConfig(path=write_llff(tmp_path / "scene")), tmp_path / "work")
    assert scene_scale(scene.cameras) < 0.5  # the rig: cameras within 0.3 of their mean
    assert scene_extent(scene) == pytest.approx(1.5)  # the nearest bound: the scene starts 1.5 away
    without_bounds = dataclasses.replace(scene, metadata={})
    assert scene_extent(without_bounds) == scene_scale(scene.cameras)  # other captures: the rig, as before
