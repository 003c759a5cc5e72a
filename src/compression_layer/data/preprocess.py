"""preprocess: per-row decisions on raw generated pairs (data-rules.md, "preprocess").

Checks, in order; the first failure names the reason: invalid_json, not_an_object,
invalid_text_fields, invalid_domain, empty_text, char_ratio (>= max), token_ratio (> max).
Kept rows carry the cleaned texts and their ratios; rejected rows carry the 1-based input line,
the reason, a detail and the original (parsed value, or raw text when it was not JSON).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, NamedTuple

from compression_layer.data.clean import clean_compressed
from compression_layer.data.stats import StageStats
from compression_layer.data.token_batches import decide_lines
from compression_layer.params import PreprocessParams
from compression_layer.tokens import count_tokens, token_ratio

REASONS = (
    "invalid_json",
    "not_an_object",
    "invalid_text_fields",
    "invalid_domain",
    "empty_text",
    "char_ratio",
    "token_ratio",
)
DOMAINS = ("nl", "code", "mixed")
_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
UNKNOWN_DOMAIN = "unknown"  # stats bucket of rows whose domain is missing or not one of DOMAINS


class Decision(NamedTuple):
    kept: bool
    record: dict[str, Any]  # the kept row, or the rejected row (line, reason, detail, original)
    reason: str | None
    domain: str  # for stats: the row's domain, or UNKNOWN_DOMAIN


class _Candidate(NamedTuple):
    """A row that passed checks 1-6 and waits for its token counts."""

    line: int
    pair: dict[str, Any]
    verbose: str
    compressed: str
    domain: str
    char_ratio: float


def new_stats() -> StageStats:
    return StageStats("preprocess", REASONS, DOMAINS)


def _reject(line: int, reason: str, detail: str, domain: str, original: Any, raw: bool = False) -> Decision:
    record = {"line": line, "reason": reason, "detail": detail, ("raw" if raw else "record"): original}
    return Decision(False, record, reason, domain)


def _check(line: int, text: str, is_utf8: bool, params: PreprocessParams) -> Decision | _Candidate:
    """Checks 1-6 (everything but the token ratio)."""
    if not is_utf8:
        return _reject(line, "invalid_json", "line is not valid UTF-8", UNKNOWN_DOMAIN, text, raw=True)
    try:
        pair = json.loads(text)
    except (ValueError, RecursionError) as exc:
        detail = f"not valid JSON: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not valid JSON"
        return _reject(line, "invalid_json", detail, UNKNOWN_DOMAIN, text, raw=True)
    if not isinstance(pair, dict):
        return _reject(line, "not_an_object", f"a JSON {_JSON_TYPES.get(type(pair), type(pair).__name__)}, not an object",
                       UNKNOWN_DOMAIN, pair)
    domain = pair.get("domain")
    stats_domain = domain if isinstance(domain, str) and domain in DOMAINS else UNKNOWN_DOMAIN
    verbose = pair.get("verbose")
    compressed = pair.get("compressed")
    if not isinstance(verbose, str) or not isinstance(compressed, str):
        bad = "verbose" if not isinstance(verbose, str) else "compressed"
        value = pair.get(bad)
        detail = f"'{bad}' is missing" if bad not in pair else f"'{bad}' is of type {type(value).__name__}, not a string"
        return _reject(line, "invalid_text_fields", detail, stats_domain, pair)
    if stats_domain == UNKNOWN_DOMAIN:
        return _reject(line, "invalid_domain", f"domain {domain!r} is not one of {', '.join(DOMAINS)}",
                       stats_domain, pair)
    verbose = verbose.strip()
    compressed = clean_compressed(compressed)
    if not verbose or not compressed:
        empty = "verbose" if not verbose else "compressed"
        return _reject(line, "empty_text", f"'{empty}' is empty after cleaning", domain, pair)
    char_ratio = len(compressed) / len(verbose)
    if char_ratio >= params.max_char_ratio:
        return _reject(line, "char_ratio", f"char ratio {char_ratio:.4f} >= {params.max_char_ratio}", domain, pair)
    return _Candidate(line, pair, verbose, compressed, domain, char_ratio)


def _finish(c: _Candidate, verbose_tokens: int, compressed_tokens: int, params: PreprocessParams) -> Decision:
    """Check 7 (token ratio) and the kept row."""
    ratio = token_ratio(compressed_tokens, verbose_tokens)
    if ratio > params.max_token_ratio:
        return _reject(c.line, "token_ratio", f"token ratio {ratio:.4f} > {params.max_token_ratio}", c.domain, c.pair)
    metadata = c.pair.get("metadata")
    record = {
        "verbose": c.verbose,
        "compressed": c.compressed,
        "domain": c.domain,
        "language": c.pair.get("language"),
        "metadata": metadata if isinstance(metadata, dict) else {},
        "validation": {"passed": True, "char_ratio": round(c.char_ratio, 4), "token_ratio": round(ratio, 4)},
    }
    return Decision(True, record, None, c.domain)


def decide(line: int, text: str, params: PreprocessParams, is_utf8: bool = True) -> Decision:
    """The decision on one input line (one row at a time; the stage uses preprocess_lines)."""
    checked = _check(line, text, is_utf8, params)
    if isinstance(checked, Decision):
        return checked
    return _finish(checked, count_tokens(checked.verbose), count_tokens(checked.compressed), params)


def preprocess_lines(
    lines: Iterable[tuple[int, str, bool]],
    params: PreprocessParams,
    stats: StageStats,
    batch_size: int = 512,
) -> Iterator[Decision]:
    """Decide every ``(line number, text, is_utf8)`` in input order; count rows read in ``stats``.

    Rows are checked in batches by a producer thread while this thread counts the tokens of the
    previous batch (see token_batches.decide_lines); memory is bounded by a few batches.
    """
    return decide_lines(
        lines,
        lambda line, text, is_utf8: _check(line, text, is_utf8, params),
        lambda candidate, verbose_tokens, compressed_tokens: _finish(candidate, verbose_tokens, compressed_tokens, params),
        _Candidate, stats, batch_size,
    )
