"""The predictions file: one JSON line per test row, appended as rows finish so a long run can resume.

Field names follow the reference evaluator where it has them (``input_text``, ``expected_output``,
``generated_output``, ``input_tokens``, ``output_tokens``, ``token_ratio``); token counts are
cl100k_base, like every ratio of the project.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Iterable

from compression_layer.evaluate.generate import EvaluateError, Generation
from compression_layer.evaluate.metrics import check_row
from compression_layer.evaluate.testset import TestRow
from compression_layer.io import atomic_open, dumps, iter_lines
from compression_layer.tokens import count_tokens, token_ratio


def output_row(test: TestRow, output: str, input_tokens: int, unfinished: bool = False) -> dict[str, Any]:
    """Token counts, ratios and fidelity checks of one output (the adapter's or a baseline's)."""
    output_tokens = count_tokens(output)
    return {
        "output_tokens": output_tokens,
        "token_ratio": token_ratio(output_tokens, input_tokens),
        "char_ratio": len(output) / len(test.input_text) if test.input_text else 1.0,
        **check_row(
            test.input_text, output, test.expected_output, test.domain,
            input_tokens, output_tokens, unfinished,
        ),
    }  # fmt: skip


def prediction(test: TestRow, generation: Generation) -> dict[str, Any]:
    """The predictions-file line of one generated row."""
    input_tokens = count_tokens(test.input_text)
    expected_tokens = count_tokens(test.expected_output)
    return {
        "row": test.row,
        "domain": test.domain,
        "input_text": test.input_text,
        "expected_output": test.expected_output,
        "generated_output": generation.text,
        "input_tokens": input_tokens,
        "expected_tokens": expected_tokens,
        "expected_ratio": token_ratio(expected_tokens, input_tokens),
        "generated_model_tokens": generation.tokens,
        "finish_reason": generation.finish_reason,
        **output_row(test, generation.text, input_tokens, generation.unfinished),
    }


def read_done(path: str | Path, tests: Iterable[TestRow]) -> dict[int, dict[str, Any]]:
    """Rows already in a predictions file (for --resume), checked against the test rows they claim
    to be. A torn last line (the run was killed mid-write) is dropped; any other bad line is an error."""
    path = Path(path)
    if not path.is_file():
        return {}
    by_row = {t.row: t for t in tests}
    lines = list(iter_lines(path))
    done: dict[int, dict[str, Any]] = {}
    for position, (number, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if position == len(lines) - 1:
                break
            raise EvaluateError(f"{path}:{number}: not valid JSON; cannot resume from this file") from None
        index = row.get("row") if isinstance(row, dict) else None
        test = by_row.get(index) if isinstance(index, int) else None
        if test is None or row.get("input_text") != test.input_text:
            raise EvaluateError(
                f"{path}:{number}: row {index!r} does not match the test split; "
                "it was made from other test data (run without --resume to start over)"
            )
        done[index] = row
    return done


class PredictionWriter:
    """Appends prediction lines and forces each to disk, so a kill loses only rows still generating."""

    def __init__(self, path: str | Path, keep: Iterable[dict[str, Any]] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Start from the kept rows only (this also drops a torn last line of a killed run).
        with atomic_open(self.path) as fh:
            for row in keep:
                fh.write(dumps(row) + "\n")
        self._fh: IO[str] = open(self.path, "a", encoding="utf-8", newline="\n")

    def write(self, row: dict[str, Any]) -> None:
        self._fh.write(dumps(row) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def finalize(path: str | Path, rows: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite the file in test-row order (rows finish out of order when batched); atomic."""
    ordered = [rows[index] for index in sorted(rows)]
    with atomic_open(path) as fh:
        for row in ordered:
            fh.write(dumps(row) + "\n")
    return ordered
