"""bench/quality.py's `sceaux_fast` scene (the fast preset on the 11 Sceaux photos, as a user runs it): its split,
command, row and figures, and that running some scenes keeps the others' results. Cheap: nothing trains except in
the slow end-to-end test."""

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
import tyro

from pipelines import PIPELINES
from pipelines.static.config import FAST_MAX_SIZE
from splat4d.cameras import Cameras
from splat4d.cli import Reconstruct
from splat4d.data.base import SceneData
from splat4d.data.colmap import split_every
from splat4d.data.config import DataConfig
from splat4d.data.dataset import working_downscale

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCEAUX_SIZE = (735, 542)
"""The Sceaux photos (708×532 JPEGs) as SfM's undistortion writes them."""


@pytest.fixture
def quality(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """bench/quality.py imported as `python bench/quality.py` would, its results going to tmp_path."""
    monkeypatch.syspath_prepend(str(BENCH))
    common = importlib.import_module("common")
    module = importlib.import_module("quality")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench/quality.py"])
    return module


def _sceaux_scene(names: list[str]) -> SceneData:
    n = len(names)
    Ks = torch.eye(3).repeat(n, 1, 1)
    Ks[:, 0, 0] = Ks[:, 1, 1] = 600.0
    Ks[:, 0, 2], Ks[:, 1, 2] = SCEAUX_SIZE[0] / 2, SCEAUX_SIZE[1] / 2
    cameras = Cameras(torch.eye(4).repeat(n, 1, 1), Ks, SCEAUX_SIZE[0], SCEAUX_SIZE[1])
    train, test = split_every(n, DataConfig().test_every)
    return SceneData(
        cameras, [Path(name) for name in names], [None] * n, train, test, metadata={"num_input_images": n}
    )


def test_the_default_split_holds_out_photos_0_and_8_of_the_eleven(shared_data: Path, quality) -> None:
    photos = sorted(p.name for p in (shared_data / "sceaux_castle" / "images").glob("*.jpg"))
    assert shared_data / "sceaux_castle" / "images" == quality.SCEAUX_IMAGES
    assert len(photos) == 11
    train, test = split_every(len(photos), DataConfig().test_every)
    assert test == [0, 8] and len(train) == 9
    assert [photos[i] for i in test] == ["100_7100.jpg", "100_7108.jpg"]


def test_the_bench_runs_the_users_command_at_the_presets_working_resolution(quality, tmp_path: Path) -> None:
    argv = quality.sceaux_fast_argv(Path("photos"), tmp_path / "out", torch.device("cpu"))
    assert argv == ["photos", "-o", str(tmp_path / "out"), "--preset", "fast", "--device", "cpu"]
    command = tyro.cli(Reconstruct, args=argv)
    assert command.preset == "fast" and command.steps is None and command.pipeline == "static"
    assert command.data.max_size is None  # not given: the preset's limit applies
    assert command.data.downscale == 1 and command.data.test_every == DataConfig().test_every
    assert PIPELINES["static"].presets["fast"].data.max_size == FAST_MAX_SIZE == 512
    assert working_downscale(_sceaux_scene(["a.jpg"]), 1, FAST_MAX_SIZE) == 2  # 735×542 → 367×271
    smoke = quality.sceaux_fast_argv(Path("photos"), tmp_path / "out", torch.device("cpu"), steps=5)
    assert smoke[-2:] == ["--steps", "5"]


def test_the_row_and_figures_come_from_the_commands_result(quality) -> None:
    names = [f"100_{7100 + i}.jpg" for i in range(11)]
    metrics = {
        "steps": 1200, "train_seconds": 250.04, "psnr": 21.23456, "ssim": 0.712345, "split": "test",
        "num_views": 2, "num_gaussians": 30000, "downscale": 2,
    }  # fmt: skip
    result = SimpleNamespace(metrics=metrics, scene=_sceaux_scene(names), pipeline=None)
    timings = {"input_seconds": 20.0, "eval_seconds": 3.0}
    argv = ["photos", "-o", "out", "--preset", "fast", "--device", "cpu"]

    row = quality.sceaux_fast_row(result, 280.0, timings, argv)

    assert row["scene"] == "sceaux_fast" and row["reconstruct"] == "splat4d reconstruct " + " ".join(argv)
    assert row["held_out"] == ["100_7100.jpg", "100_7108.jpg"] and row["held_out_indices"] == [0, 8]
    assert row["resolution"] == [[367, 271]] and row["full_resolution"] == [[735, 542]]
    assert (row["steps"], row["num_gaussians"], row["images"], row["input_images"]) == (1200, 30000, 11, 11)
    assert (row["wall_seconds"], row["sfm_seconds"], row["train_seconds"], row["eval_seconds"]) == (
        280.0, 20.0, 250.0, 3.0,
    )  # fmt: skip
    assert row["other_seconds"] == pytest.approx(7.0)
    assert quality.sceaux_fast_figures(row) == {
        "sceaux_fast_seconds": 280.0,
        "sceaux_fast_psnr": 21.235,
        "sceaux_fast_ssim": 0.7123,
    }


def test_figure_keys_belong_to_the_longest_scene_name_they_start_with(quality) -> None:
    assert quality.scene_of("sceaux_fast_psnr") == "sceaux_fast"
    assert quality.scene_of("sceaux_fast_seconds") == "sceaux_fast"
    assert quality.scene_of("sceaux_train_psnr") == "sceaux"
    assert quality.scene_of("sceaux_registered_images") == "sceaux"
    assert quality.scene_of("procedural_psnr") == "procedural"
    assert quality.scene_of("unknown_psnr") is None


OLD = {
    "figures": {
        "procedural_psnr": 28.0,
        "sceaux_registered_images": 11,
        "sceaux_train_psnr": 22.0,
        "sceaux_fast_seconds": 300.0,
        "sceaux_fast_psnr": 20.0,
    },
    "missing": {"lego_psnr": "not found", "sceaux_fast_ssim": "not measured"},
    "rows": [{"scene": "procedural"}, {"scene": "sceaux"}, {"scene": "sceaux_fast", "old": True}],
}


def test_running_sceaux_fast_keeps_the_sceaux_figures_and_replaces_its_own(quality) -> None:
    figures = {"sceaux_fast_seconds": 280.0, "sceaux_fast_psnr": 21.0, "sceaux_fast_ssim": 0.7}
    rows, missing = [{"scene": "sceaux_fast", "old": False}], {}

    quality.merge_other_scenes(json.loads(json.dumps(OLD)), ["sceaux_fast"], figures, rows, missing)

    assert figures == {
        "procedural_psnr": 28.0,
        "sceaux_registered_images": 11,
        "sceaux_train_psnr": 22.0,
        "sceaux_fast_seconds": 280.0,
        "sceaux_fast_psnr": 21.0,
        "sceaux_fast_ssim": 0.7,
    }
    assert list(figures)[-3:] == [
        "sceaux_fast_seconds",
        "sceaux_fast_psnr",
        "sceaux_fast_ssim",
    ]  # scene order
    assert missing == {"lego_psnr": "not found"}  # sceaux_fast_ssim is measured now
    assert rows == [{"scene": "procedural"}, {"scene": "sceaux"}, {"scene": "sceaux_fast", "old": False}]


def test_running_sceaux_keeps_the_sceaux_fast_figures(quality) -> None:
    figures = {"sceaux_registered_images": 10, "sceaux_train_psnr": 23.0}
    rows, missing = [{"scene": "sceaux", "new": True}], {}

    quality.merge_other_scenes(json.loads(json.dumps(OLD)), ["sceaux"], figures, rows, missing)

    assert figures == {
        "procedural_psnr": 28.0,
        "sceaux_registered_images": 10,
        "sceaux_train_psnr": 23.0,
        "sceaux_fast_seconds": 300.0,
        "sceaux_fast_psnr": 20.0,
    }
    assert missing == {"lego_psnr": "not found", "sceaux_fast_ssim": "not measured"}
    assert [r["scene"] for r in rows] == ["procedural", "sceaux", "sceaux_fast"]
    assert rows[1] == {"scene": "sceaux", "new": True} and rows[2]["old"] is True


@pytest.mark.slow  # SfM of the 11 photos (about 20 s on 2 cores) and a few training steps
def test_the_sceaux_fast_scene_runs_end_to_end(shared_data: Path, quality, tmp_path: Path) -> None:
    path = quality.main(["--device", "cpu", "--scenes", "sceaux_fast", "--sceaux-fast-steps", "4"])

    doc = json.loads(path.read_text())
    assert path == tmp_path / "quality-cpu.json"
    assert doc["figures"].keys() == {"sceaux_fast_seconds", "sceaux_fast_psnr", "sceaux_fast_ssim"}
    (row,) = doc["rows"]
    assert row["held_out"] == ["100_7100.jpg", "100_7108.jpg"] and row["steps"] == 4
    assert row["resolution"] == [[367, 271]] and row["downscale"] == 2
    assert row["sfm_seconds"] > 0 and row["eval_seconds"] > 0 and row["train_seconds"] > 0
