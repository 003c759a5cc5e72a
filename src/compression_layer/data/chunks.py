"""A stage's row decisions over byte ranges of its input files, in worker processes.

preprocess and sanitize decide every row on its own, and their work (JSON, cleaning, rules,
token counts) is CPU-bound Python that threads cannot share (the GIL). So each input file is cut
at line ends into ranges of about ``chunk_bytes``; worker processes decide the ranges at the
same time, each writing its kept and rejected rows to scratch files, and the parent appends
those to the outputs in input order. Line numbers are those of the whole file, and the outputs
are byte-identical to a one-process run whatever the number of workers (tests/test_chunks.py).
Memory stays flat: a worker holds one row at a time, the parent one chunk's bytes while it cuts.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence

from compression_layer.data.jsonl import count_line_ends, iter_lines
from compression_layer.data.stats import StageStats

# Decides rows and writes them: work(lines, kept, rejected, stats). A module-level function (or a
# functools.partial of one), so that it reaches worker processes.
Work = Callable[[Iterable[tuple[int, str, bool]], IO[str], IO[str], StageStats], None]

# fork: a worker starts in milliseconds with everything imported. macOS frameworks are not
# fork-safe, so there (and elsewhere) workers are spawned.
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
CHUNK_BYTES = 2 << 20  # small enough to balance two workers on a few-MB file, large enough to amortise a task


@dataclass(frozen=True)
class Chunk:
    """Lines ``[start, end)`` (byte offsets at line starts) of ``path``; the first is line ``first_line``."""

    path: Path
    start: int
    end: int
    first_line: int


@dataclass(frozen=True)
class Job:
    """One input file and the two outputs its rows go to."""

    source: Path
    kept: IO[str]
    rejected: IO[str]
    stats: StageStats


def default_workers() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cut(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """``path`` as consecutive chunks of about ``chunk_bytes``, each ending at a line end."""
    chunks = []
    start, first_line = 0, 1
    size = path.stat().st_size
    with open(path, "rb") as fh:
        while start < size:
            fh.seek(min(start + chunk_bytes, size))
            fh.readline()  # to the end of the line the cut falls in
            end = min(fh.tell(), size)
            chunks.append(Chunk(path, start, end, first_line))
            fh.seek(start)
            first_line += count_line_ends(fh.read(end - start))
            start = end
    return chunks


def _decide_chunk(work: Work, new_stats: Callable[[], StageStats], chunk: Chunk, scratch: str) -> tuple[str, str, StageStats]:
    """In a worker: decide one chunk into two scratch files; return their paths and the chunk's stats."""
    stats = new_stats()
    kept = tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="\n", dir=scratch, delete=False)
    rejected = tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="\n", dir=scratch, delete=False)
    with kept, rejected:
        work(iter_lines(chunk.path, chunk.start, chunk.end, chunk.first_line), kept, rejected, stats)
    return kept.name, rejected.name, stats


def _append(target: IO[str], scratch_path: str) -> None:
    target.flush()
    with open(scratch_path, "rb") as src:
        shutil.copyfileobj(src, target.buffer, 1 << 20)
    os.unlink(scratch_path)


def _exit_with(parent: int) -> None:
    """Worker initializer: exit once the stage process is gone (e.g. SIGKILLed), instead of
    waiting for tasks forever (the task pipe never closes: every worker holds its write end)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-stage", daemon=True).start()


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(START_METHOD),
                               initializer=_exit_with, initargs=(os.getpid(),))


def run_jobs(
    jobs: Sequence[Job],
    work: Work,
    new_stats: Callable[[], StageStats],
    workers: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """Decide every row of every job's source into its outputs, in input order; count into its stats.

    With ``workers=1``, or inputs of one chunk in all, rows are decided in this process.
    """
    workers = default_workers() if workers is None else workers
    # Cutting reads every input once (to number lines): only worth it when workers will share it.
    planned = [(job, cut(job.source, chunk_bytes)) for job in jobs] if workers > 1 else []
    workers = min(workers, sum(len(chunks) for _, chunks in planned))
    if workers <= 1:
        for job in jobs:
            work(iter_lines(job.source), job.kept, job.rejected, job.stats)
        return
    with tempfile.TemporaryDirectory(prefix="compression-layer-chunks-") as scratch, _pool(workers) as pool:
        pending: list[tuple[Job, Future]] = [
            (job, pool.submit(_decide_chunk, work, new_stats, chunk, scratch)) for job, chunks in planned for chunk in chunks
        ]
        try:
            for job, future in pending:
                kept_path, rejected_path, stats = future.result()
                _append(job.kept, kept_path)
                _append(job.rejected, rejected_path)
                job.stats.merge(stats)
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise
