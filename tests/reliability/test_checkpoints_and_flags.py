"""Damaged checkpoints fall back to the previous good one (or fail in one line), and flags out of range are refused
in one line naming the flag, before anything is written."""

import shutil
from pathlib import Path

import pytest

from splat4d.io.checkpoint import list_checkpoints
from tests.reliability.conftest import assert_one_line_error, run_cli, tree_digest


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(
        {"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 50}[how]
    )


@pytest.fixture
def scene(reconstructed_sample: Path, tmp_path: Path) -> Path:
    """A private copy of a trained scene folder (two checkpoints)."""
    return Path(shutil.copytree(reconstructed_sample, tmp_path / "scene"))


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
def test_eval_falls_back_to_the_previous_checkpoint_when_the_newest_is_damaged(capsys, scene, how):
    newest, previous = list_checkpoints(scene / "checkpoints")[::-1][:2]
    _damage(newest, how)
    result = run_cli(capsys, "eval", scene)
    assert result.status == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and newest.name in warnings[0] and previous.name in warnings[0]
    assert "Traceback" not in result.stderr


def test_every_reading_command_fails_in_one_line_when_no_checkpoint_is_readable(capsys, scene, tmp_path):
    for path in list_checkpoints(scene / "checkpoints"):
        _damage(path, "truncated")
    before = tree_digest(scene)
    for command in (("eval",), ("export", "ply"), ("export", "video", "--frames", "2")):
        result = run_cli(capsys, *command, scene)
        assert "--overwrite" in assert_one_line_error(result, scene / "checkpoints")
    assert tree_digest(scene) == before


def test_resuming_skips_a_damaged_checkpoint_and_sets_it_aside(capsys, photos, tmp_path):
    out = tmp_path / "scene"
    args = ("reconstruct", photos, "-o", out, "--preset", "fast", "--no-progress", "--set",
            "trainer.checkpoint_every=2")  # fmt: skip
    assert run_cli(capsys, *args, "--steps", "6").status == 0
    newest = list_checkpoints(out / "checkpoints")[-1]
    assert newest.name == "step-000006.pt"
    _damage(newest, "truncated")
    result = run_cli(capsys, *args, "--steps", "6")
    assert result.status == 0, result.stderr
    assert "step-000004.pt" in result.stderr and "set aside" in result.stderr
    assert (out / "checkpoints" / "step-000006.pt.corrupt").is_file()  # kept for the user, no longer "newest"
    assert list_checkpoints(out / "checkpoints")[-1].name == "step-000006.pt"


def test_a_checkpoint_with_non_finite_parameters_is_not_used(capsys, scene):
    import torch

    newest = list_checkpoints(scene / "checkpoints")[-1]
    payload = torch.load(newest, weights_only=False)
    payload["params"]["means"][0, 0] = float("nan")
    torch.save(payload, newest)
    result = run_cli(capsys, "eval", scene)
    assert result.status == 0 and "non-finite" in result.stderr and "means" in result.stderr


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--steps", "0"), "--steps"),
        (("--steps", "-5"), "--steps"),
        (("--data.downscale", "0"), "--data.downscale"),
        (("--data.test-every", "-1"), "--data.test-every"),
        (("--set", "trainer.steps=0"), "--steps"),
        (("--set", "no_such_setting=1"), "--set no_such_setting"),
        (("--set", "trainer.steps=many"), "--set trainer.steps"),
        (("--views", "3"), "--views"),
        (("--strategy", "mcmc", "--pipeline", "dynamic"), "--strategy"),
        (("--preset", "mesh", "--pipeline", "dynamic"), "--preset"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_reconstruct_refuses_bad_flags_before_writing(capsys, photos, tmp_path, flags, named):
    out = tmp_path / "scene"
    result = run_cli(capsys, "reconstruct", photos, "-o", out, "--no-progress", *flags)
    assert_one_line_error(result, named)
    assert not out.exists()


def test_unparseable_flags_exit_with_the_same_status(capsys, photos):
    """tyro reports flags it cannot parse in its own box, with suggestions; the exit status is the policy's."""
    assert run_cli(capsys, "reconstruct", photos, "--stepz", "3").status == 2
    assert run_cli(capsys, "reconstruct", photos, "--steps", "abc").status == 2


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--frames", "0"), "--frames"),
        (("--width", "-64"), "--width"),
        (("--height", "0"), "--height"),
        (("--fps", "0"), "--fps"),
        (("--path", "camera-path"), "--camera-path-json"),
        (("--no-mp4",), "--no-mp4"),
        (("--time-sweep", "--fixed-camera", "99"), "--fixed-camera"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_export_video_refuses_bad_flags(capsys, reconstructed_sample, flags, named):
    before = tree_digest(reconstructed_sample)
    result = run_cli(capsys, "export", "video", reconstructed_sample, "--no-progress", *flags)
    assert_one_line_error(result, named)
    assert tree_digest(reconstructed_sample) == before


@pytest.mark.parametrize("command", [("ply",), ("video", "--frames", "2", "--no-progress"), ("mesh",)])
def test_export_out_naming_a_folder_is_refused_even_with_overwrite(
    capsys, reconstructed_sample, tmp_path, command
):
    folder = tmp_path / ("mine.ply" if command[0] != "video" else "mine.mp4")
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    result = run_cli(capsys, "export", *command, reconstructed_sample, "--out", folder, "--overwrite")
    assert "is a folder" in assert_one_line_error(result, folder)
    assert (folder / "keep.txt").read_text() == "mine\n"


def test_export_refuses_to_replace_a_file_without_overwrite(capsys, reconstructed_sample, tmp_path):
    target = tmp_path / "mine.ply"
    target.write_text("mine\n")
    result = run_cli(capsys, "export", "ply", reconstructed_sample, "--out", target)
    assert "--overwrite" in assert_one_line_error(result, target)
    assert target.read_text() == "mine\n"


def test_png_frames_never_replace_a_folder_of_user_files(capsys, reconstructed_sample, tmp_path):
    video = tmp_path / "walk.mp4"
    frames = tmp_path / "walk_frames"
    frames.mkdir()
    (frames / "holiday.jpg").write_text("mine\n")
    result = run_cli(capsys, "export", "video", reconstructed_sample, "--out", video, "--pngs", "--overwrite",
                     "--frames", "2", "--no-progress")  # fmt: skip
    assert_one_line_error(result, frames)
    assert (frames / "holiday.jpg").read_text() == "mine\n" and not video.exists()


def test_a_missing_cuda_device_is_one_line(capsys, photos, tmp_path):
    import torch

    if torch.version.cuda and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli(capsys, "reconstruct", photos, "-o", tmp_path / "scene", "--device", "cuda")
    assert_one_line_error(result, "--device")
    assert not (tmp_path / "scene").exists()


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
def test_a_damaged_streamed_training_state_is_one_line_naming_it(tmp_path, how):
    import torch

    from splat4d.errors import UserError
    from splat4d.hierarchy.segment_store import load_state_file

    path = tmp_path / "state.pt"
    torch.save({"step": 3, "means": torch.zeros(4, 3)}, path)
    assert load_state_file(path)["step"] == 3
    _damage(path, how)
    with pytest.raises(UserError, match=r"state\.pt: not a readable training state .*--overwrite"):
        load_state_file(path)
    with pytest.raises(UserError, match="missing"):
        load_state_file(tmp_path / "absent.pt")


def test_png_frames_never_replace_frames_splat4d_did_not_write(capsys, reconstructed_sample, tmp_path):
    """ffmpeg names frames frame_%05d.png too: only a folder holding splat4d's marker is ever replaced."""
    frames = tmp_path / "clip_frames"
    frames.mkdir()
    (frames / "frame_00000.png").write_bytes(b"my frame")
    args = ("export", "video", reconstructed_sample, "--out", tmp_path / "clip.mp4", "--no-mp4", "--pngs",
            "--overwrite", "--frames", "2", "--no-progress")  # fmt: skip
    assert_one_line_error(run_cli(capsys, *args), frames)
    assert (frames / "frame_00000.png").read_bytes() == b"my frame"
    (frames / "frame_00000.png").unlink()
    frames.rmdir()
    assert run_cli(capsys, *args).status == 0  # written by splat4d, with its marker:
    assert run_cli(capsys, *args).status == 0  # so --overwrite replaces it
    assert sorted(p.name for p in frames.glob("*.png")) == ["frame_00000.png", "frame_00001.png"]


def test_a_write_error_names_the_output_not_a_temporary_file(capsys, reconstructed_sample, tmp_path):
    scene = Path(shutil.copytree(reconstructed_sample, tmp_path / "scene"))
    (scene / "metrics.json").unlink()
    (scene / "metrics.json").mkdir()
    line = assert_one_line_error(run_cli(capsys, "eval", scene), scene / "metrics.json")
    assert ".tmp" not in line
