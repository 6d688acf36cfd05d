"""The first op call that compiles the kernels says so on stderr (one line before, one after); loading the cached
build says nothing. The build itself is replaced by a stand-in that writes the library file torch would."""

import os
from pathlib import Path

import pytest
from torch.utils import cpp_extension

from cuda_rasterizer import _backend


@pytest.fixture
def build_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch extensions folder, and a stand-in for `cpp_extension.load` that "builds" into it."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(_backend.shutil, "which", lambda _: "/usr/bin/c++")

    def fake_load(name: str, **_) -> None:
        library = tmp_path / name / f"{name}{getattr(cpp_extension, 'LIB_EXT', '.so')}"
        library.parent.mkdir(parents=True, exist_ok=True)
        library.write_bytes(b"")

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    return tmp_path


def test_a_build_is_announced_before_and_after(build_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _backend.needs_build(False)
    _backend._load.__wrapped__(False)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("cuda_rasterizer: compiling the C++ rasterizer kernels (first use, about ")
    assert lines[1].startswith("cuda_rasterizer: kernels compiled in ")


def test_loading_the_cached_build_is_silent(build_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _backend._load.__wrapped__(False)
    capsys.readouterr()
    assert not _backend.needs_build(False)
    _backend._load.__wrapped__(False)
    assert capsys.readouterr().err == ""


def test_a_library_older_than_the_sources_is_rebuilt(build_root: Path) -> None:
    _backend._load.__wrapped__(False)
    library = next(build_root.glob("splat4d_raster_cpu/splat4d_raster_cpu*"))
    os.utime(library, (0, 0))
    assert _backend.needs_build(False)


def test_the_cuda_build_message_names_cuda() -> None:
    assert "C++/CUDA" in _backend.build_message(True) and "CUDA" not in _backend.build_message(False)
