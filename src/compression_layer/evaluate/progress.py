"""A progress bar for generation: rows done of total, rows/s and time left (rich, on stderr)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


class RowsPerSecondColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- rows/s" if speed is None else f"{speed:.2f} rows/s")


@contextlib.contextmanager
def row_progress(total: int, done: int = 0, description: str = "generating") -> Iterator:
    """Yields ``advance(n=1)``; rows already done (resumed) count as completed but not in the speed."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RowsPerSecondColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=Console(stderr=True), speed_estimate_period=60,
    )  # fmt: skip
    with progress:
        task = progress.add_task(description, total=total, completed=done)
        # rich estimates speed from recent advances only, so the resumed rows do not inflate it.
        yield lambda n=1: progress.advance(task, n)
