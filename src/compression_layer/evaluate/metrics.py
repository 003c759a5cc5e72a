"""What a compression is worth: token ratio statistics, fidelity proxies and degenerate outputs.

``check_row`` scores one output (from the adapter or a baseline) against its input and the expected
compression; ``summarize`` aggregates such rows. Both work on plain values, so the predictions file
of an earlier (or resumed) run can be summarized again without the model.
"""

from __future__ import annotations

import keyword
import math
import re
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from compression_layer.data.rules import has_compressed_negation, has_negation
from compression_layer.tokens import token_ratio

# ---- token ratio -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ratio_stats(input_tokens: Sequence[int], output_tokens: Sequence[int]) -> dict[str, float | int | None]:
    """Mean, median and p90 of the per-row token ratios, and the pooled ratio sum(out) / sum(in)."""
    ratios = [token_ratio(o, i) for i, o in zip(input_tokens, output_tokens)]
    if not ratios:
        return {"mean": None, "median": None, "p90": None, "pooled": None}
    return {
        "mean": sum(ratios) / len(ratios),
        "median": percentile(ratios, 50),
        "p90": percentile(ratios, 90),
        "pooled": token_ratio(sum(output_tokens), sum(input_tokens)),
    }


# ---- fidelity proxies ------------------------------------------------------------------------

# A number: digits with optional thousands groups and decimals. Digits glued to a preceding letter
# (x86, utf8) are part of a name, and digits after a dot are part of the number before it.
_NUMBER_RE = re.compile(r"(?<![A-Za-z_\d.])\d+(?:,\d{3})*(?:\.\d+)?")


def numbers(text: str) -> set[str]:
    """The distinct numbers written in ``text``, thousands separators removed ("1,000" == "1000")."""
    return {m.group(0).replace(",", "") for m in _NUMBER_RE.finditer(text)}


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DEFINED_RE = re.compile(rf"\b(?:def|class|function|fn|func|struct|interface|enum|type|let|const|var)\s+({_NAME})")
_CALLED_RE = re.compile(rf"(?<![A-Za-z0-9_])({_NAME})\(")
_ATTRIBUTE_RE = re.compile(rf"(?<=[A-Za-z0-9_)\]])\.({_NAME})")
# snake_case, dunder and camelCase / PascalCase-with-inner-capital names look like code wherever they are.
_CODE_LOOKING_RE = re.compile(r"(?<![A-Za-z0-9_])(?:[A-Za-z0-9]*_[A-Za-z0-9_]+|[a-z][a-z0-9]*[A-Z][A-Za-z0-9]*|_[A-Za-z0-9_]+)(?![A-Za-z0-9_])")
_NOT_IDENTIFIERS = set(keyword.kwlist) | {
    "function", "return", "const", "let", "var", "new", "this", "typeof", "null", "undefined",
    "true", "false", "void", "int", "str", "float", "bool", "list", "dict", "print", "len", "self",
}  # fmt: skip


def code_identifiers(text: str) -> set[str]:
    """Names a compression of code should keep: defined, called and attribute names, and any
    snake_case or camelCase word. Keywords and one-letter names are left out."""
    found: set[str] = set()
    for pattern in (_DEFINED_RE, _CALLED_RE, _ATTRIBUTE_RE, _CODE_LOOKING_RE):
        found.update(m.group(1) if m.groups() else m.group(0) for m in pattern.finditer(text))
    return {name for name in found if len(name) > 1 and name.strip("_") and name not in _NOT_IDENTIFIERS}


