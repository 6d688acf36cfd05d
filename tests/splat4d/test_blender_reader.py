"""`read_blender` on the sample scene rewritten in the Blender layout, on malformed folders, and on lego."""

import json
import math
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from splat4d.data.base import DatasetError
from splat4d.data.blender import is_blender, read_blender, val_scene
from splat4d.data.config import DataConfig
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import SampleConfig, write_sample_scene


def _write_blender(nerfstudio_dir: Path, out: Path, splits: dict[str, list[str]]) -> None:
    """Rewrite a sample scene as a Blender scene: RGBA PNGs (transparent border) and transforms_<split>.json.

    `splits` maps a split name to the sample's image stems; file_path entries are written without extension.
    """
    meta = json.loads((nerfstudio_dir / "transforms.json").read_text())
    frames = {Path(f["file_path"]).stem: f for f in meta["frames"]}
    angle_x = 2 * math.atan(0.5 * meta["w"] / meta["fl_x"])
    for split, stems in splits.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        entries = []
        for stem in stems:
            rgb = iio.imread(nerfstudio_dir / frames[stem]["file_path"])
            alpha = np.zeros(rgb.shape[:2], np.uint8)
            alpha[4:-4, 4:-4] = 255
            iio.imwrite(out / split / f"{stem}.png", np.dstack([rgb, alpha]))
            entries.append(
                {"file_path": f"./{split}/{stem}", "transform_matrix": frames[stem]["transform_matrix"]}
            )
        (out / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": angle_x, "frames": entries})
        )


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "nerfstudio"
    write_sample_scene(SampleConfig(n_views=6, width=64, height=48), out, progress=False)
    return out


STEMS = [f"frame_{i:05d}" for i in range(6)]


@pytest.fixture(scope="module")
def blender(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("blender")
    _write_blender(sample, out, {"train": STEMS[1:4], "val": STEMS[4:], "test": STEMS[:1]})
    return out


def _copy(blender: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(blender, tmp_path / "scene"))


def test_blender_cameras_equal_the_nerfstudio_cameras_of_the_same_frames(sample: Path, blender: Path) -> None:
    scene = read_blender(DataConfig(path=blender), blender)
    reference = read_nerfstudio(sample)
    names = [p.stem for p in reference.image_paths]
    for cameras, paths in ((scene.cameras, scene.image_paths),
                           (scene.metadata["val_cameras"], scene.metadata["val_image_paths"])):  # fmt: skip
        order = torch.tensor([names.index(p.stem) for p in paths])
        assert (cameras.width, cameras.height) == (64, 48)
        torch.testing.assert_close(cameras.T_world_cam, reference.cameras.T_world_cam[order])
        torch.testing.assert_close(cameras.Ks, reference.cameras.Ks[order])


def test_train_frames_train_test_frames_test_and_val_frames_are_held_out(blender: Path) -> None:
    scene = read_blender(DataConfig(path=blender), blender)
    assert [p.stem for p in scene.image_paths] == STEMS[1:4] + STEMS[:1]
    assert scene.train_indices == [0, 1, 2] and scene.test_indices == [3]
    assert scene.image_paths[0] == blender / "train" / "frame_00001.png"
    assert scene.metadata["split_counts"] == {"train": 3, "val": 2, "test": 1}
    assert [p.stem for p in scene.metadata["val_image_paths"]] == STEMS[4:]
    assert len(scene.metadata["val_cameras"]) == 2


def test_train_on_val_adds_the_val_frames_to_training(blender: Path) -> None:
    scene = read_blender(DataConfig(path=blender, train_on_val=True), blender)
    assert [p.stem for p in scene.image_paths] == STEMS[1:] + STEMS[:1]
    assert scene.train_indices == [0, 1, 2, 3, 4] and scene.test_indices == [5]
    assert [p.stem for p in scene.metadata["val_image_paths"]] == STEMS[4:]  # still the val camera(s)


def test_without_a_val_file_there_are_no_val_cameras(blender: Path, tmp_path: Path) -> None:
    root = _copy(blender, tmp_path)
    (root / "transforms_val.json").unlink()
    scene = read_blender(DataConfig(path=root), root)
    assert "val_cameras" not in scene.metadata and "val_image_paths" not in scene.metadata
    assert scene.metadata["split_counts"] == {"train": 3, "test": 1}


def test_the_val_frames_become_a_scene_of_test_views(blender: Path, tmp_path: Path) -> None:
    scene = read_blender(DataConfig(path=blender), blender)
    val = val_scene(scene)
    assert (
        [p.stem for p in val.image_paths] == STEMS[4:]
        and val.train_indices == []
        and val.test_indices == [0, 1]
    )
    assert torch.equal(val.cameras.T_world_cam, scene.metadata["val_cameras"].T_world_cam)
    assert val.background == (1.0, 1.0, 1.0) and "val_cameras" not in val.metadata
    root = _copy(blender, tmp_path)
    (root / "transforms_val.json").unlink()
    with pytest.raises(DatasetError, match=r"scene: no val frames to evaluate on"):
        val_scene(read_blender(DataConfig(path=root), root))
    trained_on = read_blender(DataConfig(path=blender, train_on_val=True), blender)
    with pytest.raises(DatasetError, match=r"val frames were trained on \(--data.train-on-val\)"):
        val_scene(trained_on)


def test_blender_scene_is_white_without_points_or_depth(blender: Path) -> None:
    scene = read_blender(DataConfig(path=blender), blender)
    assert scene.background == (1.0, 1.0, 1.0)
    assert scene.points is None and scene.depth_paths == [None] * 4


def test_without_a_test_file_every_test_every_th_frame_is_held_out(blender: Path, tmp_path: Path) -> None:
    root = _copy(blender, tmp_path)
    (root / "transforms_test.json").unlink()
    scene = read_blender(DataConfig(path=root, test_every=2), root)
    assert scene.test_indices == [0, 2] and scene.train_indices == [1]
    scene = read_blender(DataConfig(path=root, test_every=2, train_on_val=True), root)
    assert scene.test_indices == [0, 2, 4] and scene.train_indices == [1, 3]


def test_is_blender_needs_a_folder_with_transforms_train(blender: Path, sample: Path) -> None:
    assert is_blender(blender)
    assert not is_blender(blender / "transforms_train.json")
    assert not is_blender(sample)


def test_missing_train_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"transforms_train\.json: file not found"):
        read_blender(DataConfig(path=tmp_path), tmp_path)


