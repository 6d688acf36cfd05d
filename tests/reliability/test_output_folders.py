"""The output-folder contract (`splat4d.scene_folder`): splat4d writes only into a folder that is absent, empty or
one of its scenes; `--overwrite` replaces only a splat4d scene and removes only what splat4d wrote; a refused or
failed command leaves every user file as it was."""

import os
import shutil
from pathlib import Path

import pytest

from splat4d.scene_folder import MARKER
from tests.reliability.conftest import assert_one_line_error, run_cli, tree_digest

FAST = ("--steps", "2", "--preset", "fast", "--no-progress")


def _user_folder(root: Path) -> Path:
    """A folder of the user's own files, named like a scene's but not made by splat4d."""
    folder = root / "mine"
    for rel, text in {
        "config.yaml": "my: own settings\n",
        "point_cloud.ply": "not a splat file, my lidar scan\n",
        "metrics.json": '{"mine": true}\n',
        "eval/holiday.png": "a photo\n",
        "eval/report.txt": "my notes\n",
        "checkpoints/step-000010.pt": "my model\n",
    }.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def test_a_folder_of_user_files_with_a_config_yaml_is_never_trained_into(capsys, photos, tmp_path):
    mine = _user_folder(tmp_path)
    before = tree_digest(mine)
    result = run_cli(capsys, "reconstruct", photos, "-o", mine, *FAST)
    line = assert_one_line_error(result, mine)
    assert "not a splat4d scene" in line
    assert tree_digest(mine) == before


def test_overwrite_never_replaces_a_folder_that_is_not_a_splat4d_scene(capsys, photos, tmp_path):
    mine = _user_folder(tmp_path)
    before = tree_digest(mine)
    result = run_cli(capsys, "reconstruct", photos, "-o", mine, "--overwrite", *FAST)
    assert "--overwrite" in assert_one_line_error(result, mine)
    assert tree_digest(mine) == before


def test_overwrite_removes_only_what_splat4d_wrote_in_its_scene(capsys, photos, tmp_path):
    out = tmp_path / "scene"
    assert run_cli(capsys, "reconstruct", photos, "-o", out, *FAST).status == 0
    assert (out / MARKER).is_file()
    (out / "notes.md").write_text("my notes on this scene\n")
    (out / "eval" / "notes.txt").write_text("kept\n")
    (out / "checkpoints" / "README").write_text("kept\n")
    (out / "exports").mkdir()
    (out / "exports" / "mine.ply").write_text("kept\n")
    old_checkpoints = sorted(p.name for p in (out / "checkpoints").glob("step-*.pt"))

    result = run_cli(capsys, "reconstruct", photos, "-o", out, "--overwrite", "--steps", "3", "--preset", "fast",
                     "--no-progress")  # fmt: skip
    assert result.status == 0, result.stderr
    for rel in ("notes.md", "eval/notes.txt", "checkpoints/README", "exports/mine.ply"):
        assert (out / rel).read_text().strip() in ("my notes on this scene", "kept"), rel
    new_checkpoints = sorted(p.name for p in (out / "checkpoints").glob("step-*.pt"))
    assert new_checkpoints[-1] == "step-000003.pt" and new_checkpoints != old_checkpoints


def test_an_output_path_that_is_a_file_is_refused(capsys, photos, tmp_path):
    target = tmp_path / "scene.txt"
    target.write_text("mine\n")
    result = run_cli(capsys, "reconstruct", photos, "-o", target, *FAST)
    assert_one_line_error(result, target)
    assert target.read_text() == "mine\n"


