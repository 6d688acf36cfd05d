"""The `splat4d` command: help works, `python -m splat4d` is the same command, `sample` writes a scene."""

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from splat4d.cli import COMMANDS


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "splat4d", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_subcommand() -> None:
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert name in out.stdout


def _leaf_commands() -> list[tuple[tuple[str, ...], type]]:
    """(argv prefix, dataclass) of every runnable command, nested ones (`export ply`) included."""
    leaves = []
    for name, command in COMMANDS.items():
        group = typing.get_type_hints(command, include_extras=True).get(
            "what"
        )  # `export`: a group of commands
        members = typing.get_args(typing.get_args(group)[0]) if group is not None else ()
        leaves.append(((name,), command))
        for member in members:
            cls, *meta = typing.get_args(member)
            sub = next(m.name for m in meta if hasattr(m, "name"))
            leaves.append(((name, sub), cls))
    return leaves


@pytest.mark.parametrize(
    ("argv", "command"), _leaf_commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_subcommand_documents_itself(argv: tuple[str, ...], command: type) -> None:
    out = _run(*argv, "--help")
    assert out.returncode == 0, out.stderr
    assert command.__doc__.split()[0] in out.stdout


def test_sample_writes_a_nerfstudio_scene(tmp_path: Path) -> None:
    out = _run("sample", str(tmp_path / "scene"), "--views", "4", "--cfg.width", "64", "--cfg.height", "48")
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "scene" / "transforms.json").read_text())
    assert len(meta["frames"]) == 4 and meta["w"] == 64 and meta["h"] == 48


def test_sample_refuses_to_overwrite_a_scene(tmp_path: Path) -> None:
    args = ("sample", str(tmp_path / "scene"), "--views", "2", "--cfg.width", "32", "--cfg.height", "24")
    assert _run(*args).returncode == 0
    again = _run(*args)
    assert again.returncode != 0
    assert "scene" in again.stderr
