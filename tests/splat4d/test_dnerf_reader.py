"""D-NeRF-style scenes (the Blender layout with a `time` per frame): times read into `Cameras.times`, mixed
timed and untimed frames refused, and `reconstruct --pipeline dynamic` end to end."""

import json
import math
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from splat4d.data import detect_format, load_scene
from splat4d.data.base import DatasetError
from splat4d.data.blender import read_blender
from splat4d.data.config import DataConfig
from splat4d.data.nerfstudio import read_nerfstudio
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from tests.pipelines.helpers import train_dynamic

N_VIEWS = 8
SPLITS = {"train": [1, 2, 3, 5, 6, 7], "test": [0, 4]}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "monocular"
    cfg = SampleConfig(dynamic=True, layout="monocular", n_views=N_VIEWS, width=64, height=48, n_points=200)
    write_sample_scene(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def dnerf(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The monocular sample as a D-NeRF folder: RGBA PNGs and transforms_{train,test}.json with times."""
    out = tmp_path_factory.mktemp("dnerf") / "scene"
    meta = json.loads((sample / "transforms.json").read_text())
    angle_x = 2 * math.atan(0.5 * meta["w"] / meta["fl_x"])
    for split, views in SPLITS.items():
        (out / split).mkdir(parents=True)
        entries = []
        for i in views:
            frame = meta["frames"][i]
            rgb = iio.imread(sample / frame["file_path"])
            iio.imwrite(
                out / split / f"r_{i:03d}.png", np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
            )
            entries.append(
                {
                    "file_path": f"./{split}/r_{i:03d}",
                    "time": frame["time"],
                    "transform_matrix": frame["transform_matrix"],
                }
            )
        (out / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": angle_x, "frames": entries})
        )
    return out


def _edit(dnerf: Path, tmp_path: Path, split: str, change) -> Path:
    scene = Path(shutil.copytree(dnerf, tmp_path / "scene"))
    path = scene / f"transforms_{split}.json"
    meta = json.loads(path.read_text())
    change(meta["frames"])
    path.write_text(json.dumps(meta))
    return scene


def test_times_are_read_into_the_cameras(sample: Path, dnerf: Path, tmp_path: Path) -> None:
    assert detect_format(dnerf) == "blender"
    scene = load_scene(DataConfig(path=dnerf), tmp_path)
    reference = read_nerfstudio(sample)
    order = SPLITS["train"] + SPLITS["test"]
    assert scene.cameras.times is not None
    torch.testing.assert_close(scene.cameras.times, reference.cameras.times[order])
    torch.testing.assert_close(scene.cameras.T_world_cam, reference.cameras.T_world_cam[order])
    assert scene.cameras.times[0].item() == pytest.approx(1 / (N_VIEWS - 1))
    assert len(scene.test_indices) == len(SPLITS["test"])


def test_a_frame_without_time_among_timed_frames_is_an_error_naming_its_file(
    dnerf: Path, tmp_path: Path
) -> None:
    scene = _edit(dnerf, tmp_path, "test", lambda frames: frames[1].pop("time"))
    with pytest.raises(
        DatasetError, match=r"transforms_test\.json: frame \./test/r_004 has no 'time'"
    ) as info:
        read_blender(DataConfig(path=scene), scene)
    assert "\n" not in str(info.value)


def test_a_timed_frame_among_untimed_frames_is_an_error(dnerf: Path, tmp_path: Path) -> None:
    def untime_all_but_last(frames: list[dict]) -> None:
        for frame in frames[:-1]:
            frame.pop("time")

    scene = _edit(dnerf, tmp_path, "train", untime_all_but_last)
    with pytest.raises(DatasetError, match=r"transforms_train\.json: frame \./train/r_007 has a 'time'"):
        read_blender(DataConfig(path=scene), scene)


@pytest.mark.parametrize(
    ("value", "message"),
    [(1.5, r"time 1\.5 .* not in \[0, 1\]"), ("soon", r"time of \./train/r_001 is not a number")],
)
def test_bad_times_are_errors(dnerf: Path, tmp_path: Path, value: object, message: str) -> None:
    scene = _edit(dnerf, tmp_path, "train", lambda frames: frames[0].update(time=value))
    with pytest.raises(DatasetError, match=rf"transforms_train\.json: {message}"):
        read_blender(DataConfig(path=scene), scene)


def test_frames_without_any_time_stay_static(dnerf: Path, tmp_path: Path) -> None:
    def untime(frames: list[dict]) -> None:
        for frame in frames:
            frame.pop("time")

    scene = _edit(dnerf, tmp_path, "train", untime)
    meta = json.loads((scene / "transforms_test.json").read_text())
    untime(meta["frames"])
    (scene / "transforms_test.json").write_text(json.dumps(meta))
    assert read_blender(DataConfig(path=scene), scene).cameras.times is None


def test_dynamic_pipeline_trains_on_a_dnerf_folder(dnerf: Path, tmp_path: Path) -> None:
    result = train_dynamic(dnerf, tmp_path / "out", steps=8, random_points=500)
    assert result.metrics["steps"] == 8 and result.metrics["num_views"] == len(SPLITS["test"])
    cameras = json.loads((tmp_path / "out" / "cameras.json").read_text())["cameras"]
    assert [c["time"] for c in cameras] == pytest.approx(result.scene.cameras.times.tolist())
    assert (tmp_path / "out" / "point_cloud.ply").is_file()
