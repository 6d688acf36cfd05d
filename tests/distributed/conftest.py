"""Fixtures shared by the multi-process tests: the tiny scenes, and the one-process reference of the `static`
case (2 views per step), which a 2-rank run must equal however it was interrupted and resumed."""

from pathlib import Path

import pytest
import torch

from tests.distributed.helpers import run_case, write_scenes


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="session")
def static_reference(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """Final parameters of the `static` case on one process with 2 views per step, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_case("static", scenes, tmp_path_factory.mktemp("reference") / "scene", batch_size=2)
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().cpu() for k, v in result.pipeline.gaussians.params.items()}
