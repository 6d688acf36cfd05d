"""The procedural sample scenes load as nerfstudio datasets and their depth agrees with their mesh."""

import dataclasses
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import trimesh

from splat4d.data.synthetic import (
    SampleConfig,
    SampleError,
    _views,
    load_recipe,
    scene_mesh_at,
    write_sample_scene,
)

SMALL = {"width": 96, "height": 72, "n_points": 500}
RECIPES = Path(__file__).parents[2] / "assets" / "samples"


def _write(tmp_path_factory: pytest.TempPathFactory, name: str, **overrides) -> Path:
    cfg = SampleConfig(**{**SMALL, **overrides})
    return write_sample_scene(cfg, tmp_path_factory.mktemp(name), progress=False)


@pytest.fixture(scope="module")
def static_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory, "static", n_views=6, test_every=3)


@pytest.fixture(scope="module")
def monocular_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory, "monocular", dynamic=True, n_views=6, test_every=3)


@pytest.fixture(scope="module")
def multiview_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory, "multiview", dynamic=True, layout="multiview", n_cameras=3, n_frames=4)


def _load(transforms: Path) -> dict:
    return json.loads(transforms.read_text())


def _config(meta: dict) -> SampleConfig:
    return SampleConfig(**meta["splat4d"]["config"])


