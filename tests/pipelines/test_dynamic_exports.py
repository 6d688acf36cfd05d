"""Exports of a scene made by the dynamic pipeline, through the CLI: a time-sweep video whose frames move, and the
4D PLY plus per-frame sliced PLYs."""

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pipelines import PIPELINES
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.gaussians import Gaussians, Gaussians4D
from splat4d.io.ply import read_ply, read_ply_4d
from tests.pipelines.helpers import train_dynamic


@pytest.fixture(scope="module")
def dynamic_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dynamic")
    photos = write_sample_scene(
        SampleConfig(dynamic=True, layout="monocular", n_views=12, width=48, height=36, n_points=800),
        root / "photos",
        progress=False,
    )
    train_dynamic(photos, root / "scene", steps=60, random_points=1500)
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


def test_hierarchy_export_streams_in_the_viewer_like_the_flat_scene(
    dynamic_scene: Path, tmp_path: Path
) -> None:
    from splat4d.cameras import Cameras
    from splat4d.hierarchy import read_manifest
    from splat4d.reconstruct import load_trained
    from splat4d.render import render
    from viewer import load_view_scene

    out = tmp_path / "hierarchy"
    run = _cli("export", "hierarchy", str(dynamic_scene), "--out", str(out), "--depth", "2")
    assert run.returncode == 0, run.stderr
    manifest = read_manifest(out)
    trained = load_trained(dynamic_scene, PIPELINES, torch.device("cpu"))
    flat = trained.pipeline.gaussians
    assert manifest.tree.depth == 2 and manifest.num_gaussians == len(flat)
    viewed = load_view_scene(out, PIPELINES, torch.device("cpu"))
    assert viewed.stream is not None and viewed.num_gaussians == len(flat) and viewed.is_4d
    camera: Cameras = trained.scene.cameras[:1]
    for t in (0.1, 0.5, 0.9):
        with torch.no_grad():
            expected = render(flat, camera, viewed.settings, t=t).rgb
            streamed = render(viewed.at(t), camera, viewed.settings, t=t).rgb
        torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=0)
    again = _cli("export", "hierarchy", str(dynamic_scene), "--out", str(out))
    assert again.returncode != 0 and "exists; pass --overwrite" in again.stderr + again.stdout
    static = _cli("export", "hierarchy", str(tmp_path), "--out", str(tmp_path / "h2"))
    assert static.returncode != 0
