"""`read_colmap` on COLMAP models written with pycolmap from the sample scene's known poses, and the undistortion it
shares with `read_nerfstudio` (frames with lens distortion, ns-process-data masks)."""

import json
import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pycolmap
import pytest
import torch
import trimesh
from scipy.ndimage import map_coordinates

from splat4d.data.base import DatasetError
from splat4d.data.colmap import find_model, is_colmap, read_colmap
from splat4d.data.config import DataConfig
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import SampleConfig, write_sample_scene

N_VIEWS = 10
WIDTH, HEIGHT = 128, 96
OPENCV_PARAMS = [-0.18, 0.03, 0.002, -0.001]
"""k1, k2, p1, p2: strong barrel distortion, so a missed undistortion shows in every check."""


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "scene"
    write_sample_scene(SampleConfig(n_views=N_VIEWS, width=WIDTH, height=HEIGHT), out, progress=False)
    return out


def _pinhole_K(scene: Path) -> np.ndarray:
    meta = json.loads((scene / "transforms.json").read_text())
    return np.array([[meta["fl_x"], 0, meta["cx"]], [0, meta["fl_y"], meta["cy"]], [0, 0, 1]])


def _distort(image: np.ndarray, K: np.ndarray, camera: pycolmap.Camera) -> np.ndarray:
    """What `camera` sees of a pinhole image with intrinsics K (same centre and orientation); black outside it."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width]
    pixels = np.stack([u.ravel() + 0.5, v.ravel() + 0.5], -1).astype(np.float64)
    rays = camera.cam_from_img(pixels)  # normalised image coordinates (x/z, y/z)
    src = rays @ K[:2, :2].T + K[:2, 2] - 0.5  # array coordinates of the pinhole pixels
    channels = [
        map_coordinates(image[..., c].astype(float), [src[:, 1], src[:, 0]], order=1) for c in range(3)
    ]
    return np.clip(np.stack(channels, -1), 0, 255).reshape(camera.height, camera.width, 3).astype(np.uint8)


def _write_workspace(
    scene: Path,
    out: Path,
    model: str = "PINHOLE",
    extra: list[float] | None = None,
    text: bool = False,
    sparse: str = "sparse/0",
) -> Path:
    """A COLMAP workspace (images/ and a model) of the sample scene; with distortion, the images are warped to match."""
    meta = json.loads((scene / "transforms.json").read_text())
    K = _pinhole_K(scene)
    params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]] + (extra or [])
    camera = pycolmap.Camera(model=model, width=meta["w"], height=meta["h"], params=params, camera_id=1)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(camera)
    (out / "images").mkdir(parents=True)
    for i, frame in enumerate(meta["frames"]):
        name = Path(frame["file_path"]).name
        T_world_cam = np.asarray(frame["transform_matrix"]) @ np.diag([1.0, -1, -1, 1])  # OpenGL → OpenCV
        T_cam_world = np.linalg.inv(T_world_cam)
        image = pycolmap.Image(name=name, camera_id=1, image_id=i + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(T_cam_world[:3]))
        if model == "PINHOLE":
            shutil.copy(scene / frame["file_path"], out / "images" / name)
        else:
            iio.imwrite(out / "images" / name, _distort(iio.imread(scene / frame["file_path"]), K, camera))
    cloud = trimesh.load(scene / "points3d.ply")
    for xyz, color in zip(cloud.vertices[:50], cloud.colors[:50, :3], strict=True):
        rec.add_point3D(
            np.asarray(xyz, dtype=np.float64), pycolmap.Track(), np.asarray(color, dtype=np.uint8)
        )
    model_dir = out / sparse
    model_dir.mkdir(parents=True, exist_ok=True)
    rec.write_text(model_dir) if text else rec.write(model_dir)
    return out


@pytest.fixture(scope="module")
def pinhole_ws(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_workspace(scene, tmp_path_factory.mktemp("ws") / "pinhole")


@pytest.fixture(scope="module")
def opencv_ws(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_workspace(scene, tmp_path_factory.mktemp("ws") / "opencv", "OPENCV", OPENCV_PARAMS)


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
@pytest.mark.parametrize("sparse", ["sparse/0", "sparse", "."])
def test_model_poses_and_intrinsics_match_the_nerfstudio_reader(
    scene: Path, tmp_path: Path, text: bool, sparse: str
) -> None:
    ws = _write_workspace(scene, tmp_path / "ws", text=text, sparse=sparse)
    assert is_colmap(ws) and find_model(ws) == (ws / sparse if sparse != "." else ws)
    colmap = read_colmap(DataConfig(path=ws), tmp_path / "work")
    reference = read_nerfstudio(scene)
    assert (colmap.cameras.width, colmap.cameras.height) == (WIDTH, HEIGHT)
    torch.testing.assert_close(colmap.cameras.T_world_cam, reference.cameras.T_world_cam, atol=1e-5, rtol=0)
    torch.testing.assert_close(colmap.cameras.Ks, reference.cameras.Ks)
    assert colmap.image_paths == [ws / "images" / p.name for p in reference.image_paths]
    assert not (tmp_path / "work").exists()  # pinhole: nothing to undistort


def test_points_and_colours_come_from_the_model(pinhole_ws: Path, scene: Path, tmp_path: Path) -> None:
    data = read_colmap(DataConfig(path=pinhole_ws), tmp_path)
    cloud = trimesh.load(scene / "points3d.ply")
    assert data.points is not None and data.point_colors is not None
    order = np.lexsort(data.points.T)
    expected = np.asarray(cloud.vertices[:50], dtype=np.float32)
    np.testing.assert_allclose(data.points[order], expected[np.lexsort(expected.T)], atol=1e-6)
    np.testing.assert_allclose(
        data.point_colors[order], cloud.colors[:50, :3][np.lexsort(expected.T)] / 255.0, atol=1e-6
    )


def test_every_nth_image_by_name_is_a_test_image(pinhole_ws: Path, tmp_path: Path) -> None:
    data = read_colmap(DataConfig(path=pinhole_ws, test_every=4), tmp_path)
    assert data.test_indices == [0, 4, 8]
    assert data.train_indices == [1, 2, 3, 5, 6, 7, 9]
    names = [p.name for p in data.image_paths]
    assert names == sorted(names)


def test_distorted_model_is_undistorted_to_pinhole_with_the_same_poses(
    opencv_ws: Path, scene: Path, tmp_path: Path
) -> None:
    data = read_colmap(DataConfig(path=opencv_ws), tmp_path)
    reference = read_nerfstudio(scene)
    K0 = _pinhole_K(scene)
    expected = pycolmap.undistort_camera(
        pycolmap.UndistortCameraOptions(),
        pycolmap.Camera(
            model="OPENCV",
            width=WIDTH,
            height=HEIGHT,
            params=[*K0[[0, 1, 0, 1], [0, 1, 2, 2]], *OPENCV_PARAMS],
        ),
    )
    assert (data.cameras.width, data.cameras.height) == (expected.width, expected.height)
    assert (expected.width, expected.height) != (WIDTH, HEIGHT)
    K = data.cameras.Ks[0].double().numpy()
    np.testing.assert_allclose(K, expected.calibration_matrix(), rtol=1e-6)
    torch.testing.assert_close(data.cameras.T_world_cam, reference.cameras.T_world_cam, atol=1e-5, rtol=0)
    assert all(p.parent == tmp_path / "undistorted" / "images" for p in data.image_paths)

    # The undistorted image is the original pinhole image, resampled through K0 · K⁻¹.
    undistorted = iio.imread(data.image_paths[3]).astype(float)
    original = iio.imread(reference.image_paths[3]).astype(float)
    v, u = np.mgrid[0 : data.cameras.height, 0 : data.cameras.width]
    rays = np.stack([u + 0.5, v + 0.5, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(K).T
    src = rays[:, :2] @ K0[:2, :2].T + K0[:2, 2] - 0.5
    inside = (src[:, 0] > 2) & (src[:, 0] < WIDTH - 3) & (src[:, 1] > 2) & (src[:, 1] < HEIGHT - 3)
    resampled = np.stack(
        [map_coordinates(original[..., c], [src[:, 1], src[:, 0]], order=1) for c in range(3)], -1
    )
    error = np.abs(resampled - undistorted.reshape(-1, 3)).mean(-1)
    edges = np.abs(np.gradient(resampled.reshape(undistorted.shape).mean(-1), axis=1)).ravel() > 10
    assert inside.mean() > 0.8 and (inside & edges).sum() > 200
    # Textured pixels reveal misalignment: about 1.3 here, 7 with a half-pixel shift, 13 with a whole one.
    assert np.median(error[inside & edges]) < 3.0


def test_undistorted_images_are_reused_while_the_inputs_are_unchanged(
    opencv_ws: Path, tmp_path: Path
) -> None:
    cfg = DataConfig(path=opencv_ws)
    first = read_colmap(cfg, tmp_path)
    stamp = first.image_paths[0].stat().st_mtime_ns
    second = read_colmap(cfg, tmp_path)
    assert second.image_paths == first.image_paths
    assert second.image_paths[0].stat().st_mtime_ns == stamp
    image = opencv_ws / "images" / first.image_paths[0].name
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    third = read_colmap(cfg, tmp_path)
    assert third.image_paths[0].stat().st_mtime_ns != stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_masks_are_found_by_image_name_and_undistorted_with_their_images(
    pinhole_ws: Path, opencv_ws: Path, tmp_path: Path
) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    for i, image in enumerate(sorted((pinhole_ws / "images").iterdir())):
        name = image.name if i % 2 else image.name + ".png"  # both conventions
        iio.imwrite(masks / name, np.full((HEIGHT, WIDTH), 255, np.uint8))
    data = read_colmap(DataConfig(path=pinhole_ws, masks=masks), tmp_path / "a")
    assert data.mask_paths is not None and all(m is not None and m.parent == masks for m in data.mask_paths)

    data = read_colmap(DataConfig(path=opencv_ws, masks=masks), tmp_path / "b")
    assert data.mask_paths is not None
    mask = iio.imread(data.mask_paths[0])
    assert mask.shape == (data.cameras.height, data.cameras.width)
    assert mask[5:-5, 5:-5].min() > 200  # white inside; the rim may blend with blank pixels


def test_missing_mask_is_named(pinhole_ws: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"frame_00000\.png: mask not found"):
        read_colmap(DataConfig(path=pinhole_ws, masks=tmp_path), tmp_path / "work")


def test_image_missing_from_images_folder_is_named(pinhole_ws: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(pinhole_ws, ws)
    (ws / "images" / "frame_00003.png").unlink()
    with pytest.raises(DatasetError, match=r"frame_00003\.png: listed in the COLMAP model but not found"):
        read_colmap(DataConfig(path=ws), tmp_path / "work")


@pytest.mark.parametrize("distorted", [False, True], ids=["pinhole", "opencv"])
def test_unreadable_image_is_named(
    pinhole_ws: Path, opencv_ws: Path, tmp_path: Path, distorted: bool
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(opencv_ws if distorted else pinhole_ws, ws)
    (ws / "images" / "frame_00002.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"frame_00002\.png: cannot read image"):
        read_colmap(DataConfig(path=ws), tmp_path / "work")


def test_image_of_another_size_than_its_camera_is_named(pinhole_ws: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(pinhole_ws, ws)
    iio.imwrite(ws / "images" / "frame_00005.png", np.zeros((HEIGHT // 2, WIDTH // 2, 3), np.uint8))
    with pytest.raises(
        DatasetError, match=rf"frame_00005\.png: image is {WIDTH // 2}x{HEIGHT // 2} but its camera"
    ):
        read_colmap(DataConfig(path=ws), tmp_path / "work")


def test_images_of_different_sizes_keep_their_own_cameras(pinhole_ws: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(pinhole_ws, ws)
    rec = pycolmap.Reconstruction(ws / "sparse" / "0")
    small = pycolmap.Camera(model="PINHOLE", width=64, height=48, params=[50, 50, 32, 24], camera_id=2)
    rec.add_camera_with_trivial_rig(small)
    image = rec.image(rec.find_image_with_name("frame_00007.png").image_id)
    rec.add_image_with_trivial_frame(
        pycolmap.Image(name="small.png", camera_id=2, image_id=100), image.cam_from_world()
    )
    rec.write(ws / "sparse" / "0")
    iio.imwrite(ws / "images" / "small.png", np.zeros((48, 64, 3), np.uint8))
    scene = read_colmap(DataConfig(path=ws), tmp_path / "work")
    small_index = [p.name for p in scene.image_paths].index("small.png")
    assert scene.cameras.sizes[small_index] == (64, 48) and scene.cameras.sizes[0] == (128, 96)
    assert scene.cameras.Ks[small_index, 0, 2] == 32


def test_corrupt_model_and_missing_model_are_named(pinhole_ws: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(pinhole_ws, ws)
    images_bin = ws / "sparse" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:40])
    with pytest.raises(DatasetError, match=r"sparse/0: cannot read the COLMAP model"):
        read_colmap(DataConfig(path=ws), tmp_path / "work")
    assert not is_colmap(tmp_path / "work") and not is_colmap(ws / "images" / "frame_00000.png")
    with pytest.raises(DatasetError, match="no COLMAP model"):
        read_colmap(DataConfig(path=ws / "images"), tmp_path / "work")


# Nerfstudio frames with distortion go through the same undistortion.


def _nerfstudio_with_distortion(scene: Path, out: Path, camera_model: str, coeffs: dict[str, float]) -> Path:
    """A copy of the sample scene whose images were taken through a lens with these coefficients."""
    meta = json.loads((scene / "transforms.json").read_text())
    K = _pinhole_K(scene)
    if camera_model == "OPENCV_FISHEYE":
        camera = pycolmap.Camera(
            model="OPENCV_FISHEYE",
            width=WIDTH,
            height=HEIGHT,
            params=[*K[[0, 1, 0, 1], [0, 1, 2, 2]], *(coeffs.get(k, 0.0) for k in ("k1", "k2", "k3", "k4"))],
        )
    else:
        camera = pycolmap.Camera(
            model="OPENCV",
            width=WIDTH,
            height=HEIGHT,
            params=[*K[[0, 1, 0, 1], [0, 1, 2, 2]], *(coeffs.get(k, 0.0) for k in ("k1", "k2", "p1", "p2"))],
        )
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for frame in meta["frames"]:
        name = Path(frame["file_path"]).name
        iio.imwrite(out / "images" / name, _distort(iio.imread(scene / frame["file_path"]), K, camera))
        iio.imwrite(out / "masks" / name, np.full((HEIGHT, WIDTH), 255, np.uint8))
        frame["mask_path"] = f"masks/{name}"
    shutil.copy(scene / "points3d.ply", out / "points3d.ply")
    meta.update(camera_model=camera_model, applied_transform=np.eye(4)[:3].tolist(), **coeffs)
    del meta["train_filenames"], meta["test_filenames"]
    (out / "transforms.json").write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize(
    ("camera_model", "coeffs"),
    [
        ("OPENCV", dict(zip(("k1", "k2", "p1", "p2"), OPENCV_PARAMS, strict=True))),
        ("OPENCV_FISHEYE", {"k1": 0.05}),
    ],
)
def test_nerfstudio_frames_with_distortion_are_undistorted(
    scene: Path, tmp_path: Path, camera_model: str, coeffs: dict[str, float]
) -> None:
    root = _nerfstudio_with_distortion(scene, tmp_path / "ns", camera_model, coeffs)
    data = read_nerfstudio(root, test_every=4, workdir=tmp_path / "work")
    reference = read_nerfstudio(scene)
    K0 = _pinhole_K(scene)
    params = [*K0[[0, 1, 0, 1], [0, 1, 2, 2]], *coeffs.values()] + [0.0] * (4 - len(coeffs))
    expected = pycolmap.undistort_camera(
        pycolmap.UndistortCameraOptions(),
        pycolmap.Camera(model=camera_model, width=WIDTH, height=HEIGHT, params=params),
    )
    assert (data.cameras.width, data.cameras.height) == (expected.width, expected.height)
    np.testing.assert_allclose(data.cameras.Ks[0].double().numpy(), expected.calibration_matrix(), rtol=1e-6)
    torch.testing.assert_close(data.cameras.T_world_cam, reference.cameras.T_world_cam)
    assert iio.imread(data.image_paths[0]).shape == (expected.height, expected.width, 3)
    assert data.mask_paths is not None and iio.imread(data.mask_paths[0]).shape == (
        expected.height,
        expected.width,
    )
    assert data.depth_paths == [None] * N_VIEWS  # depth stays in the distorted geometry
    assert data.test_indices == [0, 4, 8]
    assert data.metadata["applied_transform"] == np.eye(4)[:3].tolist()


def test_nerfstudio_distortion_without_a_workdir_is_an_error(scene: Path, tmp_path: Path) -> None:
    root = _nerfstudio_with_distortion(scene, tmp_path / "ns", "OPENCV", {"k1": -0.1})
    with pytest.raises(DatasetError, match=r"transforms\.json: frames have lens distortion"):
        read_nerfstudio(root)


def _with_meta(scene: Path, out: Path, n_masks: int = 0, **changes: object) -> Path:
    """A copy of the sample scene's transforms.json that points at its images, without depth or split, with
    top-level keys changed and `mask_path`s on the first `n_masks` frames."""
    meta = json.loads((scene / "transforms.json").read_text())
    for i, frame in enumerate(meta["frames"]):
        if i < n_masks:
            frame["mask_path"] = f"masks/{Path(frame['file_path']).name}"
        frame["file_path"] = str(scene / frame["file_path"])
        del frame["depth_file_path"]
    del meta["train_filenames"], meta["test_filenames"]
    meta.update(changes)
    out.mkdir(parents=True)
    (out / "transforms.json").write_text(json.dumps(meta))
    return out


def test_nerfstudio_k3_becomes_full_opencv_and_k4_is_refused(scene: Path, tmp_path: Path) -> None:
    root = _with_meta(scene, tmp_path / "k3", camera_model="OPENCV", k1=-0.1, k3=0.02)
    data = read_nerfstudio(root, workdir=tmp_path / "work")
    K0 = _pinhole_K(scene)
    camera = pycolmap.Camera(
        model="FULL_OPENCV",
        width=WIDTH,
        height=HEIGHT,
        params=[*K0[[0, 1, 0, 1], [0, 1, 2, 2]], -0.1, 0, 0, 0, 0.02, 0, 0, 0],
    )
    expected = pycolmap.undistort_camera(pycolmap.UndistortCameraOptions(), camera)
    np.testing.assert_allclose(data.cameras.Ks[0].double().numpy(), expected.calibration_matrix(), rtol=1e-6)
    # Undistorted copies of absolute paths are named by index, inside the work folder.
    assert data.image_paths[1] == tmp_path / "work" / "undistorted" / "images" / "00001_frame_00001.png"

    root = _with_meta(scene, tmp_path / "k4", camera_model="OPENCV", k1=-0.1, k4=0.01)
    with pytest.raises(DatasetError, match="k4"):
        read_nerfstudio(root, workdir=tmp_path / "work")


def test_nerfstudio_pinhole_frames_keep_their_files_and_masks(scene: Path, tmp_path: Path) -> None:
    root = _with_meta(scene, tmp_path / "ns", n_masks=3, applied_transform=np.eye(4)[:3].tolist())
    data = read_nerfstudio(root, workdir=tmp_path / "work")
    assert data.image_paths == read_nerfstudio(scene).image_paths
    assert data.mask_paths == [root / "masks" / f"frame_{i:05d}.png" for i in range(3)] + [None] * (
        N_VIEWS - 3
    )
    assert data.metadata["applied_transform"] == np.eye(4)[:3].tolist()
    assert not (tmp_path / "work").exists()
