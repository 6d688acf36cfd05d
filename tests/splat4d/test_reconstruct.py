"""`splat4d reconstruct` and `splat4d eval` end to end: outputs, resume after a kill, and bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml

from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.io.checkpoint import latest_checkpoint
from splat4d.io.ply import read_ply
from splat4d.reconstruct import SceneFolderError, prepare_output

FAST = ("--preset", "fast", "--device", "cpu", "--no-progress")


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "splat4d", *args]


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(_command(*args), capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_scene(
        SampleConfig(n_views=10, width=80, height=60), tmp_path_factory.mktemp("s") / "s"
    )


@pytest.fixture(scope="module")
def reconstructed(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("r") / "scene"
    done = _run("reconstruct", str(sample), "-o", str(out), "--steps", "40", *FAST)
    assert done.returncode == 0, done.stderr
    return out


def test_reconstruct_writes_the_scene_folder(reconstructed: Path) -> None:
    for name in ("config.yaml", "cameras.json", "point_cloud.ply", "metrics.json", "log.jsonl"):
        assert (reconstructed / name).is_file(), name
    assert latest_checkpoint(reconstructed / "checkpoints").name == "step-000040.pt"
    metrics = json.loads((reconstructed / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_views"] == 2 and metrics["steps"] == 40
    assert metrics["psnr"] > 10 and 0 < metrics["ssim"] <= 1
    assert metrics["lpips"] is None and "never downloads" in metrics["lpips_note"]
    assert len(list((reconstructed / "eval").glob("*.png"))) == 2
    assert len(read_ply(reconstructed / "point_cloud.ply")) == metrics["num_gaussians"]
    cameras = json.loads((reconstructed / "cameras.json").read_text())["cameras"]
    assert len(cameras) == 10 and sum(c["split"] == "test" for c in cameras) == 2
    config = yaml.safe_load((reconstructed / "config.yaml").read_text())
    assert config["pipeline"] == "static" and config["preset"] == "fast"
    assert config["config"]["trainer"]["steps"] == 40


def test_eval_reproduces_the_metrics(reconstructed: Path) -> None:
    before = json.loads((reconstructed / "metrics.json").read_text())
    done = _run("eval", str(reconstructed), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    after = json.loads((reconstructed / "metrics.json").read_text())
    assert after["psnr"] == pytest.approx(before["psnr"], abs=1e-4)


def test_killed_run_resumes_from_its_last_checkpoint(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "scene"
    args = _command("reconstruct", str(sample), "-o", str(out), "--steps", "400", *FAST)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while latest_checkpoint(out / "checkpoints") is None and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # no chance to save anything: the periodic checkpoint must do
    finally:
        proc.wait(timeout=60)
    saved = latest_checkpoint(out / "checkpoints")
    assert saved is not None
    step = int(saved.stem.split("-")[1])
    resumed = _run("reconstruct", str(sample), "-o", str(out), "--steps", "400", *FAST)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {step}" in resumed.stdout
    assert json.loads((out / "metrics.json").read_text())["steps"] == 400


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "scene"
    args = _command("reconstruct", str(sample), "-o", str(out), "--steps", "2000", *FAST)
    # SIG_DFL in the child: a test run started in the background inherits an ignored SIGINT, which Python keeps.
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 300
    while not (out / "log.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    assert latest_checkpoint(out / "checkpoints") is not None


def test_other_settings_on_an_existing_run_are_refused(reconstructed: Path, sample: Path) -> None:
    done = _run("reconstruct", str(sample), "-o", str(reconstructed), "--strategy", "mcmc", *FAST)
    assert done.returncode == 2
    assert "different settings" in done.stderr and "strategy" in done.stderr


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "not a dataset"),
        (lambda p: (p.mkdir(), (p / "transforms.json").write_text("{not json")), "transforms.json"),
        (
            lambda p: (p.mkdir(), (p / "a.jpg").write_bytes(b"garbage"), (p / "b.jpg").write_bytes(b"x")),
            "a.jpg",
        ),
        (lambda p: None, "does not exist"),
    ],
    ids=["empty-folder", "corrupt-transforms", "unreadable-images", "missing"],
)
def test_bad_input_stops_with_one_line_naming_the_file(tmp_path: Path, make, expected: str) -> None:
    bad = tmp_path / "input"
    make(bad)
    done = _run("reconstruct", str(bad), "-o", str(tmp_path / "out"), *FAST)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_a_folder_that_is_not_a_scene_is_never_written_into(sample: Path, tmp_path: Path) -> None:
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not lose")
    done = _run("reconstruct", str(sample), "-o", str(precious), *FAST)
    assert done.returncode == 2 and "not a splat4d scene" in done.stderr
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]


def test_raw_photos_become_an_evaluated_scene(shared_data: Path, tmp_path: Path) -> None:
    """The real photo set: 11 JPEGs → pycolmap SfM → training (short schedule) → metrics, with one command."""
    photos = shared_data / "sceaux_castle" / "images"
    out = tmp_path / "castle"
    args = ("--steps", "150", "--data.downscale", "4", "--data.test-every", "4")
    done = _run("reconstruct", str(photos), "-o", str(out), *args, *FAST)
    assert done.returncode == 0, done.stderr
    cameras = json.loads((out / "cameras.json").read_text())["cameras"]
    assert len(cameras) >= 9  # pycolmap registers 11/11 here
    # Undistortion (SIMPLE_RADIAL → pinhole) resizes the 708×532 photos a little; all stay one size.
    sizes = {(c["width"], c["height"]) for c in cameras}
    assert len(sizes) == 1 and abs(cameras[0]["width"] - 708) < 60 and abs(cameras[0]["height"] - 532) < 45
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_views"] == 3
    # Held-out views are far closer to the photos than an empty (black) render is (~3-5 dB here).
    photos_eval = [
        iio.imread(p)[:, : iio.imread(p).shape[1] // 3] / 255.0 for p in sorted((out / "eval").glob("*.png"))
    ]
    black_psnr = np.mean([-10 * np.log10((photo**2).mean()) for photo in photos_eval])
    assert metrics["psnr"] > black_psnr + 5, (metrics["psnr"], black_psnr)
    assert (out / "cache" / "sfm").is_dir() and (out / "point_cloud.ply").is_file()


def test_a_pipelines_state_folders_resume_only_under_the_same_settings_but_for_the_steps(
    tmp_path: Path,
) -> None:
    def record(steps: int, lr: float) -> dict:
        return {
            "pipeline": "long",
            "preset": "fast",
            "config": {"trainer": {"steps": steps}, "optim": {"lr": lr}},
        }

    out, folders = tmp_path / "scene", ("store",)
    assert prepare_output(out, record(10, 0.1), False, folders) is False  # nothing to resume yet
    (out / "store").mkdir()
    (out / "store" / "state.pt").write_bytes(b"x")
    assert prepare_output(out, record(20, 0.1), False, folders) is True  # more steps: resumed
    with pytest.raises(SceneFolderError, match=r"different settings \(config\.optim\.lr\)"):
        prepare_output(out, record(20, 0.2), False, folders)
    assert prepare_output(out, record(20, 0.2), True, folders) is False and not (out / "store").exists()