def test_an_output_folder_under_a_file_is_one_line(capsys, photos, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("mine\n")
    result = run_cli(capsys, "reconstruct", photos, "-o", blocker / "scene", *FAST)
    assert_one_line_error(result, blocker)
    assert blocker.read_text() == "mine\n"


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root ignores folder permissions; the next test covers the message"
)
def test_an_unwritable_output_folder_is_one_line(capsys, photos, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        result = run_cli(capsys, "reconstruct", photos, "-o", parent / "scene", *FAST)
    finally:
        parent.chmod(0o755)
    assert "permission" in assert_one_line_error(result, parent / "scene").lower()


def test_a_permission_error_while_writing_names_the_file(capsys, photos, tmp_path, monkeypatch):
    """What a user without write access sees (simulated: these tests may run as root, which ignores modes)."""
    import splat4d.io.atomic as atomic

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", lambda dir, **kw: refuse(dir))
    result = run_cli(capsys, "reconstruct", photos, "-o", tmp_path / "scene", *FAST)
    line = assert_one_line_error(result, tmp_path / "scene")
    assert "permission denied" in line and "choose another output" in line


def test_a_run_that_fails_on_its_input_leaves_no_folder_behind(capsys, photos, tmp_path):
    (photos / "transforms.json").write_text("{ not json")
    out = tmp_path / "scene"
    result = run_cli(capsys, "reconstruct", photos, "-o", out, *FAST)
    assert_one_line_error(result, photos / "transforms.json")
    assert not out.exists()


def test_a_failed_run_in_an_existing_scene_keeps_it(capsys, photos, tmp_path):
    out = tmp_path / "scene"
    assert run_cli(capsys, "reconstruct", photos, "-o", out, *FAST).status == 0
    before = tree_digest(out)
    (photos / "transforms.json").write_text("{ not json")
    result = run_cli(capsys, "reconstruct", photos, "-o", out, "--overwrite", *FAST)
    assert_one_line_error(result, photos / "transforms.json")
    assert (out / MARKER).is_file() and (out / "config.yaml").is_file()
    assert set(tree_digest(out)) <= set(before)


def test_a_scene_made_before_the_marker_is_still_a_scene(capsys, reconstructed_sample, tmp_path):
    old = Path(shutil.copytree(reconstructed_sample, tmp_path / "old"))
    (old / MARKER).unlink()
    result = run_cli(capsys, "eval", old)
    assert result.status == 0, result.stderr


@pytest.mark.parametrize("command", ["eval", "export ply", "export video"])
def test_reading_commands_refuse_a_folder_that_is_not_a_scene(capsys, tmp_path, command):
    mine = _user_folder(tmp_path)
    before = tree_digest(mine)
    result = run_cli(capsys, *command.split(), mine)
    assert_one_line_error(result, mine / "config.yaml")
    assert tree_digest(mine) == before


def test_sample_refuses_a_folder_of_user_files_even_with_overwrite(capsys, tmp_path):
    mine = _user_folder(tmp_path)
    before = tree_digest(mine)
    for extra in ((), ("--overwrite",)):
        result = run_cli(capsys, "sample", mine, "--views", "2", *extra)
        assert_one_line_error(result, mine)
    assert tree_digest(mine) == before


def test_sample_into_its_own_scene_needs_overwrite(capsys, tmp_path):
    out = tmp_path / "photos"
    args = ("sample", out, "--views", "2", "--cfg.width", "32", "--cfg.height", "24")
    assert run_cli(capsys, *args).status == 0
    before = tree_digest(out)
    assert "--overwrite" in assert_one_line_error(run_cli(capsys, *args), out)
    assert tree_digest(out) == before
    assert run_cli(capsys, *args, "--overwrite").status == 0


def test_a_full_disk_names_the_file_being_written_and_leaves_no_folder(capsys, photos, tmp_path, monkeypatch):
    import splat4d.io.atomic as atomic

    class FullDisk:
        def __init__(self, fd, mode):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", FullDisk)
    out = tmp_path / "scene"
    result = run_cli(capsys, "reconstruct", photos, "-o", out, *FAST)
    line = assert_one_line_error(result, out)
    assert "no space left on device" in line and "free some disk space" in line
    assert not out.exists()


def test_overwrite_with_an_input_that_is_refused_leaves_the_scene_as_it_was(capsys, photos, tmp_path):
    out = tmp_path / "scene"
    assert run_cli(capsys, "reconstruct", photos, "-o", out, *FAST).status == 0
    before = tree_digest(out)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "transforms.json").write_text('{"frames": 3}')
    result = run_cli(capsys, "reconstruct", bad, "-o", out, "--overwrite", *FAST)
    assert_one_line_error(result, bad / "transforms.json")
    assert tree_digest(out) == before


def test_a_failed_run_empties_a_folder_the_user_made_but_keeps_the_folder(capsys, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "transforms.json").write_text('{"frames": 3}')
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o1777)
    link = tmp_path / "link"
    link.symlink_to(mine)
    for out in (mine, link):
        assert_one_line_error(run_cli(capsys, "reconstruct", bad, "-o", out, *FAST), bad / "transforms.json")
        assert mine.is_dir() and not any(mine.iterdir()) and (mine.stat().st_mode & 0o7777) == 0o1777
    assert link.is_symlink()


def test_overwrite_keeps_pngs_in_eval_that_splat4d_did_not_render(capsys, photos, tmp_path):
    out = tmp_path / "scene"
    assert run_cli(capsys, "reconstruct", photos, "-o", out, *FAST).status == 0
    renders = sorted(p.name for p in (out / "eval").glob("*.png"))
    (out / "eval" / "my_screenshot.png").write_bytes(b"mine")
    assert run_cli(capsys, "reconstruct", photos, "-o", out, "--overwrite", *FAST).status == 0
    assert (out / "eval" / "my_screenshot.png").read_bytes() == b"mine"
    assert sorted(p.name for p in (out / "eval").glob("*.png")) == sorted([*renders, "my_screenshot.png"])


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_half_made_scene(capsys, photos, tmp_path):
    """An image that turns out unreadable only when training loads it: the folder the run made goes, and a folder
    the user made is left empty, not holding a config.yaml and a cache of a run that cannot resume."""
    train_image = sorted((photos / "images").glob("*.png"))[1]
    train_image.write_bytes(train_image.read_bytes()[:300])
    mine = tmp_path / "mine"
    mine.mkdir()
    for out in (tmp_path / "scene", mine):
        line = assert_one_line_error(run_cli(capsys, "reconstruct", photos, "-o", out, *FAST), train_image)
        assert "truncated" in line
    assert not (tmp_path / "scene").exists()
    assert mine.is_dir() and not any(mine.iterdir())
