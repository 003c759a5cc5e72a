"""A progress bar for generation: rows done of total, rows/s and time left (rich, on stderr)."""

from __future__ import annotations

import contextlib
import datetime
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text


def _rate(task) -> float | None:
    # Rows of this session over its whole elapsed time: batched rows finish in bursts, so rich's
    # recent-window speed would swing between zero and many times the real rate.
    new = task.completed - task.fields["resumed"]
    return new / task.elapsed if new > 0 and task.elapsed else None


class RowsPerSecondColumn(ProgressColumn):
    def render(self, task) -> Text:
        rate = _rate(task)
        return Text("- rows/s" if rate is None else f"{rate:.2f} rows/s")


class EtaColumn(ProgressColumn):
    def render(self, task) -> Text:
        rate = _rate(task)
        if task.finished:
            return Text("done")
        if rate is None:
            return Text("eta -")
        return Text(f"eta {datetime.timedelta(seconds=round((task.total - task.completed) / rate))}")


@contextlib.contextmanager
def row_progress(total: int, done: int = 0, description: str = "generating") -> Iterator[Callable[..., None]]:
    """Yields ``advance(n=1)``; rows already done (resumed) count as completed but not in the rate."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RowsPerSecondColumn(),
        TimeElapsedColumn(), EtaColumn(), console=Console(stderr=True),
    )  # fmt: skip
    with progress:
        task = progress.add_task(description, total=total, completed=done, resumed=done)
        yield lambda n=1: progress.advance(task, n)