def contains_name(text: str, name: str) -> bool:
    """``name`` occurs in ``text`` as a whole identifier (case-sensitive)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def chrf(hypothesis: str, reference: str) -> float:
    """Sentence chrF (Popović 2015: character 1..6-grams, beta 2, whitespace ignored), 0..100."""
    return _chrf_metric().sentence_score(hypothesis, [reference]).score


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float | None:
    """chrF over all rows at once (n-gram statistics pooled before the F-score), as sacrebleu reports it."""
    if not hypotheses:
        return None
    return _chrf_metric().corpus_score(list(hypotheses), [list(references)]).score


_CHRF = None


def _chrf_metric():
    global _CHRF
    if _CHRF is None:
        from sacrebleu.metrics import CHRF

        _CHRF = CHRF(char_order=6, word_order=0, beta=2)
    return _CHRF


# ---- degenerate outputs ----------------------------------------------------------------------


def _line_counts(text: str, min_chars: int) -> Counter:
    return Counter(line.strip() for line in text.splitlines() if len(line.strip()) >= min_chars)


def has_repeated_lines(text: str, source: str = "", min_chars: int = 3) -> bool:
    """A non-blank line (stripped, at least ``min_chars`` long) occurs twice or more, and more often
    than in ``source`` (the input): a model stuck in a loop, not code that repeats a line itself.
    Short lines such as a lone ``}`` are ignored."""
    source_counts = _line_counts(source, min_chars)
    return any(count > 1 and count > source_counts[line] for line, count in _line_counts(text, min_chars).items())


# ---- one row ---------------------------------------------------------------------------------


def check_row(
    input_text: str,
    output: str,
    expected: str,
    domain: str,
    input_tokens: int,
    output_tokens: int,
    unfinished: bool,
) -> dict[str, Any]:
    """Fidelity checks and degenerate flags of one output. Counts, not shares, so rows pool.

    Negation uses the sanitize stage's rule C detectors: an NL row whose input has a negation must
    keep one (``¬``, ``!x`` and ``~`` count in the output); ``negation_kept`` is None for other rows.
    """
    in_numbers = numbers(input_text)
    out_numbers = numbers(output)
    row: dict[str, Any] = {
        "numbers_total": len(in_numbers),
        "numbers_kept": len(in_numbers & out_numbers),
        "identifiers_total": None,
        "identifiers_kept": None,
        "negation_kept": None,
        "chrf": chrf(output, expected),
        "empty": not output.strip(),
        "longer_than_input": output_tokens > input_tokens,
        "repeated_lines": has_repeated_lines(output, input_text),
        "unfinished": bool(unfinished),
    }
    if domain == "code":
        names = code_identifiers(input_text)
        row["identifiers_total"] = len(names)
        row["identifiers_kept"] = sum(contains_name(output, name) for name in names)
    elif has_negation(input_text):
        row["negation_kept"] = has_compressed_negation(output)
    return row


# ---- many rows -------------------------------------------------------------------------------

DEGENERATE = ("empty", "longer_than_input", "repeated_lines", "unfinished")


def _share(kept: int, total: int) -> float | None:
    return kept / total if total else None


def summarize(rows: Iterable[Mapping[str, Any]], output_key: str = "generated_output") -> dict[str, Any]:
    """Aggregate rows that carry ``input_tokens``, ``output_tokens``, the checks of ``check_row``,
    ``expected_output`` and the output text under ``output_key``.

    Shares are pooled over rows (kept / total), so a row with many numbers weighs more than one with
    a single number; ``negation_kept`` is the share of negated NL inputs whose output keeps a negation.
    """
    rows = list(rows)
    negation_rows = [r["negation_kept"] for r in rows if r.get("negation_kept") is not None]
    code_rows = [r for r in rows if r.get("identifiers_total") is not None]
    summary: dict[str, Any] = {
        "rows": len(rows),
        "token_ratio": ratio_stats([r["input_tokens"] for r in rows], [r["output_tokens"] for r in rows]),
        "numbers_kept": _share(sum(r["numbers_kept"] for r in rows), sum(r["numbers_total"] for r in rows)),
        "identifiers_kept": _share(
            sum(r["identifiers_kept"] for r in code_rows), sum(r["identifiers_total"] for r in code_rows)
        ),
        "negation_kept": _share(sum(negation_rows), len(negation_rows)),
        "chrf": corpus_chrf([r[output_key] for r in rows], [r["expected_output"] for r in rows]),
        "degenerate": {
            **{name: sum(bool(r[name]) for r in rows) for name in DEGENERATE},
            "any": sum(any(r[name] for name in DEGENERATE) for r in rows),
        },
    }
    return summary


def by_domain(rows: Iterable[Mapping[str, Any]], **kwargs: Any) -> dict[str, dict[str, Any]]:
    """``summarize`` for each domain, domains in sorted order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["domain"], []).append(row)
    return {domain: summarize(groups[domain], **kwargs) for domain in sorted(groups)}
