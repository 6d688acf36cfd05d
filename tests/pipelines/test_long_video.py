"""The long-video pipeline end to end: `reconstruct --pipeline long` trains streamed through a temporal hierarchy on
a small multi-view dynamic sample, resumes, reads back for viewing and video export, and refuses exports that need
the whole scene at once."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from pipelines import PIPELINES
from pipelines.long_video import PRESETS, StreamingConfig
from pipelines.long_video.pipeline import hierarchy_config
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.errors import UsageError
from splat4d.export.splats import PlyExport
from splat4d.export.video import VideoExport
from splat4d.hierarchy import read_manifest
from splat4d.reconstruct import SceneFolderError, load_trained, reconstruct
from viewer.scene import load_view_scene

SPEC = PIPELINES["long"]


def _cfg(photos: Path, steps: int):
    cfg = SPEC.with_steps(PRESETS["fast"], steps)
    return dataclasses.replace(
        cfg,
        data=DataConfig(path=photos),
        trainer=dataclasses.replace(cfg.trainer, progress=False),
        init=dataclasses.replace(cfg.init, random_points=2000),
        streaming=StreamingConfig(frames_per_leaf=2, steps_per_visit=15, points_per_path=1500),
    )


def _tiny_sample(folder: Path) -> Path:
    """Two cameras at two times, 32×24: for runs that only need to start."""
    sample = SampleConfig(
        dynamic=True, layout="multiview", n_cameras=2, n_frames=2, width=32, height=24, n_points=200
    )
    return write_sample_scene(sample, folder, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("long")
    photos = write_sample_scene(
        SampleConfig(dynamic=True, layout="multiview", n_cameras=3, n_frames=8, width=64, height=48,
                     n_points=1500),
        root / "photos",
        progress=False,
    )  # fmt: skip
    result = reconstruct(SPEC, "long", "fast", _cfg(photos, 180), root / "scene", torch.device("cpu"))
    return root / "scene", result.metrics


def test_long_video_trains_streamed_and_writes_a_hierarchy(trained) -> None:
    out, m = trained
    # 8 capture times, 2 per leaf: a depth-2 tree; 180 steps = 3 sweeps of 4 leaves × 15 steps
    assert m["hierarchy_depth"] == 2 and m["steps"] == 180
    assert m["psnr"] > 14.0, m  # a flat grey guess scores about 11 dB on these scenes (180 steps: 15.6 dB)
    manifest = read_manifest(out / "hierarchy")
    assert manifest.num_gaussians == m["num_gaussians"] and manifest.tree.depth == 2
    assert m["resident_gaussians_max"] < m["num_gaussians"] or len(manifest.records) == 1
    assert (out / "store" / "state.pt").is_file() and not (out / "point_cloud.ply").exists()
    assert json.loads((out / "metrics.json").read_text())["steps"] == 180


def test_rerun_resumes_and_the_folder_reads_back_streamed(trained, tmp_path) -> None:
    out, m = trained
    photos = out.parent / "photos" / "transforms.json"  # as write_sample_scene returned it: the same settings
    again = reconstruct(SPEC, "long", "fast", _cfg(photos, 180), out, torch.device("cpu"))
    assert again.metrics["steps"] == 180 and again.metrics["psnr"] == pytest.approx(m["psnr"])
    loaded = load_trained(out, PIPELINES, torch.device("cpu"))
    assert loaded.pipeline_name == "long" and loaded.step == 180
    cams = loaded.scene.cameras[:1]
    early = loaded.pipeline.render_view(cams, t=0.0).rgb
    late = loaded.pipeline.render_view(cams, t=1.0).rgb
    assert (early - late).abs().mean() > 1e-3  # the scene moves
    viewed = load_view_scene(out, PIPELINES, torch.device("cpu"))
    assert viewed.stream is not None and viewed.num_gaussians == m["num_gaussians"]
    assert viewed.frame_times  # the time slider steps through the capture times
    video = VideoExport(scene=out, out=tmp_path / "sweep.mp4", time_sweep=True, progress=False)
    assert video.main(PIPELINES) == [tmp_path / "sweep.mp4"] and (tmp_path / "sweep.mp4").stat().st_size > 0


def test_exports_needing_the_whole_scene_are_refused_in_one_line(trained, tmp_path) -> None:
    out, _ = trained
    with pytest.raises(
        UsageError, match=r"temporal hierarchy streamed from .*export ply needs the whole scene"
    ):
        PlyExport(scene=out, out=tmp_path / "x.ply").main(PIPELINES)


def test_schedule_picks_the_depth_from_the_capture_times_and_sweeps_from_the_steps(trained) -> None:
    out, _ = trained
    loaded = load_trained(out, PIPELINES, torch.device("cpu"))
    cfg = dataclasses.replace(loaded.cfg, streaming=StreamingConfig(frames_per_leaf=1, steps_per_visit=10))
    h = hierarchy_config(SPEC.with_steps(cfg, 400), loaded.scene)
    assert h.depth == 3 and h.sweeps == 5  # 8 times, one per leaf; 400 steps / (8 leaves × 10)
    assert StreamingConfig(depth=4).depth_for(1000) == 4


def test_live_viewer_is_refused_for_streamed_training(tmp_path) -> None:
    photos = _tiny_sample(tmp_path / "photos")
    with pytest.raises(ValueError, match="live viewer"):
        reconstruct(SPEC, "long", "fast", _cfg(photos, 10), tmp_path / "s", torch.device("cpu"),
                    on_built=lambda p, s: None)  # fmt: skip
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_a_stored_run_resumes_only_with_its_settings_and_overwrite_starts_over(tmp_path) -> None:
    photos = _tiny_sample(tmp_path / "photos")
    out, cpu = tmp_path / "scene", torch.device("cpu")
    reconstruct(SPEC, "long", "fast", _cfg(photos, 15), out, cpu, console=Console(quiet=True))
    with pytest.raises(SceneFolderError, match="different settings"):
        reconstruct(SPEC, "long", "fast", _cfg(photos, 30), out, cpu, console=Console(quiet=True))
    console = Console(record=True, width=200)
    again = reconstruct(SPEC, "long", "fast", _cfg(photos, 30), out, cpu, overwrite=True, console=console)
    assert again.metrics["steps"] == 30 and "resuming" not in console.export_text()
