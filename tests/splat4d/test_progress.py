"""Progress written to a log file or a pipe: plain lines while the work runs, unwrapped, with the time left."""

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from splat4d.progress import LINE_PERCENT, LogProgress, training_progress


def _log_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=80), out


def test_a_log_gets_a_line_every_few_percent_and_one_at_the_end() -> None:
    console, out = _log_console()
    with training_progress(True, console) as progress:
        assert isinstance(progress, LogProgress)
        task = progress.add_task("training", total=400, completed=0, stats="")
        for step in range(1, 401):
            stats = (
                f"loss {1 / step:.4f}  psnr {10 + step / 40:5.2f}  #G {1000 + step:,}  3.0 it/s " + "x" * 60
            )
            progress.update(task, completed=step, stats=stats)
    lines = out.getvalue().splitlines()
    assert len(lines) == int(100 / LINE_PERCENT)
    assert lines[0].startswith("training 20/400 (5%)  loss 0.0500") and "left" in lines[0]
    assert lines[-1].startswith("training 400/400 (100%)") and "left" not in lines[-1]
    # One line per report however long (rich would wrap at the console's 80 columns).
    assert all("#G " in line and "x" * 60 + "  " in line for line in lines)


def test_a_resumed_run_says_where_it_starts() -> None:
    console, out = _log_console()
    with training_progress(True, console) as progress:
        task = progress.add_task("training", total=100, completed=40, stats="")
        progress.update(task, completed=41, stats="")
        progress.update(task, completed=45, stats="")
    lines = out.getvalue().splitlines()
    assert lines == [lines[0], lines[1]] and lines[0] == "training 40/100 (40%)  resumed"
    assert lines[1].startswith("training 45/100 (45%)  ")


@pytest.mark.parametrize("enabled", [True, False])
def test_a_terminal_gets_richs_live_bar_and_disabled_progress_prints_nothing(enabled: bool) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True)
    with training_progress(enabled, console) as progress:
        assert not isinstance(progress, LogProgress)
        task = progress.add_task("training", total=10, completed=0, stats="")
        progress.update(task, completed=10, stats="")
    assert ("training" in out.getvalue()) == enabled
    quiet, out = _log_console()
    with training_progress(enabled, quiet) as progress:
        progress.update(
            progress.add_task("training", total=10, completed=0, stats=""), completed=10, stats=""
        )
    assert bool(out.getvalue()) == enabled


def test_commands_writing_to_a_file_do_not_wrap_long_lines(tmp_path: Path) -> None:
    code = "from splat4d.progress import make_console; make_console().print('word ' * 40)"
    log = tmp_path / "log.txt"
    with log.open("w") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, check=True, cwd=Path(__file__).parents[2])
    assert log.read_text().strip() == ("word " * 40).strip()
