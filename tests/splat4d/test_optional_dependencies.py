"""pycolmap, PyAV and imageio-ffmpeg are optional: importing splat4d, its help, reading pinhole datasets, training,
evaluation and PLY export work without them, and the features that need one say which in one line."""

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from splat4d.data import load_scene
from splat4d.data.config import DataConfig
from splat4d.data.synthetic import SampleConfig, write_sample_scene
from splat4d.data.triangulate import TriangulationConfig, with_triangulated_points
from splat4d.errors import EXIT_USER, UserError
from splat4d.optional import require

OPTIONAL = ("pycolmap", "av", "imageio_ffmpeg")
WITHOUT_OPTIONAL = f"import sys; sys.modules.update(dict.fromkeys({list(OPTIONAL)!r}))\n"
"""Run first: a None entry in sys.modules makes `import x` raise ModuleNotFoundError, as if x were not installed."""
RUN_COMMANDS = """
from splat4d.cli import entrypoint
for argv in COMMANDS:
    sys.argv = ["splat4d", *argv]
    try:
        entrypoint()
    except SystemExit as exc:
        print(f"exit {exc.code}: {' '.join(argv)}")
        raise
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False
    )


def _splat4d_without_optional(*commands: list[str], first: str = "") -> subprocess.CompletedProcess:
    """Run the code `first`, then the `splat4d` commands one after another, in one process where the optional
    packages are missing; the first command that exits ends it with its status."""
    commands_line = f"COMMANDS = {[list(c) for c in commands]!r}\n"
    return _python(WITHOUT_OPTIONAL + first + "\n" + commands_line + RUN_COMMANDS)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    write_sample_scene(SampleConfig(n_views=6, width=48, height=36), out, progress=False)
    return out


def test_importing_splat4d_loads_no_optional_package() -> None:
    code = (
        "import sys, splat4d, splat4d.cli, splat4d.data, pipelines\n"
        f"print(sorted(set({list(OPTIONAL)!r}) & set(sys.modules)))"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_help_works_without_optional_packages() -> None:
    result = _splat4d_without_optional(["--help"])
    assert result.returncode == 0, result.stderr
    assert "reconstruct" in result.stdout and "usage" in result.stdout.lower()


def test_a_pinhole_scene_loads_trains_evaluates_and_exports_without_optional_packages(
    sample: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scene"
    load = (
        "from splat4d.data import DataConfig, load_scene\n"
        f"scene = load_scene(DataConfig(path={str(sample)!r}), {str(tmp_path / 'work')!r})\n"
        "print(f'loaded {len(scene.cameras)} views')"
    )
    result = _splat4d_without_optional(
        ["reconstruct", str(sample), "-o", str(out), "--steps", "3", "--preset", "fast", "--no-progress"],
        ["eval", str(out)],
        ["export", "ply", str(out)],
        ["export", "video", str(out), "--frames", "2", "--no-mp4", "--pngs", "--no-progress"],
        first=load,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loaded 6 views" in result.stdout
    assert (out / "point_cloud.ply").is_file() and (out / "metrics.json").is_file()
    assert (out / "exports" / "point_cloud.ply").is_file()
    assert len(list(out.glob("exports/*_frames/frame_*.png"))) == 2

    result = _splat4d_without_optional(["export", "video", str(out), "--frames", "2", "--no-progress"])
    assert result.returncode == EXIT_USER
    assert result.stderr.strip() == (
        "error: imageio-ffmpeg is not installed; it is needed to write MP4 videos (or write PNG frames with "
        "--no-mp4 --pngs): pip install imageio-ffmpeg"
    )
    assert not list(out.glob("exports/*.mp4"))


def test_sfm_without_pycolmap_is_a_one_line_error(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        iio.imwrite(photos / f"photo_{i}.png", np.full((16, 16, 3), 40 * i, np.uint8))
    result = _splat4d_without_optional(
        ["reconstruct", str(photos), "-o", str(tmp_path / "out"), "--no-progress"]
    )
    assert result.returncode == EXIT_USER, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "pycolmap is not installed" in lines[0] and "pip install pycolmap" in lines[0]


def test_require_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(
        UserError,
        match=r"^imageio-ffmpeg is not installed; it is needed to write MP4 videos: pip install imageio-ffmpeg$",
    ):
        require("imageio_ffmpeg", "write MP4 videos")
    assert require("numpy", "count") is np


def test_triangulation_falls_back_to_random_points_without_pycolmap_in_auto_mode_only(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = load_scene(DataConfig(path=sample), tmp_path / "work")
    monkeypatch.setitem(sys.modules, "pycolmap", None)
    with pytest.warns(UserWarning, match="pycolmap is not installed.*random points"):
        found = with_triangulated_points(scene, TriangulationConfig(mode="auto"), tmp_path / "tri")
    assert found.points is None and found.metadata["triangulated_points"] == 0
    with pytest.raises(UserError, match="pycolmap is not installed; it is needed to triangulate"):
        with_triangulated_points(scene, TriangulationConfig(mode="always"), tmp_path / "tri")
