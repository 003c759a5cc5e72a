"""JSON Lines reading and writing for the data stages, robust to whatever a raw file holds.

Lines are numbered as Python's text mode numbers them (``\\n``, ``\\r\\n`` and a lone ``\\r`` end a
line), so line numbers match what the reference reported. A line that is not valid UTF-8 is
handed on (decoded with replacement characters) instead of aborting the whole file, so the stage
can reject that one row with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Iterator

from compression_layer.io import dumps


class DataError(ValueError):
    """Input the data stages cannot use (missing file, malformed intermediate file); one line."""


def require_file(path: str | Path, what: str = "input file") -> Path:
    """``path`` as a Path, or DataError when it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def iter_lines(
    path: str | Path, start: int = 0, end: int | None = None, first_line: int = 1
) -> Iterator[tuple[int, str, bool]]:
    """Yield ``(1-based line number, text, is_utf8)`` for every non-blank line of ``path``.

    With ``start``/``end``, only the lines in that byte range (both at line starts), numbered
    from ``first_line`` (see count_line_ends).
    """
    number = first_line - 1
    remaining = None if end is None else end - start
    with open(path, "rb") as fh:
        fh.seek(start)
        for raw in fh:
            if remaining is not None:
                if remaining <= 0:
                    break
                remaining -= len(raw)
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if b"\r" in raw:
                # \r\n (or a final lone \r) ends this line; any other \r ends a line of its own.
                parts = (raw[:-1] if raw.endswith(b"\r") else raw).split(b"\r")
            else:
                parts = (raw,)
            for part in parts:
                number += 1
                try:
                    text = part.decode("utf-8")
                    ok = True
                except UnicodeDecodeError:
                    text = part.decode("utf-8", "replace")
                    ok = False
                if text.strip():
                    yield number, text, ok


def count_line_ends(data: bytes) -> int:
    """How many lines ``iter_lines`` numbers in ``data`` when ``data`` ends with ``\\n``:
    every ``\\n`` and every ``\\r`` end one, but ``\\r\\n`` ends only one."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def write_record(fh: IO[str], obj: Any) -> None:
    """Write ``obj`` as one JSON line (UTF-8 as is; ASCII escapes only if it holds lone surrogates)."""
    try:
        fh.write(dumps(obj) + "\n")
    except UnicodeEncodeError:  # a lone surrogate (from a \\udXXX escape) has no UTF-8 form
        fh.write(json.dumps(obj) + "\n")


def write_text_line(fh: IO[str], text: str) -> None:
    """Write an already serialised JSON line."""
    fh.write(text + "\n")
