"""The rows to evaluate: chat records of the test split, as (input text, expected output, domain)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression_layer.data.rules import is_code
from compression_layer.data.sanitize import extract
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


def domain_of(record: dict[str, Any], verbose: str) -> str:
    """The record's own ``domain`` when it carries one, else the sanitize stage's code detector
    (the split writes plain chat records, so this is what the pipeline's test rows get)."""
    domain = record.get("domain")
    if isinstance(domain, str) and domain:
        return domain
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
        pair = extract(record)  # the sanitize stage's reading of a chat record
        if isinstance(pair, str):
            raise EvaluateError(f"{path}:{number}: not a usable chat record: {pair}")
        verbose, expected = pair
        rows.append(TestRow(len(rows), verbose, expected, domain_of(record, verbose), record))
    if not rows:
        raise EvaluateError(f"test split is empty: {path}")
    return rows
