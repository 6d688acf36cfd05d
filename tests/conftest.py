"""Shared fixtures and markers: `device` (cpu always, cuda when present), `cuda` and `slow` auto-skips."""

import os
from pathlib import Path

import pytest
import torch

# Tests never reach a model hub; set before any test imports huggingface libraries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def _has_cuda() -> bool:
    return torch.version.cuda is not None and torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_slow = pytest.mark.skip(reason="slow test: set SPLAT4D_SLOW=1 to run")
    run_slow = os.environ.get("SPLAT4D_SLOW") == "1"
    for item in items:
        if "cuda" in item.keywords and not _has_cuda():
            item.add_marker(skip_cuda)
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def one_thread():
    """The CPU rasterizer's backward accumulates with atomics: bitwise repeatable only on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_data() -> Path:
    """The project's real datasets (../shared/data); skips with a reason when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def reconstructed_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scene folder made by `splat4d reconstruct` (tiny procedural scene, 60 CPU steps), shared by the session.

    Tests must not modify it; copy it first (shutil.copytree) if they do.
    """
    import torch

    from pipelines import PIPELINES
    from splat4d.data.config import DataConfig
    from splat4d.data.synthetic import SampleConfig, write_sample_scene
    from splat4d.reconstruct import reconstruct

    root = tmp_path_factory.mktemp("reconstructed")
    photos = write_sample_scene(SampleConfig(n_views=10, width=80, height=60), root / "photos")
    spec = PIPELINES["static"]
    cfg = spec.with_steps(spec.presets["fast"], 60)
    cfg.data = DataConfig(path=photos)
    cfg.trainer.progress = False
    reconstruct(spec, "static", "fast", cfg, root / "scene", torch.device("cpu"))
    return root / "scene"