def _pixel_rays(meta: dict, frame: dict) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through every pixel centre, directions scaled so their camera-frame z-depth is 1.

    Returns:
        origin [3], dirs [h * w, 3] in row-major pixel order.
    """
    T_world_cam = np.asarray(frame["transform_matrix"])
    u, v = np.meshgrid(np.arange(meta["w"]) + 0.5, np.arange(meta["h"]) + 0.5)
    x, y = (u - meta["cx"]) / meta["fl_x"], (v - meta["cy"]) / meta["fl_y"]
    d_cv = np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3)
    R_world_cv = T_world_cam[:3, :3] @ np.diag([1.0, -1.0, -1.0])  # nerfstudio/OpenGL camera → OpenCV
    return T_world_cam[:3, 3], d_cv @ R_world_cv.T


def _back_project(root: Path, meta: dict, frame: dict) -> np.ndarray:
    """World points [N, 3] of every pixel with depth."""
    depth = np.load(root / frame["depth_file_path"]).reshape(-1)
    origin, dirs = _pixel_rays(meta, frame)
    hit = depth > 0
    return origin + depth[hit, None] * dirs[hit]


def _distance_to_mesh(points: np.ndarray, mesh: trimesh.Trimesh, within: float) -> np.ndarray:
    """Exact point-to-surface distance [N] for points closer than `within`, inf for the others.

    Brute force over triangles whose bounding boxes come within `within` of a point, so it needs no rtree.
    """
    lo, hi = mesh.triangles.min(1) - within, mesh.triangles.max(1) + within
    distance = np.full(len(points), np.inf)
    for start in range(0, len(points), 256):
        chunk = points[start : start + 256]
        near = np.all((chunk[:, None] >= lo) & (chunk[:, None] <= hi), axis=2)  # [chunk, F]
        p, f = np.nonzero(near)
        closest = trimesh.triangles.closest_point(mesh.triangles[f], chunk[p])
        np.minimum.at(distance, start + p, np.linalg.norm(closest - chunk[p], axis=1))
    return distance


def _first_mesh_hit(mesh: trimesh.Trimesh, origin: np.ndarray, direction: np.ndarray) -> float:
    """Ray parameter of the nearest triangle hit (Möller-Trumbore over all triangles), inf on a miss."""
    v0, v1, v2 = mesh.triangles[:, 0], mesh.triangles[:, 1], mesh.triangles[:, 2]
    e1, e2 = v1 - v0, v2 - v0
    p = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        s = origin - v0
        u = np.einsum("ij,ij->i", s, p) * inv
        q = np.cross(s, e1)
        v = (q @ direction) * inv
        t = np.einsum("ij,ij->i", e2, q) * inv
    hit = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    return float(t[hit].min()) if hit.any() else np.inf


def _assert_valid_nerfstudio_dataset(transforms: Path) -> dict:
    meta, root = _load(transforms), transforms.parent
    assert meta["camera_model"] == "PINHOLE"
    assert meta["fl_x"] > 0 and meta["fl_y"] > 0
    assert 0 < meta["cx"] < meta["w"] and 0 < meta["cy"] < meta["h"]
    paths = [frame["file_path"] for frame in meta["frames"]]
    for frame in meta["frames"]:
        T = np.asarray(frame["transform_matrix"])
        assert T.shape == (4, 4)
        np.testing.assert_allclose(T[3], [0, 0, 0, 1])
        np.testing.assert_allclose(T[:3, :3].T @ T[:3, :3], np.eye(3), atol=1e-9)
        assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)
        image = iio.imread(root / frame["file_path"])
        assert image.shape == (meta["h"], meta["w"], 3) and image.dtype == np.uint8
        depth = np.load(root / frame["depth_file_path"])
        assert depth.shape == (meta["h"], meta["w"]) and depth.dtype == np.float32
    train, test = set(meta["train_filenames"]), set(meta["test_filenames"])
    assert train and test and not train & test
    assert train | test == set(paths) and len(paths) == len(set(paths))
    points = trimesh.load(root / meta["ply_file_path"])
    assert len(points.vertices) == _config(meta).n_points
    assert meta["depth_unit_scale_factor"] == 1.0
    return meta


def test_static_scene_is_a_valid_nerfstudio_dataset_without_times(static_scene: Path):
    meta = _assert_valid_nerfstudio_dataset(static_scene)
    assert len(meta["frames"]) == 6
    assert all("time" not in frame and "camera_index" not in frame for frame in meta["frames"])
    assert meta["test_filenames"] == ["images/frame_00000.png", "images/frame_00003.png"]


def test_monocular_scene_has_one_camera_per_time_spanning_zero_to_one(monocular_scene: Path):
    meta = _assert_valid_nerfstudio_dataset(monocular_scene)
    times = [frame["time"] for frame in meta["frames"]]
    assert times == sorted(times) and times[0] == 0.0 and times[-1] == 1.0
    poses = {json.dumps(frame["transform_matrix"]) for frame in meta["frames"]}
    assert len(poses) == len(meta["frames"])


def test_multiview_scene_has_fixed_cameras_filming_every_time(multiview_scene: Path):
    meta = _assert_valid_nerfstudio_dataset(multiview_scene)
    frames = meta["frames"]
    assert len(frames) == 3 * 4
    for camera in range(3):
        own = [frame for frame in frames if frame["camera_index"] == camera]
        assert [frame["time"] for frame in own] == pytest.approx([0, 1 / 3, 2 / 3, 1])
        assert all(frame["transform_matrix"] == own[0]["transform_matrix"] for frame in own)
    assert meta["frames"][5]["file_path"] == "images/cam01_t0001.png"
    assert set(meta["test_filenames"]) == {f["file_path"] for f in frames if f["camera_index"] == 0}


@pytest.mark.parametrize("scene_name", ["static_scene", "monocular_scene"])
def test_depth_back_projects_onto_the_mesh_at_the_frames_time(
    scene_name: str, request: pytest.FixtureRequest
):
    transforms = request.getfixturevalue(scene_name)
    meta = _load(transforms)
    frame = meta["frames"][-2]
    mesh = scene_mesh_at(_config(meta), frame.get("time", 0.0))
    extent = float(np.linalg.norm(mesh.extents))
    points = _back_project(transforms.parent, meta, frame)
    assert len(points) == meta["w"] * meta["h"]  # the room closes the scene: every ray hits something
    distance = _distance_to_mesh(points[::3], mesh, within=1e-2 * extent)
    assert np.median(distance) < 1e-4 * extent
    assert np.percentile(distance, 99) < 1e-3 * extent


def test_depth_equals_the_first_mesh_hit_along_the_pixel_ray(static_scene: Path):
    meta = _load(static_scene)
    mesh = trimesh.load(static_scene.parent / "mesh.ply", process=False)
    extent = float(np.linalg.norm(mesh.extents))
    frame = meta["frames"][1]
    depth = np.load(static_scene.parent / frame["depth_file_path"]).reshape(-1)
    origin, dirs = _pixel_rays(meta, frame)
    rng = np.random.default_rng(0)
    pixels = np.concatenate(
        [rng.choice(len(depth), 8, replace=False), np.argsort(depth)[:4]]
    )  # + nearest objects
    for pixel in pixels:
        # Directions have camera-frame z = 1, so the ray parameter of the hit is its z-depth.
        assert _first_mesh_hit(mesh, origin, dirs[pixel]) == pytest.approx(depth[pixel], abs=1e-3 * extent)


def test_mesh_file_is_the_scene_at_time_zero_and_objects_move_over_time(monocular_scene: Path):
    cfg = _config(_load(monocular_scene))
    mesh = trimesh.load(monocular_scene.parent / "mesh.ply", process=False)
    np.testing.assert_allclose(mesh.vertices, scene_mesh_at(cfg, 0.0).vertices, atol=1e-6)
    assert not np.allclose(scene_mesh_at(cfg, 0.25).vertices, mesh.vertices)
    static_cfg = SampleConfig(**{**SMALL, "n_views": 6})
    np.testing.assert_array_equal(
        scene_mesh_at(static_cfg, 0.0).vertices, scene_mesh_at(static_cfg, 0.5).vertices
    )


def test_same_seed_writes_identical_files_and_another_seed_changes_the_scene(tmp_path: Path):
    cfg = SampleConfig(width=48, height=36, n_views=2, n_points=100)
    first = write_sample_scene(cfg, tmp_path / "a", progress=False).parent
    again = write_sample_scene(cfg, tmp_path / "b", progress=False).parent
    other = write_sample_scene(
        SampleConfig(**{**vars(cfg), "seed": 1}), tmp_path / "c", progress=False
    ).parent
    for name in [
        "transforms.json",
        "mesh.ply",
        "points3d.ply",
        "images/frame_00001.png",
        "depth/frame_00001.npy",
    ]:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert (first / "images/frame_00001.png").read_bytes() != (other / "images/frame_00001.png").read_bytes()
    assert (
        _load(first / "transforms.json")["splat4d"]["objects"]
        != _load(other / "transforms.json")["splat4d"]["objects"]
    )


def test_refuses_a_non_empty_folder_unless_overwriting(tmp_path: Path):
    cfg = SampleConfig(width=48, height=36, n_views=3, n_points=100)
    write_sample_scene(cfg, tmp_path, progress=False)
    with pytest.raises(SampleError, match="holds a sample scene already"):
        write_sample_scene(cfg, tmp_path, progress=False)
    write_sample_scene(SampleConfig(**{**vars(cfg), "n_views": 2}), tmp_path, progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["frame_00000.png", "frame_00001.png"]


def test_bundled_recipes_load_as_a_static_and_a_dynamic_scene():
    assert not load_recipe(RECIPES / "static.json").dynamic
    assert load_recipe(RECIPES / "dynamic.json").dynamic


def test_recipe_with_an_unknown_key_is_rejected_naming_the_file_and_key(tmp_path: Path):
    recipe = tmp_path / "typo.json"
    recipe.write_text(json.dumps({"seed": 3, "n_veiws": 10}))
    with pytest.raises(ValueError, match=r"typo\.json.*'n_veiws'"):
        load_recipe(recipe)


def test_recipe_with_a_value_of_the_wrong_type_is_rejected_naming_the_file(tmp_path: Path):
    recipe = tmp_path / "bad.json"
    recipe.write_text(json.dumps({"width": "320"}))
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_recipe(recipe)


def test_multiview_test_camera_is_the_held_out_one():
    cfg = SampleConfig(**SMALL, dynamic=True, layout="multiview", n_cameras=5, n_frames=2, test_camera=2)
    held_out = {view.camera_index for view in _views(cfg) if view.is_test}
    assert held_out == {2}
    with pytest.raises(ValueError, match="test_camera"):
        write_sample_scene(dataclasses.replace(cfg, test_camera=5), Path("/nonexistent"), progress=False)
