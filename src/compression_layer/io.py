"""File helpers every stage uses: atomic writes and streaming JSON Lines.

Outputs are written to a temporary file beside the target and renamed on success, so a killed or
failing stage never leaves a half-written file that DVC could cache as good.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8", "newline": "\n"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give outputs the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dumps(obj: Any) -> str:
    """One JSON line as the stages write it (UTF-8 kept as is, no ASCII escapes)."""
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: str | Path, obj: Any) -> None:
    """Write a small JSON file (metrics, stats, receipts) atomically, pretty-printed."""
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line text without newline) for every non-blank line."""
    with open(path, encoding="utf-8", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield number, text


def iter_jsonl(path: str | Path) -> Iterator[Any]:
    """Yield the parsed value of every non-blank line (for files the pipeline wrote itself)."""
    for _, line in iter_lines(path):
        yield json.loads(line)
