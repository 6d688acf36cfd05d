"""The fault corpus: helpers to run `splat4d` as a user would and check how it fails.

`run_cli` runs the real entry point in this process (fast: no new interpreter per case) and returns its exit
status and output; `assert_one_line_error` checks the error policy of `splat4d.errors` (exit status 2, one
line `error: ...` naming the file or flag, no traceback); `tree_digest` hashes every file under a folder so a
test can show that a refused command touched none of the user's files.

With `SPLAT4D_FAULT_REPORT=FILE`, every `run_cli` call is also recorded in FILE as a Markdown table (test, exit
status, the `error:`/`warning:` line printed): the corpus as a user would see it.
"""

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from splat4d.errors import EXIT_USER


@dataclass
class CliResult:
    status: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_cli(capsys: pytest.CaptureFixture, *args: str | Path) -> CliResult:
    """`splat4d ARGS...` in this process: its exit status (0 when it returned), stdout and stderr."""
    from splat4d.cli import entrypoint

    argv = sys.argv
    sys.argv = ["splat4d", *map(str, args)]
    capsys.readouterr()
    try:
        entrypoint()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    result = CliResult(status, out.out, out.err)
    _record(result)
    return result


def _record(result: CliResult) -> None:
    report = os.environ.get("SPLAT4D_FAULT_REPORT")
    if not report:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::", 1)[-1].removesuffix(" (call)")
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "warning:"))]
    message = " / ".join(lines) or (result.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
    escaped = message.replace("|", "\\|")
    row = f"| `{test}` | {result.status} | {escaped} |\n"
    with open(report, "a", encoding="utf-8") as f:
        f.write(row)


def assert_one_line_error(result: CliResult, *names: str | Path) -> str:
    """The run failed under the error policy: status 2, exactly one `error:` line on stderr, no traceback, and the
    line names each of `names` (a file, folder or flag). Returns the line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.status == EXIT_USER, (result.status, result.stderr)
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    for name in names:
        assert str(name) in line, (name, line)
    return line


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under `folder` (folders included as entries), to compare before and
    after a command."""
    folder = Path(folder)
    digest = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return digest


@pytest.fixture(scope="session")
def tiny_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny procedural nerfstudio scene (8 views, 48×36) shared by the session; copy it before changing it."""
    from splat4d.data.synthetic import SampleConfig, write_sample_scene

    root = tmp_path_factory.mktemp("tiny")
    write_sample_scene(SampleConfig(n_views=8, width=48, height=36), root / "photos", progress=False)
    return root / "photos"


@pytest.fixture
def photos(tiny_photos: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny scene, free to break."""
    return Path(shutil.copytree(tiny_photos, tmp_path / "photos"))
