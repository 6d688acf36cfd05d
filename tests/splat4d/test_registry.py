"""`DATAPARSERS`, `detect_format` and `load_scene`: detection of every format, errors, validation and masks."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from splat4d.data import DATAPARSERS, DataParser, DatasetError, detect_format, load_scene
from splat4d.data.config import DataConfig
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import SampleConfig, write_sample_scene


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.zeros((8, 8, 3), np.uint8))
    return path


def _blender(root: Path) -> Path:
    (root / "transforms_train.json").write_text("{}")
    (root / "transforms.json").write_text("{}")  # also looks like nerfstudio: blender is tried first
    return root


def _nerfstudio_folder(root: Path) -> Path:
    (root / "transforms.json").write_text("{}")
    return root


def _nerfstudio_file(root: Path) -> Path:
    return _nerfstudio_folder(root) / "transforms.json"


def _colmap(root: Path) -> Path:
    (root / "sparse" / "0").mkdir(parents=True)
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (root / "sparse" / "0" / name).touch()
    _png(root / "images" / "a.png")
    return root


def _n3dv(root: Path) -> Path:
    np.save(root / "poses_bounds.npy", np.zeros((1, 17)))
    (root / "cam00.mp4").touch()
    return root


def _video(root: Path) -> Path:
    (root / "x.mp4").touch()
    return root / "x.mp4"


def _images(root: Path) -> Path:
    _png(root / "a.png")
    _png(root / "b.png")
    return root


LAYOUTS: dict[str, Callable[[Path], Path]] = {
    "blender": _blender,
    "nerfstudio folder": _nerfstudio_folder,
    "nerfstudio file": _nerfstudio_file,
    "colmap": _colmap,
    "n3dv": _n3dv,
    "video": _video,
    "images": _images,
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "scene"
    write_sample_scene(SampleConfig(n_views=6, width=32, height=24, n_points=100), out, progress=False)
    return out


def test_registry_lists_every_format_in_detection_order() -> None:
    assert list(DATAPARSERS) == ["blender", "nerfstudio", "llff", "colmap", "n3dv", "video", "images"]
    assert all(isinstance(p, DataParser) and p.description for p in DATAPARSERS.values())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_format_is_detected_from_its_files(layout: str, tmp_path: Path) -> None:
    assert detect_format(LAYOUTS[layout](tmp_path)) == layout.split()[0]


def test_unknown_folder_lists_the_formats(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    expected = r"not a dataset splat4d can read \(expected one of: blender, nerfstudio, llff, colmap, n3dv, video, images\)"
    with pytest.raises(DatasetError, match=expected):
        detect_format(tmp_path)


def test_nonexistent_path_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere: does not exist"):
        detect_format(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"nowhere: does not exist"):
        load_scene(DataConfig(path=tmp_path / "nowhere", format="nerfstudio"), tmp_path / "work")


def test_load_scene_detects_and_reads_nerfstudio(sample: Path, tmp_path: Path) -> None:
    scene = load_scene(DataConfig(path=sample), tmp_path)
    reference = read_nerfstudio(sample)
    assert scene.metadata["format"] == "nerfstudio"
    assert scene.image_paths == reference.image_paths and scene.train_indices == reference.train_indices
    assert scene.mask_paths is None


def test_an_explicit_format_skips_detection(sample: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(sample, tmp_path / "scene"))
    (root / "transforms_train.json").write_text("{}")  # would be detected as (broken) blender
    assert detect_format(root) == "blender"
    scene = load_scene(DataConfig(path=root, format="nerfstudio"), tmp_path / "work")
    assert len(scene.cameras) == 6


def test_load_scene_reads_lego_as_blender(shared_data: Path, tmp_path: Path) -> None:
    scene = load_scene(DataConfig(path=shared_data / "nerf_synthetic_lego"), tmp_path)
    assert scene.metadata["format"] == "blender"
    assert (len(scene.train_indices), len(scene.test_indices)) == (87, 13)


def test_scene_without_training_images_is_refused(sample: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(sample, tmp_path / "scene"))
    meta = json.loads((root / "transforms.json").read_text())
    meta["test_filenames"] += meta["train_filenames"]
    meta["train_filenames"] = []
    (root / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"scene: no training images"):
        load_scene(DataConfig(path=root), tmp_path / "work")


def test_mask_folder_is_matched_to_images_by_name(sample: Path, tmp_path: Path) -> None:
    _png(tmp_path / "masks" / "frame_00001.png")
    _png(tmp_path / "masks" / "frame_00002.png.png")  # COLMAP's naming
    scene = load_scene(DataConfig(path=sample, masks=tmp_path / "masks"), tmp_path / "work")
    assert scene.mask_paths is not None and len(scene.mask_paths) == 6
    by_stem = {p.stem: m for p, m in zip(scene.image_paths, scene.mask_paths, strict=True)}
    assert by_stem["frame_00001"] == tmp_path / "masks" / "frame_00001.png"
    assert by_stem["frame_00002"] == tmp_path / "masks" / "frame_00002.png.png"
    assert by_stem["frame_00000"] is None


def test_mask_folder_matching_no_image_is_refused(sample: Path, tmp_path: Path) -> None:
    _png(tmp_path / "masks" / "other.png")
    with pytest.raises(DatasetError, match=r"masks: no mask named like any image"):
        load_scene(DataConfig(path=sample, masks=tmp_path / "masks"), tmp_path / "work")
    with pytest.raises(DatasetError, match=r"absent: mask folder not found"):
        load_scene(DataConfig(path=sample, masks=tmp_path / "absent"), tmp_path / "work")
