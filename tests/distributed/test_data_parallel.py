"""Data parallelism is exact: 2 ranks × 1 view per step train what 1 process × 2 views does, densification
included, the ranks' Gaussians stay identical, and an interrupted run resumes to the same result (CPU, gloo, 2
processes, one launch for all cases)."""

import json
from pathlib import Path

import pytest
import torch

from tests.distributed.helpers import CASES as ALL_CASES
from tests.distributed.helpers import (
    NO_REFINE,
    STEPS,
    assert_same_params,
    finish,
    run_case,
    start_ranks,
)

CASES = list(ALL_CASES)


@pytest.fixture(scope="module")
def two_ranks(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case trained on 2 ranks × 1 view per step (one launch): OUT/CASE/rank<r>.pt and OUT/CASE/scene, and the
    `static` case interrupted and resumed: OUT/resumed/..."""
    out = tmp_path_factory.mktemp("two_ranks")
    ranks = start_ranks(["-m", "tests.distributed.worker", str(scenes), str(out), *CASES], 2, out)
    for rank, process in enumerate(ranks):
        status, stdout, stderr, _ = finish(process, timeout=240)
        assert status == 0, f"rank {rank} failed:\n{stdout}\n{stderr}"
    return out


@pytest.mark.parametrize("case", [*CASES, "resumed"])
def test_ranks_hold_identical_gaussians(two_ranks: Path, case: str) -> None:
    rank0, rank1 = (torch.load(two_ranks / case / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


def test_two_ranks_of_one_view_equal_one_process_of_two_views(
    two_ranks: Path, static_reference: dict
) -> None:
    assert_same_params(torch.load(two_ranks / "static" / "rank0.pt"), static_reference)
    _assert_densified(two_ranks / "static" / "scene")


@pytest.mark.parametrize("case", [c for c in CASES if c != "static"])
def test_every_pipeline_and_strategy_trains_the_same_on_two_ranks(
    two_ranks: Path, scenes: Path, tmp_path: Path, one_thread, case: str
) -> None:
    reference = run_case(case, scenes, tmp_path / "scene", batch_size=2)
    single = {k: v.detach().cpu() for k, v in reference.pipeline.gaussians.params.items()}
    assert_same_params(torch.load(two_ranks / case / "rank0.pt"), single)
    _assert_densified(two_ranks / case / "scene")


def test_an_interrupted_run_resumes_on_two_ranks_to_the_uninterrupted_result(
    two_ranks: Path, static_reference: dict
) -> None:
    assert_same_params(torch.load(two_ranks / "resumed" / "rank0.pt"), static_reference)
    log = [
        json.loads(line) for line in (two_ranks / "resumed" / "scene" / "log.jsonl").read_text().splitlines()
    ]
    assert [line["step"] for line in log] == list(range(1, STEPS + 1))


def _assert_densified(scene: Path) -> None:
    log = [json.loads(line) for line in (scene / "log.jsonl").read_text().splitlines()]
    assert len({line["num_gaussians"] for line in log}) > 1, "no densification happened to compare"


def test_rank_zero_alone_writes_the_scene_folder(two_ranks: Path) -> None:
    scene = two_ranks / CASES[0] / "scene"
    steps = [json.loads(line)["step"] for line in (scene / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))  # one line per step: not one per rank
    metrics = json.loads((scene / "metrics.json").read_text())
    assert metrics["ranks"] == 2 and metrics["views_per_step"] == 2 and metrics["steps"] == STEPS
    assert (scene / "point_cloud.ply").is_file() and (scene / "cameras.json").is_file()


@pytest.mark.cuda
def test_two_gpus_train_what_one_gpu_does_with_two_views(scenes: Path, tmp_path: Path) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs (NCCL, one GPU per rank)")
    worker = ["-m", "tests.distributed.worker", str(scenes), str(tmp_path), "--cuda", "static"]
    for rank, process in enumerate(start_ranks(worker, 2, tmp_path)):
        status, stdout, stderr, _ = finish(process, timeout=300)
        assert status == 0, f"rank {rank} failed:\n{stdout}\n{stderr}"
    rank0, rank1 = (torch.load(tmp_path / "static" / f"rank{r}.pt") for r in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # the same averaged gradients on both GPUs
    cuda = torch.device("cuda")
    reference = run_case("static", scenes, tmp_path / "one", 2, device=cuda, overrides=NO_REFINE)
    for name, value in reference.pipeline.gaussians.params.items():
        torch.testing.assert_close(rank0[name], value.detach().cpu(), rtol=1e-3, atol=1e-4, msg=name)
