"""Progress of long work, readable on a terminal and in a log file.

On a terminal, rich draws a live bar. When the output is a file or a pipe (a log, CI, `nohup`), rich's live bar
prints nothing until the end, and rich wraps every line at 80 columns; there we print one plain line now and then
instead (every `LINE_PERCENT` of the work, and at least every `LINE_SECONDS`), and leave long lines unwrapped.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

LINE_PERCENT = 5.0
"""In a log, a line each time this much more of the work is done..."""
LINE_SECONDS = 60.0
"""...or this many seconds have passed since the last line, whichever comes first."""


def make_console() -> Console:
    """The console for a command's output: no wrapping at 80 columns when it is not a terminal."""
    console = Console()
    if not console.is_terminal:
        console.soft_wrap = True
    return console


@dataclass
class _Task:
    description: str
    total: int
    completed: int
    stats: str
    started: float
    start_completed: int
    last_line: float
    last_percent: float


class LogProgress:
    """The part of rich's `Progress` that training uses (`add_task`, `update`), printed as plain lines:

    training 120/1200 (10%)  loss 0.0412  psnr 22.10  #G 41,200  1.9 it/s  1m03s elapsed, 9m28s left
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tasks: list[_Task] = []

    def add_task(self, description: str, total: int, completed: int = 0, stats: str = "") -> int:
        now = time.monotonic()
        task = _Task(
            description, total, completed, stats, now, completed, now, self._percent(completed, total)
        )
        self.tasks.append(task)
        if completed:
            self._line(task, now, resumed=True)
        return len(self.tasks) - 1

    def update(self, task_id: int, completed: int | None = None, stats: str | None = None) -> None:
        task = self.tasks[task_id]
        if completed is not None:
            task.completed = completed
        if stats is not None:
            task.stats = stats
        now = time.monotonic()
        percent = self._percent(task.completed, task.total)
        due = percent >= task.last_percent + LINE_PERCENT or now - task.last_line >= LINE_SECONDS
        if due or (task.completed >= task.total > 0 and task.last_percent < 100.0):
            self._line(task, now)

    def _line(self, task: _Task, now: float, resumed: bool = False) -> None:
        percent = self._percent(task.completed, task.total)
        task.last_line, task.last_percent = now, percent
        parts = [f"{task.description} {task.completed}/{task.total} ({percent:.0f}%)"]
        if task.stats:
            parts.append(task.stats)
        if resumed:
            parts.append("resumed")
        else:
            elapsed, done = now - task.started, task.completed - task.start_completed
            timing = f"{_duration(elapsed)} elapsed"
            if done > 0 and task.completed < task.total:
                timing += f", {_duration(elapsed / done * (task.total - task.completed))} left"
            parts.append(timing)
        self.console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True)

    @staticmethod
    def _percent(completed: int, total: int) -> float:
        return 100.0 * completed / total if total > 0 else 100.0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@contextmanager
def training_progress(enabled: bool, console: Console) -> Iterator[Any]:
    """A progress display with `add_task(description, total, completed, stats)` and `update(task, completed,
    stats)`: rich's live bar on a terminal, `LogProgress` lines otherwise, nothing shown when not `enabled`."""
    if enabled and not console.is_terminal and not console.quiet:
        yield LogProgress(console)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )
    with progress:
        yield progress
