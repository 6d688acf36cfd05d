"""`ImageDataset` (decoding, downscaling with consistent intrinsics, alpha, masks, errors) and `TrainSampler`."""

import math
from dataclasses import replace
from itertools import islice
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.dataset import Batch, ImageDataset, TrainSampler
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import SampleConfig, write_sample_scene

W, H = 64, 48


def _cameras(n: int) -> Cameras:
    K = torch.tensor([[50.0, 0.0, W / 2], [0.0, 50.0, H / 2], [0.0, 0.0, 1.0]])
    return Cameras(
        T_world_cam=torch.eye(4).expand(n, 4, 4).clone(), Ks=K.expand(n, 3, 3).clone(), width=W, height=H
    )


def _scene(paths: list[Path], **kwargs: object) -> SceneData:
    n = len(paths)
    return SceneData(_cameras(n), paths, [None] * n, list(range(n)), [], **kwargs)


def _blob(center: tuple[float, float], sigma: float = 2.5) -> np.ndarray:
    """A Gaussian blob centred at continuous pixel coordinates (pixel centres at +0.5), 16-bit grey."""
    v, u = np.mgrid[0:H, 0:W] + 0.5
    g = np.exp(-((u - center[0]) ** 2 + (v - center[1]) ** 2) / (2 * sigma**2))
    return (g * 65535).round().astype(np.uint16)


def _centroid(image: torch.Tensor) -> torch.Tensor:
    """Intensity centroid (x, y) of a [H, W] image, with pixel centres at +0.5."""
    v, u = torch.meshgrid(
        torch.arange(image.shape[0]) + 0.5, torch.arange(image.shape[1]) + 0.5, indexing="ij"
    )
    return torch.stack([(u * image).sum(), (v * image).sum()]) / image.sum()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SceneData:
    out = tmp_path_factory.mktemp("sample") / "scene"
    write_sample_scene(SampleConfig(n_views=6, width=W, height=H), out, progress=False)
    return read_nerfstudio(out)


def test_batches_hold_one_camera_and_a_float_image_on_the_device(
    sample: SceneData, device: torch.device
) -> None:
    data = ImageDataset(sample, sample.train_indices, device=device)
    batch = data[1]
    assert isinstance(batch, Batch) and len(data) == len(sample.train_indices)
    assert batch.index == sample.train_indices[1] and len(batch.cameras) == 1 and batch.mask is None
    # `device` may be "cuda" without an index; tensors on it report "cuda:0", so compare the device type.
    assert batch.rgb.shape == (1, H, W, 3) and batch.rgb.dtype == torch.float32
    assert batch.rgb.device.type == device.type and batch.cameras.device.type == device.type
    expected = iio.imread(sample.image_paths[batch.index]).astype(np.float32) / 255
    torch.testing.assert_close(batch.rgb[0].cpu(), torch.from_numpy(expected))
    torch.testing.assert_close(batch.cameras.Ks.cpu(), sample.cameras.Ks[batch.index : batch.index + 1])


def test_images_are_kept_as_uint8(sample: SceneData) -> None:
    data = ImageDataset(sample, sample.train_indices)
    assert all(image is not None and image.dtype == torch.uint8 for image in data._images)


