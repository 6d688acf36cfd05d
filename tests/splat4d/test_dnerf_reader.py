"""D-NeRF-style scenes (the Blender layout with a `time` per frame): times read into `Cameras.times`, mixed
timed and untimed frames refused, the val split (one fixed camera sweeping time) held out of training, and
`reconstruct --pipeline dynamic` end to end, with a video of the val camera's time sweep."""

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
SPLITS = {"train": [1, 2, 3, 5, 6, 7], "test": [0, 4], "val": [0, 3, 7]}
VAL_CAMERA = 2
"""D-NeRF's val split is one fixed camera sweeping time: the val frames all take this view's pose."""


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "monocular"
    cfg = SampleConfig(dynamic=True, layout="monocular", n_views=N_VIEWS, width=64, height=48, n_points=200)
    write_sample_scene(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def dnerf(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The monocular sample as a D-NeRF folder: RGBA PNGs and transforms_{train,val,test}.json with times."""
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
                    "transform_matrix": meta["frames"][VAL_CAMERA if split == "val" else i][
                        "transform_matrix"
                    ],
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


def test_the_val_split_is_held_out_with_its_fixed_camera_and_times(
    sample: Path, dnerf: Path, tmp_path: Path
) -> None:
    scene = load_scene(DataConfig(path=dnerf), tmp_path)
    reference = read_nerfstudio(sample)
    assert len(scene.cameras) == len(SPLITS["train"]) + len(SPLITS["test"])  # no val frame trains or tests
    val = scene.metadata["val_cameras"]
    assert val.times is not None
    torch.testing.assert_close(val.times, reference.cameras.times[SPLITS["val"]])
    torch.testing.assert_close(val.T_world_cam, reference.cameras.T_world_cam[VAL_CAMERA].expand(3, 4, 4))
    merged = load_scene(DataConfig(path=dnerf, train_on_val=True), tmp_path)
    assert len(merged.train_indices) == len(SPLITS["train"]) + len(SPLITS["val"])


def test_dnerf_lego_trains_on_train_only(shared_data: Path) -> None:
    root = shared_data / "dnerf_lego_partial"
    scene = read_blender(DataConfig(path=root), root)
    assert (len(scene.train_indices), len(scene.test_indices)) == (34, 18)
    val = scene.metadata["val_cameras"]
    assert len(val) == 11 and len(val.centers.unique(dim=0)) == 1  # one fixed camera ...
    assert val.times is not None and val.times[0] == 0 and (val.times.diff() > 0).all()  # ... sweeping time


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
    for split in ("test", "val"):
        meta = json.loads((scene / f"transforms_{split}.json").read_text())
        untime(meta["frames"])
        (scene / f"transforms_{split}.json").write_text(json.dumps(meta))
    assert read_blender(DataConfig(path=scene), scene).cameras.times is None


def test_dynamic_pipeline_trains_on_a_dnerf_folder(dnerf: Path, tmp_path: Path) -> None:
    result = train_dynamic(dnerf, tmp_path / "out", steps=8, random_points=500)
    assert result.metrics["steps"] == 8 and result.metrics["num_views"] == len(SPLITS["test"])
    cameras = json.loads((tmp_path / "out" / "cameras.json").read_text())["cameras"]
    assert [c["time"] for c in cameras] == pytest.approx(result.scene.cameras.times.tolist())
    assert (tmp_path / "out" / "point_cloud.ply").is_file()
    # The held-out val camera's time sweep, as a video of the trained scene.
    from pipelines import PIPELINES
    from splat4d.export.video import VideoExport

    export = VideoExport(
        tmp_path / "out", path="val", frames=3, mp4=False, pngs=True, device="cpu", progress=False
    )
    (frames,) = export.main(PIPELINES)
    assert frames == tmp_path / "out" / "exports" / "val_frames" and len(list(frames.glob("*.png"))) == 3
    # ... and scored on those held-out frames, apart from the test metrics.
    from splat4d.cli import Eval

    test_metrics = (tmp_path / "out" / "metrics.json").read_text()
    Eval(tmp_path / "out", device="cpu", split="val").main()
    val = json.loads((tmp_path / "out" / "val" / "metrics.json").read_text())
    assert val["split"] == "val" and val["num_views"] == len(SPLITS["val"])
    assert [v["name"] for v in val["views"]] == [f"r_{i:03d}" for i in SPLITS["val"]]
    assert 0 < val["psnr"] < 100 and len(list((tmp_path / "out" / "val" / "eval").glob("*.png"))) == 3
    assert (tmp_path / "out" / "metrics.json").read_text() == test_metrics