def test_corrupt_json_is_named(blender: Path, tmp_path: Path) -> None:
    root = _copy(blender, tmp_path)
    (root / "transforms_test.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"transforms_test\.json: not valid JSON"):
        read_blender(DataConfig(path=root), root)


def test_missing_camera_angle_is_named(blender: Path, tmp_path: Path) -> None:
    root = _copy(blender, tmp_path)
    meta = json.loads((root / "transforms_val.json").read_text())
    del meta["camera_angle_x"]
    (root / "transforms_val.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"transforms_val\.json: no numeric 'camera_angle_x'"):
        read_blender(DataConfig(path=root), root)


def test_missing_image_is_named(blender: Path, tmp_path: Path) -> None:
    root = _copy(blender, tmp_path)
    (root / "val" / "frame_00005.png").unlink()
    with pytest.raises(DatasetError, match=r"frame_00005\.png: image not found"):
        read_blender(DataConfig(path=root), root)


def test_mixed_image_sizes_are_refused(blender: Path, tmp_path: Path) -> None:
    root = _copy(blender, tmp_path)
    iio.imwrite(root / "test" / "frame_00000.png", np.zeros((24, 32, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"frame_00000\.png: image is 32x24 but frame_00001\.png is 64x48"):
        read_blender(DataConfig(path=root), root)


def test_lego_has_the_published_split_and_intrinsics(shared_data: Path) -> None:
    root = shared_data / "nerf_synthetic_lego"
    scene = read_blender(DataConfig(path=root), root)
    assert (len(scene.train_indices), len(scene.test_indices)) == (87, 13)
    assert (scene.cameras.width, scene.cameras.height) == (400, 400)
    angle_x = json.loads((root / "transforms_train.json").read_text())["camera_angle_x"]
    focal = 0.5 * 400 / math.tan(angle_x / 2)
    expected = torch.tensor([[focal, 0, 200], [0, focal, 200], [0, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(scene.cameras.Ks, expected.expand(100, 3, 3))


def test_lego_cameras_look_at_the_object_in_opencv_axes(shared_data: Path) -> None:
    # The lego cameras orbit the origin, aimed at it: OpenCV +z (forward) points at the origin, and image
    # "up" (-y) points up the world z axis. Wrong axis flips make these dot products negative.
    root = shared_data / "nerf_synthetic_lego"
    cams = read_blender(DataConfig(path=root), root).cameras
    to_origin = torch.nn.functional.normalize(-cams.centers, dim=-1)
    forward = cams.T_world_cam[:, :3, 2]
    assert ((forward * to_origin).sum(-1) > 0.99).all()
    assert (-cams.T_world_cam[:, 2, 1] > 0).all()


def test_without_a_test_file_test_every_zero_trains_on_everything(blender: Path, tmp_path: Path) -> None:
    root = _copy(blender, tmp_path)
    (root / "transforms_test.json").unlink()
    scene = read_blender(DataConfig(path=root, test_every=0), root)
    assert scene.train_indices == [0, 1, 2] and scene.test_indices == []