def test_downscale_two_is_a_box_average_with_halved_intrinsics(sample: SceneData) -> None:
    full = ImageDataset(sample, [0])
    half = ImageDataset(sample, [0], downscale=2)
    assert (half.width, half.height) == (W // 2, H // 2)
    box = full[0].rgb[0].reshape(H // 2, 2, W // 2, 2, 3).mean((1, 3))
    torch.testing.assert_close(half[0].rgb[0], box, atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(half.cameras.Ks, sample.cameras.scaled(0.5).Ks[:1])


@pytest.mark.parametrize("downscale", [2, 3, 5])
def test_downscaled_image_and_intrinsics_agree_on_where_a_point_lands(tmp_path: Path, downscale: int) -> None:
    # A blob at a known full-resolution position back-projects to a ray; the downscaled camera must project
    # that ray onto the blob's centroid in the downscaled image (3 and 5 do not divide 64 x 48 evenly).
    center = (29.3, 21.7)
    iio.imwrite(tmp_path / "blob.png", _blob(center))
    data = ImageDataset(_scene([tmp_path / "blob.png"]), [0], downscale=downscale)
    K, K_small = _cameras(1).Ks[0], data.cameras.Ks[0]
    ray = torch.linalg.solve(K, torch.tensor([center[0], center[1], 1.0]))
    expected = (K_small @ ray)[:2] / (K_small @ ray)[2]
    assert (data.width, data.height) == (W // downscale, H // downscale)
    torch.testing.assert_close(_centroid(data[0].rgb[0, ..., 0]), expected, atol=0.01, rtol=0)


def test_rgba_is_composited_onto_the_scene_background(tmp_path: Path) -> None:
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, : W // 2, 3] = 255  # left half opaque, right half transparent
    rgba[:, W // 2 :, 3] = 0
    rgba[0, 0, 3] = 128
    iio.imwrite(tmp_path / "a.png", rgba)
    white = ImageDataset(_scene([tmp_path / "a.png"], background=(1.0, 1.0, 1.0)), [0])[0].rgb[0]
    black = ImageDataset(_scene([tmp_path / "a.png"]), [0])[0].rgb[0]
    torch.testing.assert_close(white[:, W // 2 :], torch.ones(H, W // 2, 3))
    torch.testing.assert_close(black[:, W // 2 :], torch.zeros(H, W // 2, 3))
    torch.testing.assert_close(white[1:, 0], torch.tensor([200, 100, 50]).div(255).expand(H - 1, 3))
    a = 128 / 255
    expected = (torch.tensor([200.0, 100.0, 50.0]) / 255 * a + (1 - a)).mul(255).round() / 255
    torch.testing.assert_close(white[0, 0], expected)


def test_masks_are_thresholded_and_downscaled_like_the_images(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "a.png", np.zeros((H, W, 3), np.uint8))
    mask = np.zeros((H, W), np.uint8)
    mask[:, :33] = 200  # column 32 is the left half of a 2x2 block at half resolution
    mask[:, 33:40] = 100  # below the threshold
    iio.imwrite(tmp_path / "m.png", mask)
    scene = _scene([tmp_path / "a.png", tmp_path / "a.png"], mask_paths=[tmp_path / "m.png", None])
    full = ImageDataset(scene, [0, 1])
    assert full[1].mask is None
    m = full[0].mask
    assert m is not None and m.shape == (1, H, W, 1)
    assert m[0, :, :33].eq(1).all() and m[0, :, 33:].eq(0).all()
    half = ImageDataset(scene, [0], downscale=2)[0].mask
    assert half is not None and half.shape == (1, H // 2, W // 2, 1)
    assert half[0, :, :16].eq(1).all() and half[0, :, 17:].eq(0).all()
    torch.testing.assert_close(half[0, :, 16, 0], torch.full((H // 2,), 128 / 255))


def test_image_of_the_wrong_size_is_named(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "small.png", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"small\.png: image is 32x24 but the camera says 64x48"):
        ImageDataset(_scene([tmp_path / "small.png"]), [0])


def test_mask_of_the_wrong_size_is_named(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "a.png", np.zeros((H, W, 3), np.uint8))
    iio.imwrite(tmp_path / "m.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DatasetError, match=r"m\.png: image is 64x49 but the camera says 64x48"):
        ImageDataset(_scene([tmp_path / "a.png"], mask_paths=[tmp_path / "m.png"]), [0])


@pytest.mark.parametrize(
    ("content", "problem"), [(b"", "empty file"), (b"not an image", "not a readable image")]
)
def test_unreadable_image_is_named(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "broken.png").write_bytes(content)
    with pytest.raises(DatasetError, match=rf"broken\.png: {problem}"):
        ImageDataset(_scene([tmp_path / "broken.png"]), [0])


def test_missing_image_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"gone\.png: not found"):
        ImageDataset(_scene([tmp_path / "gone.png"]), [0])


def test_index_past_the_end_raises_index_error(sample: SceneData) -> None:
    data = ImageDataset(sample, [0, 1])
    assert data[-1].index == 1
    with pytest.raises(IndexError):
        data[2]


def test_dataset_cameras_are_the_subset_downscaled(sample: SceneData) -> None:
    data = ImageDataset(sample, [4, 2], downscale=2)
    cams = data.cameras
    assert len(cams) == 2 and (cams.width, cams.height) == (W // 2, H // 2)
    torch.testing.assert_close(cams.T_world_cam, sample.cameras.T_world_cam[[4, 2]])


def test_grey_and_grey_alpha_images_become_rgb(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "g.png", np.full((H, W), 51, np.uint8))
    la = np.zeros((H, W, 2), np.uint8)
    la[..., 0], la[..., 1] = 51, 0
    iio.imwrite(tmp_path / "la.png", la)
    scene = _scene([tmp_path / "g.png", tmp_path / "la.png"], background=(0.0, 1.0, 0.0))
    data = ImageDataset(scene, [0, 1])
    torch.testing.assert_close(data[0].rgb, torch.full((1, H, W, 3), 0.2))
    torch.testing.assert_close(data[1].rgb[0, 0, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_sampler_visits_every_index_once_per_epoch_in_a_new_order() -> None:
    sampler = TrainSampler(10, seed=3)
    epochs = [list(islice(sampler, 10)) for _ in range(3)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert list(islice(TrainSampler(10, seed=3), 10)) == epochs[0]
    assert list(islice(TrainSampler(10, seed=4), 10)) != epochs[0]


@pytest.mark.parametrize("k", [0, 4, 7, 14, 21])
def test_sampler_resumes_exactly_from_its_state(k: int) -> None:
    uninterrupted = list(islice(TrainSampler(7, seed=11), 40))
    first = TrainSampler(7, seed=11)
    head = list(islice(first, k))
    state = first.state_dict()
    resumed = TrainSampler(7, seed=0)
    resumed.load_state_dict(state)
    assert head + list(islice(resumed, 40 - k)) == uninterrupted


def test_sampler_refuses_a_state_saved_for_another_size() -> None:
    with pytest.raises(ValueError, match="state is for 5 images"):
        TrainSampler(6).load_state_dict(TrainSampler(5).state_dict())


def test_sampler_state_is_plain_ints() -> None:
    state = TrainSampler(3, seed=2).state_dict()
    assert state == {"n": 3, "seed": 2, "epoch": 0, "position": 0}
    assert all(type(v) is int for v in state.values())
    assert not math.isnan(sum(state.values()))


def test_dataset_of_the_same_scene_with_a_new_background_is_independent(sample: SceneData) -> None:
    # The reader's SceneData is not changed by building datasets from a modified copy.
    ImageDataset(replace(sample, background=(1.0, 1.0, 1.0)), [0])
    assert sample.background is None
