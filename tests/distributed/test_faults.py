"""A rank that dies or hangs never hangs the others: they stop within the timeout with one line each, rank 0 saves
the last whole step, and the run resumes from it to the uninterrupted result (CPU, gloo, 2 processes)."""

import os
import shutil
import signal
from pathlib import Path

import pytest

from splat4d.errors import EXIT_USER
from splat4d.io.checkpoint import latest_checkpoint
from tests.distributed.helpers import (
    STEPS,
    assert_same_params,
    case_command,
    final_params,
    finish,
    logged_steps,
    rank_pid,
    splat4d_nproc,
    start_ranks,
    wait_until,
)
from tests.reliability.conftest import assert_one_line_error, run_cli


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def killed(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, float]:
    """The `static` case on `--nproc 2` (torchrun's launcher), rank 1 killed with SIGKILL after 3 steps: the scene
    folder, the launcher's exit status, its stderr and the seconds it took to stop."""
    out = tmp_path_factory.mktemp("killed") / "scene"
    launcher = splat4d_nproc(
        [*case_command("static", scenes, out), "trainer.dist_timeout=30", "--nproc", "2"], out.parent
    )
    wait_until(lambda: logged_steps(out) >= 3, [launcher], 120, "three training steps")
    victim = rank_pid(launcher.pid, rank=1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    status, _, stderr, seconds = finish(launcher, timeout=60)
    return out, status, stderr, seconds


def test_a_killed_rank_stops_the_run_with_one_line_per_rank(killed: tuple) -> None:
    out, status, stderr, seconds = killed
    assert status == 128 + signal.SIGKILL, stderr
    assert seconds < 30, f"took {seconds:.0f} s to stop"
    assert "Traceback" not in stderr, stderr
    lines = _lines(stderr)
    assert "error: --nproc 2: rank 1 was killed by SIGKILL" in stderr, stderr
    # Rank 0 stopped on its own (the lost connection) or on torchrun's SIGTERM, whichever came first: one line
    # either way, naming the checkpoint it saved.
    from_rank0 = [line for line in lines if "rank 0" in line]
    assert len(lines) == 2 and len(from_rank0) == 1 and "saved to" in from_rank0[0], stderr
    checkpoint = latest_checkpoint(out / "checkpoints")
    assert checkpoint is not None and int(checkpoint.stem.split("-")[1]) < STEPS


def test_the_run_resumes_from_rank_zeros_checkpoint_to_the_uninterrupted_result(
    killed: tuple, scenes: Path, static_reference: dict, tmp_path: Path, capsys, one_thread
) -> None:
    # On one process with 2 views per step: the same views per step as 2 ranks × 1, hence the same run.
    out = tmp_path / "scene"
    shutil.copytree(killed[0], out)
    result = run_cli(capsys, *case_command("static", scenes, out), "--batch-size", "2")
    assert result.status == 0, result.stderr
    assert "resuming from step" in result.stdout
    assert_same_params(final_params(out), static_reference)


def test_resuming_with_other_views_per_step_is_refused_with_one_line(
    killed: tuple, scenes: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "scene"
    shutil.copytree(killed[0], out)
    before = latest_checkpoint(out / "checkpoints")
    result = run_cli(capsys, *case_command("static", scenes, out))
    line = assert_one_line_error(result, "--batch-size", "2 views per step")
    assert "--nproc 2 --batch-size 1" in line and "--overwrite" in line, line
    assert latest_checkpoint(out / "checkpoints") == before


def test_a_rank_that_stops_answering_times_out_with_one_line(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "scene"
    run = ["--preset", "fast", "--steps", "400", "--device", "cpu", "--no-progress"]
    args = ["-m", "splat4d", "reconstruct", str(scenes / "photos"), "-o", str(out), *run]
    ranks = start_ranks([*args, "--set", "trainer.log_every=1", "trainer.dist_timeout=3"], 2, tmp_path)
    try:
        wait_until(lambda: logged_steps(out) >= 3, ranks, 120, "three training steps")
        ranks[1].send_signal(signal.SIGSTOP)  # alive but silent: no connection closes, only the timeout helps

        status, _, stderr, seconds = finish(ranks[0], timeout=60)
    finally:
        ranks[1].send_signal(signal.SIGKILL)
        ranks[1].wait()

    assert status == EXIT_USER, stderr
    assert seconds < 3 + 20, f"took {seconds:.0f} s to stop"
    lines = _lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("error: rank 0: step "), stderr
    assert "did not answer within 3 s" in lines[0] and "checkpoint of step" in lines[0], lines[0]
    assert latest_checkpoint(out / "checkpoints") is not None
