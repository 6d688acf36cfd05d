"""The pieces of data parallelism that need no second process: torchrun's environment, the per-view seeds, the
one-line errors, and the refusals that come before any process is started."""

from pathlib import Path

import pytest

from splat4d.distributed import SINGLE, RankLostError, Ranks, TorchrunEnv, _reason, torchrun_env, view_seed
from splat4d.errors import UsageError, UserError
from tests.reliability.conftest import assert_one_line_error, run_cli


def test_torchrun_environment_is_read_and_checked() -> None:
    assert torchrun_env({}) is None
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert torchrun_env(env) == TorchrunEnv(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert torchrun_env({"RANK": "0", "WORLD_SIZE": "1"}) == TorchrunEnv(0, 1, 0, 1)
    with pytest.raises(UsageError, match="inconsistent RANK=4 WORLD_SIZE=4"):
        torchrun_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(UsageError, match="not integers"):
        torchrun_env({"RANK": "zero", "WORLD_SIZE": "2"})


def test_a_view_draws_the_same_seed_wherever_it_is_rendered() -> None:
    seeds = {view_seed(0, step, slot) for step in range(50) for slot in range(4)}
    assert len(seeds) == 200  # distinct per (step, slot)
    assert view_seed(7, 12, 1) == view_seed(7, 12, 1) and view_seed(7, 12, 1) != view_seed(8, 12, 1)


def test_one_process_runs_the_main_rank_work_itself() -> None:
    assert SINGLE.from_main(lambda: 42, "reading") == 42
    assert SINGLE.is_main and not SINGLE.distributed and SINGLE.label() == ""
    assert Ranks(rank=1, world_size=2).label() == "rank 1: "


def test_backend_errors_shrink_to_their_first_sentence() -> None:
    error = RuntimeError(
        "[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:4530: Connection "
        "reset by peer. This is typically caused by a remote process exiting"
    )
    assert _reason(error) == "Read error [127.0.0.1]:4530: Connection reset by peer"
    assert issubclass(RankLostError, UserError)  # reported as one line, without a traceback


@pytest.mark.parametrize(
    "flags", [["--nproc", "0"], ["--batch-size", "0"], ["--set", "trainer.dist_timeout=0"]]
)
def test_bad_counts_are_refused_before_anything_starts(flags: list[str], tmp_path: Path, capsys) -> None:
    result = run_cli(capsys, "reconstruct", tmp_path, "-o", tmp_path / "out", *flags)
    assert_one_line_error(result, flags[0] if flags[0] != "--set" else "--trainer.dist-timeout")
    assert not (tmp_path / "out").exists()


def test_the_long_pipeline_refuses_several_ranks_before_starting_them(tmp_path: Path, capsys) -> None:
    result = run_cli(
        capsys, "reconstruct", tmp_path, "-o", tmp_path / "out", "--pipeline", "long", "--nproc", "2"
    )
    assert_one_line_error(result, "--nproc", "long")
