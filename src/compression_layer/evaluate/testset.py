"""The rows to evaluate: chat records of the test split, as (input text, expected output, domain)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression_layer.data.chat import USER_PREFIX
from compression_layer.evaluate.generate import EvaluateError
from compression_layer.io import iter_lines


@dataclass(frozen=True)
class TestRow:
    """One test example; ``row`` is its 0-based position among the split's records."""

    __test__ = False  # not a pytest class

    row: int
    input_text: str
    expected_output: str
    domain: str
    record: dict[str, Any]


def _message(record: dict[str, Any], role: str) -> str | None:
    found = None
    for message in record.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == role and isinstance(message.get("content"), str):
            found = message["content"]  # a later message of the same role wins, as in sanitize
    return found


def split_record(record: Any) -> tuple[str, str] | None:
    """(verbose, compressed) of a chat record, or None when it is not one: the user message after its
    first ``Compress:`` marker and the assistant message, both stripped."""
    if not isinstance(record, dict):
        return None
    user, assistant = _message(record, "user"), _message(record, "assistant")
    marker = USER_PREFIX.rstrip("\n")
    if user is None or assistant is None or marker not in user:
        return None
    return user.split(marker, 1)[1].strip(), assistant.strip()


def domain_of(record: dict[str, Any], verbose: str) -> str:
    """The record's own ``domain`` when the split carries one, else the sanitize stage's code detector."""
    domain = record.get("domain") or (record.get("metadata") or {}).get("domain")
    if isinstance(domain, str) and domain:
        return domain
    from compression_layer.data.sanitize import is_code

    return "code" if is_code(verbose) else "nl"


def read_test_rows(path: str | Path, limit: int | None = None) -> list[TestRow]:
    """The first ``limit`` (all when None) records of a chat JSONL file; a malformed line is an error."""
    path = Path(path)
    if not path.is_file():
        raise EvaluateError(f"test split not found: {path}")
    rows: list[TestRow] = []
    for number, line in iter_lines(path):
        if limit is not None and len(rows) >= limit:
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluateError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        pair = split_record(record)
        if pair is None:
            raise EvaluateError(f"{path}:{number}: not a chat record with a user 'Compress:' and an assistant message")
        verbose, expected = pair
        rows.append(TestRow(len(rows), verbose, expected, domain_of(record, verbose), record))
    if not rows:
        raise EvaluateError(f"test split is empty: {path}")
    return rows
