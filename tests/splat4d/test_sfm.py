"""Structure from motion on unposed inputs: the sample scene's images (against its known poses), a video of them,
the real Sceaux castle photos, the cache, and bad inputs."""

import json
import shutil
import time
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from splat4d.data.base import DatasetError, SceneData
from splat4d.data.config import DataConfig, SfmConfig, VideoConfig
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.sfm import (
    _image_files,
    _sfm_key,
    is_images,
    is_video,
    read_images,
    read_video,
    select_frames,
)
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.geometry import similarity_residuals
from tests.pipelines.helpers import train_dynamic

N_VIEWS = 12
WIDTH, HEIGHT = 320, 240
ARC_DEGREES = 80.0
"""Views 7° apart, and every pair shares much of its view (see `photos` for why far pairs hurt)."""
WALL_EPS = 5e-3
FAST_SFM = SfmConfig(max_num_features=2048)
"""Fewer features than the default keep the tests quick; these small images have fewer anyway."""
SCEAUX_SFM = SfmConfig(max_num_features=1024, max_image_size=400)
"""Half-size images and fewer features than the default, for speed; all 11 photos still register."""
N_NOISE = 2
VIDEO_FPS = 4.0
VIDEO_FRAMES_KEPT = 10


def _centre_errors(scene: SceneData, reference: SceneData, names: list[str] | None = None) -> np.ndarray:
    """Distances (metres) between SfM and true camera centres after a similarity alignment."""
    truth = dict(
        zip([p.name for p in reference.image_paths], reference.cameras.centers.double().numpy(), strict=True)
    )
    names = names or [p.name for p in scene.image_paths]
    truth_centres = torch.as_tensor(np.stack([truth[n] for n in names]))
    return similarity_residuals(scene.cameras.centers, truth_centres).numpy()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "scene"
    write_sample_scene(
        SampleConfig(n_views=N_VIEWS, width=WIDTH, height=HEIGHT, arc_degrees=ARC_DEGREES),
        out,
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def photos(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's images with the room's walls, floor and ceiling blacked out, plus two noise images.

    The sample scene repeats textures: brick and gravel tile the room every metre or so, and a box shows one
    photograph on each face. SIFT matches between repeats pass geometric verification (a tiled plane fits a
    homography), and in pairs of views that share little else they outnumber the true ones and bend the
    reconstruction by decimetres. Blacking out the room and keeping the arc short avoids such pairs.
    """
    out = tmp_path_factory.mktemp("photos")
    reference = read_nerfstudio(sample)
    room = json.loads((sample / "transforms.json").read_text())["splat4d"]["room_bounds"]
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    for i, path in enumerate(reference.image_paths):
        K, T = reference.cameras.Ks[i].numpy(), reference.cameras.T_world_cam[i].numpy()
        depth = np.load(reference.depth_paths[i])
        p_cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)
        p_world = p_cam @ T[:3, :3].T + T[:3, 3]
        on_room = (np.abs(p_world[..., :2]).max(-1) > room[1][0] - WALL_EPS) | (p_world[..., 2] < WALL_EPS)
        on_room |= p_world[..., 2] > room[1][2] - WALL_EPS
        image = iio.imread(path)
        image[on_room] = 0
        iio.imwrite(out / path.name, image)
    rng = np.random.default_rng(0)
    for k in range(N_NOISE):
        iio.imwrite(out / f"noise_{k}.png", rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    return out


@pytest.fixture(scope="module")
def photos_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("photos_work")


@pytest.fixture(scope="module")
def posed(photos: Path, photos_workdir: Path) -> tuple[SceneData, list[warnings.WarningMessage]]:
    with pytest.warns(UserWarning, match="SfM registered") as caught:
        scene = read_images(DataConfig(path=photos, sfm=FAST_SFM), photos_workdir, progress=False)
    return scene, list(caught)


def test_sfm_registers_the_views_and_recovers_their_centres(posed: tuple, sample: Path) -> None:
    scene, _ = posed
    assert [p.name for p in scene.image_paths] == [f"frame_{i:05d}.png" for i in range(N_VIEWS)]
    errors = _centre_errors(scene, read_nerfstudio(sample))
    assert errors.max() < 0.05  # metres, on an orbit of radius 2.8 (typically below 0.02)
    assert scene.points is not None and len(scene.points) > 100
    assert scene.point_colors is not None and scene.point_colors.max() <= 1.0
    assert scene.metadata["format"] == "images" and scene.metadata["mean_reprojection_error"] < 1.0
    assert scene.test_indices == [0, 8] and len(scene.train_indices) == N_VIEWS - 2


def test_unregistered_images_are_dropped_with_a_warning_naming_them(posed: tuple) -> None:
    scene, caught = posed
    assert all(not p.name.startswith("noise") for p in scene.image_paths)
    assert scene.metadata["unregistered"] == [f"noise_{k}.png" for k in range(N_NOISE)]
    message = str(caught[0].message)
    assert "noise_0.png, noise_1.png" in message and f"{N_VIEWS} of {N_VIEWS + N_NOISE}" in message


def test_second_call_reuses_the_model(posed: tuple, photos: Path, photos_workdir: Path) -> None:
    first, _ = posed
    database = photos_workdir / "sfm" / "database.db"
    written = database.stat().st_mtime_ns
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="SfM registered"):
        second = read_images(DataConfig(path=photos, sfm=FAST_SFM), photos_workdir, progress=False)
    assert time.perf_counter() - start < 1.0
    assert database.stat().st_mtime_ns == written
    assert second.image_paths == first.image_paths
    assert (second.cameras.T_world_cam == first.cameras.T_world_cam).all()


def test_changed_settings_invalidate_the_cache_key(photos: Path, photos_workdir: Path) -> None:
    files = _image_files(photos)
    assert _sfm_key(files, FAST_SFM) == _sfm_key(files, SfmConfig(max_num_features=2048, num_threads=1))
    assert _sfm_key(files, FAST_SFM) != _sfm_key(
        files, SfmConfig(max_num_features=2048, matching="sequential")
    )


def test_real_photos_register_with_plausible_intrinsics(shared_data: Path, tmp_path: Path) -> None:
    scene = read_images(
        DataConfig(path=shared_data / "sceaux_castle", sfm=SCEAUX_SFM), tmp_path, progress=False
    )
    assert len(scene.image_paths) == 11
    assert scene.points is not None and len(scene.points) > 1000
    # Published calibration, at this image size: f = 726.5 px. Undistortion keeps the focal length.
    assert scene.cameras.Ks[:, 0, 0].sub(726.5).abs().max() < 0.05 * 726.5


def test_detection_of_image_folders_and_videos(photos: Path, tmp_path: Path) -> None:
    assert is_images(photos) and not is_images(tmp_path) and not is_images(photos / "frame_00000.png")
    (tmp_path / "scene" / "images").mkdir(parents=True)
    shutil.copy(photos / "frame_00000.png", tmp_path / "scene" / "images" / "A.PNG")
    assert is_images(tmp_path / "scene")
    (tmp_path / "clip.MP4").write_bytes(b"")
    assert is_video(tmp_path / "clip.MP4") and not is_video(tmp_path / "scene")


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no \.jpg/\.jpeg/\.png images"):
        read_images(DataConfig(path=tmp_path), tmp_path / "work", progress=False)


def test_unreadable_image_is_named(photos: Path, tmp_path: Path) -> None:
    for name in ("frame_00000.png", "frame_00001.png", "frame_00002.png"):
        shutil.copy(photos / name, tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DatasetError, match=r"broken\.jpg: cannot read image"):
        read_images(DataConfig(path=tmp_path), tmp_path / "work", progress=False)


def test_too_few_registered_images_is_an_error_with_a_hint(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for k in range(4):
        iio.imwrite(tmp_path / f"noise_{k}.png", rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"SfM registered [0-2] of 4 images.*more overlap.*sequential"):
        read_images(DataConfig(path=tmp_path, sfm=FAST_SFM), tmp_path / "work", progress=False)


def test_frame_selection_follows_fps_and_caps_the_count() -> None:
    times = [k / 30 for k in range(300)]  # 10 s at 30 fps
    assert select_frames(times, fps=2.0, max_frames=100) == list(range(0, 300, 15))
    kept = select_frames(times, fps=30.0, max_frames=5)
    assert kept == [0, 75, 149, 224, 299]  # nearest to 0, 2.49, 4.98, 7.48 and 9.97 s


@pytest.fixture(scope="module")
def video(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "orbit.mp4"
    frames = np.stack([iio.imread(photos / f"frame_{i:05d}.png") for i in range(N_VIEWS)])
    iio.imwrite(path, frames, fps=VIDEO_FPS, codec="libx264", quality=9, macro_block_size=16)
    return path


def test_video_frames_are_kept_and_posed(video: Path, sample: Path, tmp_path: Path) -> None:
    cfg = DataConfig(path=video, sfm=FAST_SFM, video=VideoConfig(fps=VIDEO_FPS, max_frames=VIDEO_FRAMES_KEPT))
    scene = read_video(cfg, tmp_path)
    frames = sorted((tmp_path / "frames").glob("frame_*.jpg"))
    assert len(frames) == VIDEO_FRAMES_KEPT
    assert iio.imread(frames[0]).shape == (HEIGHT, WIDTH, 3)
    assert len(scene.image_paths) >= 0.8 * VIDEO_FRAMES_KEPT
    assert scene.metadata["format"] == "video"
    # Frame k of the extraction is view select_frames(...)[k] of the sample.
    kept = select_frames([i / VIDEO_FPS for i in range(N_VIEWS)], VIDEO_FPS, VIDEO_FRAMES_KEPT)
    view_of_frame = {f.name: f"frame_{kept[k]:05d}.png" for k, f in enumerate(frames)}
    names = [view_of_frame[p.name] for p in scene.image_paths]
    assert _centre_errors(scene, read_nerfstudio(sample), names).max() < 0.05
    expected_times = [kept[int(p.stem.split("_")[1])] / VIDEO_FPS for p in scene.image_paths]
    np.testing.assert_allclose(scene.metadata["frame_times"], expected_times, atol=1e-6)
    # capture times in [0, 1] over the kept frames, for the dynamic pipeline
    last = kept[-1] / VIDEO_FPS
    np.testing.assert_allclose(scene.cameras.times.numpy(), np.asarray(expected_times) / last, atol=1e-6)

    written = frames[0].stat().st_mtime_ns
    again = read_video(cfg, tmp_path, progress=False)  # frames and SfM both come from the cache
    assert frames[0].stat().st_mtime_ns == written and again.image_paths == scene.image_paths


def test_dynamic_pipeline_trains_on_a_video_file(video: Path, tmp_path: Path) -> None:
    """One moving camera: frames kept from the video, posed by SfM, timed by their place in the video, trained as
    4D Gaussians (`reconstruct VIDEO --pipeline dynamic`), and evaluated on every 8th posed frame."""
    cfg = DataConfig(path=video, sfm=FAST_SFM, video=VideoConfig(fps=VIDEO_FPS, max_frames=VIDEO_FRAMES_KEPT))
    result = train_dynamic(cfg, tmp_path / "out", steps=8, random_points=500)
    times = result.scene.cameras.times
    assert times is not None and float(times.min()) == 0.0 and float(times.max()) == 1.0
    assert (
        result.metrics["steps"] == 8
        and result.metrics["split"] == "test"
        and result.metrics["num_views"] >= 1
    )
    assert result.metrics["views"][0]["name"].startswith("frame_")
    assert (tmp_path / "out" / "point_cloud.ply").is_file()


def test_unreadable_video_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(DatasetError, match=r"broken\.mp4: cannot read video"):
        read_video(DataConfig(path=path), tmp_path / "work")
