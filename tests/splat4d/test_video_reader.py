"""The N3DV / DyNeRF multi-view video reader on a procedural multi-view sample encoded to H.264: cameras, times,
split and subsampling, lazy decoding in `ImageDataset`, seeking, input errors, and `reconstruct --pipeline
dynamic` end to end."""

import shutil
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from splat4d.data import detect_format, load_scene
from splat4d.data.base import DatasetError, VideoFrame
from splat4d.data.config import DataConfig, MultiviewVideoConfig
from splat4d.data.dataset import ImageDataset
from splat4d.data.llff_poses import llff_to_opencv, opencv_to_llff
from splat4d.data.n3dv_sample import encode_video, write_n3dv_sample
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.data.video import VideoDecoder, VideoFrameReader, read_multiview_video
from tests.pipelines.helpers import train_dynamic

N_CAMERAS, N_FRAMES, W, H = 3, 6, 64, 48


def _encode(path: Path, frames: list[np.ndarray]) -> None:
    """A short keyframe interval (and libx264's B-frames) so that reads really seek."""
    encode_video(path, frames, gop=3)


def _source_frames(sample: Path, camera: int) -> list[np.ndarray]:
    return [iio.imread(sample / "images" / f"cam{camera:02d}_t{k:04d}.png") for k in range(N_FRAMES)]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "multiview"
    cfg = SampleConfig(
        dynamic=True,
        layout="multiview",
        n_cameras=N_CAMERAS,
        n_frames=N_FRAMES,
        width=W,
        height=H,
        n_points=200,
    )
    write_sample_scene(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def n3dv(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_n3dv_sample(sample, tmp_path_factory.mktemp("n3dv") / "scene", gop=3)


def _copy(n3dv: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(n3dv, tmp_path / "scene"))


def test_llff_axes_are_down_right_backwards() -> None:
    # LLFF identity: camera down = world x, right = world y, backwards = world z.
    T = llff_to_opencv(np.concatenate([np.eye(3), np.zeros((3, 2))], axis=1))
    np.testing.assert_array_equal(T[:3, 0], [0, 1, 0])  # OpenCV x (right)
    np.testing.assert_array_equal(T[:3, 1], [1, 0, 0])  # OpenCV y (down)
    np.testing.assert_array_equal(T[:3, 2], [0, 0, -1])  # OpenCV z (forward)
    assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R *= np.linalg.det(R)
    T_world_cam = np.eye(4)
    T_world_cam[:3, :3], T_world_cam[:3, 3] = R, rng.normal(size=3)
    np.testing.assert_allclose(
        llff_to_opencv(opencv_to_llff(T_world_cam, 1.0, 1.0, 1.0)), T_world_cam, atol=1e-12
    )


def test_reader_recovers_the_cameras_times_and_split(sample: Path, n3dv: Path, tmp_path: Path) -> None:
    assert detect_format(n3dv) == "n3dv"
    scene = load_scene(DataConfig(path=n3dv), tmp_path)
    truth = read_nerfstudio(sample)  # the same views in the same order: camera by camera, frame by frame
    assert (scene.cameras.width, scene.cameras.height) == (W, H)
    torch.testing.assert_close(scene.cameras.T_world_cam, truth.cameras.T_world_cam, atol=1e-5, rtol=0)
    torch.testing.assert_close(scene.cameras.Ks, truth.cameras.Ks)
    torch.testing.assert_close(scene.cameras.times, truth.cameras.times)
    assert scene.cameras.times[:N_FRAMES].tolist() == pytest.approx(
        [k / (N_FRAMES - 1) for k in range(N_FRAMES)]
    )
    assert scene.test_indices == truth.test_indices == list(range(N_FRAMES))  # camera 0
    assert scene.train_indices == list(range(N_FRAMES, N_CAMERAS * N_FRAMES))
    assert scene.image_paths[N_FRAMES + 2] == VideoFrame(n3dv / "cam01.mp4", 2)
    assert scene.image_paths[N_FRAMES + 2].name == "cam01_000002"
    # the writer's bounds: the 1st and 99th percentile depth of the sample's points in each camera
    near_far = np.asarray(scene.metadata["near_far"])
    assert (
        near_far.shape == (N_CAMERAS, 2)
        and (near_far[:, 0] > 0).all()
        and (near_far[:, 0] < near_far[:, 1]).all()
    )
    points = read_nerfstudio(sample).points
    T = np.linalg.inv(truth.cameras.T_world_cam[0].double().numpy())
    depth = (points @ T[:3, :3].T + T[:3, 3])[:, 2]
    assert near_far[0].tolist() == pytest.approx(np.percentile(depth[depth > 0], [1, 99]).tolist(), rel=1e-6)


def test_frames_are_decoded_on_demand_and_match_the_source_images(sample: Path, n3dv: Path) -> None:
    scene = read_multiview_video(DataConfig(path=n3dv), n3dv)
    data = ImageDataset(scene, scene.train_indices)
    assert data.frames.decoded == 0  # nothing decoded up front
    view = N_FRAMES + 4  # camera 1, frame 4
    batch = data[scene.train_indices.index(view)]
    assert batch.index == view and 1 <= data.frames.decoded <= N_FRAMES
    source = _source_frames(sample, 1)[4].astype(np.float32) / 255
    error = np.abs(batch.rgb[0].numpy() - source)
    assert error.mean() < 0.02 and np.quantile(error, 0.99) < 0.15  # H.264 at crf 10, 4:2:0 chroma
    half = ImageDataset(scene, scene.train_indices, downscale=2)[0]
    assert half.rgb.shape == (1, H // 2, W // 2, 3) and half.cameras.width == W // 2


def test_masks_are_found_by_frame_name(n3dv: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    mask = np.full((H, W), 255, np.uint8)
    mask[:, : W // 2] = 0
    iio.imwrite(masks / "cam01_000002.png", mask)
    scene = load_scene(DataConfig(path=n3dv, masks=masks), tmp_path / "work")
    view = N_FRAMES + 2
    assert scene.mask_paths[view] == masks / "cam01_000002.png" and scene.mask_paths[view + 1] is None
    batch = ImageDataset(scene, [view])[0]
    assert (
        batch.mask is not None
        and batch.mask[0, :, : W // 2].max() == 0
        and batch.mask[0, :, W // 2 :].min() == 1
    )


def test_random_access_gives_the_frames_of_sequential_decoding(n3dv: Path) -> None:
    path = n3dv / "cam02.mp4"
    with av.open(str(path)) as container:
        sequential = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    decoder = VideoDecoder(path)
    for index in [5, 0, 3, 3, 1, 2, 4, 0, 5]:
        np.testing.assert_array_equal(decoder.read(index), sequential[index])
    decoder.close()
    with pytest.raises(DatasetError, match=r"cam02\.mp4: the video ends before frame 6"):
        VideoDecoder(path).read(N_FRAMES)


def test_reader_keeps_few_videos_open(n3dv: Path) -> None:
    reader = VideoFrameReader(max_open=2)
    for c in [0, 1, 2, 0]:
        reader.read(VideoFrame(n3dv / f"cam{c:02d}.mp4", 1))
        assert len(reader._open) <= 2
    decoded = reader.decoded
    reader.close()
    assert reader.decoded == decoded  # closed videos still count


def test_frame_subsampling_and_test_cameras(n3dv: Path) -> None:
    def read(**kwargs: object) -> tuple[list[float], list[int], list[int]]:
        scene = read_multiview_video(DataConfig(path=n3dv, multiview=MultiviewVideoConfig(**kwargs)), n3dv)
        frames = [p.index for p in scene.image_paths[: len(scene.image_paths) // N_CAMERAS]]
        return scene.cameras.times.tolist(), frames, scene.test_indices

    times, frames, test = read(frame_step=2)
    assert frames == [0, 2, 4] and times[:3] == pytest.approx([0.0, 0.5, 1.0]) and test == [0, 1, 2]
    times, frames, _ = read(frame_step=2, max_frames=2)
    assert frames == [0, 2] and times[:2] == pytest.approx([0.0, 1.0])
    _, _, test = read(test_cameras=(1, 2))
    assert test == list(range(N_FRAMES, N_CAMERAS * N_FRAMES))
    assert read(test_cameras=())[2] == []
    with pytest.raises(DatasetError, match=r"test_cameras \[3\] out of range for 3 cameras"):
        read(test_cameras=(3,))


def _break_shape(scene: Path, sample: Path) -> None:
    np.save(scene / "poses_bounds.npy", np.zeros((N_CAMERAS, 15)))


def _too_few_rows(scene: Path, sample: Path) -> None:
    np.save(scene / "poses_bounds.npy", np.load(scene / "poses_bounds.npy")[:2])


def _shorter_video(scene: Path, sample: Path) -> None:
    _encode(scene / "cam01.mp4", _source_frames(sample, 1)[:5])


def _smaller_video(scene: Path, sample: Path) -> None:
    _encode(scene / "cam02.mp4", [f[::2, ::2].copy() for f in _source_frames(sample, 2)])


def _garbage_video(scene: Path, sample: Path) -> None:
    (scene / "cam01.mp4").write_bytes(b"not a video at all" * 10)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_break_shape, r"poses_bounds\.npy: expected an N x 17 array, got shape \(3, 15\)"),
        (_too_few_rows, r"poses_bounds\.npy: has 2 camera rows but the folder holds 3 cam\*\.mp4 videos"),
        (_shorter_video, r"cam01\.mp4: has 5 frames but cam00\.mp4 has 6"),
        (_smaller_video, r"cam02\.mp4: is 32x24 but cam00\.mp4 is 64x48"),
        (_garbage_video, r"cam01\.mp4: not a readable video"),
    ],
)
def test_malformed_input_is_a_one_line_error_naming_the_file(
    n3dv: Path, sample: Path, tmp_path: Path, damage, message: str
) -> None:
    scene = _copy(n3dv, tmp_path)
    damage(scene, sample)
    with pytest.raises(DatasetError, match=message) as info:
        read_multiview_video(DataConfig(path=scene), scene)
    assert "\n" not in str(info.value)


def test_dynamic_pipeline_trains_on_a_multiview_video_folder(n3dv: Path, tmp_path: Path) -> None:
    result = train_dynamic(n3dv, tmp_path / "out", steps=8, random_points=500)
    assert result.metrics["steps"] == 8 and result.metrics["num_views"] == N_FRAMES  # camera 0's frames
    assert result.metrics["views"][0]["name"] == "cam00_000000"
    assert (tmp_path / "out" / "point_cloud.ply").is_file()
