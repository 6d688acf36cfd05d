"""Exports of a scene made by the dynamic pipeline, through the CLI: a time-sweep video whose frames move, and the
4D PLY plus per-frame sliced PLYs."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pipelines import PIPELINES
from pipelines.dynamic.config import PRESETS, with_steps
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.io.ply import read_ply, read_ply_4d
from splat4d.reconstruct import reconstruct


@pytest.fixture(scope="module")
def dynamic_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dynamic")
    photos = write_sample_scene(
        SampleConfig(dynamic=True, layout="monocular", n_views=12, width=48, height=36, n_points=800),
        root / "photos",
        progress=False,
    )
    cfg = with_steps(PRESETS["fast"], 60)
    cfg = dataclasses.replace(
        cfg,
        data=DataConfig(path=photos),
        trainer=dataclasses.replace(cfg.trainer, progress=False),
        init=dataclasses.replace(cfg.init, random_points=1500),
    )
    reconstruct(PIPELINES["dynamic"], "dynamic", "fast", cfg, root / "scene", torch.device("cpu"))
    return root / "scene"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "splat4d", *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_time_sweep_video_from_a_fixed_camera_moves(dynamic_scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep.mp4"
    run = _cli(
        "export", "video", str(dynamic_scene), "--out", str(out), "--time-sweep", "--fixed-camera", "0",
        "--frames", "6", "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    frames = iio.imread(out, plugin="pyav").astype(np.float32)
    assert frames.shape == (6, 36, 48, 3)
    assert frames.std() > 5  # the scene, not a blank frame
    # a fixed camera, so every change between the first and the last frame is the scene moving in time
    assert np.abs(frames[-1] - frames[0]).mean() > 1.0


def test_4d_ply_and_sliced_frames_export(dynamic_scene: Path, tmp_path: Path) -> None:
    four_d = tmp_path / "scene4d.ply"
    run = _cli("export", "ply", str(dynamic_scene), "--out", str(four_d))
    assert run.returncode == 0, run.stderr
    g = read_ply_4d(four_d)
    assert isinstance(g, Gaussians4D) and len(g) > 0
    frames_dir = tmp_path / "frames"
    run = _cli("export", "ply", str(dynamic_scene), "--out", str(frames_dir / "scene4d.ply"), "--times", "3")
    assert run.returncode == 0, run.stderr
    slices = sorted(frames_dir.glob("frame_*.ply"))
    assert len(slices) == 3
    sliced = [read_ply(p) for p in slices]
    assert all(isinstance(s, Gaussians) for s in sliced)
    assert not torch.equal(sliced[0].means, sliced[-1].means)  # the slices differ in time
