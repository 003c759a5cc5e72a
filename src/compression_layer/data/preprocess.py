"""preprocess: per-row decisions on raw generated pairs (data-rules.md, "preprocess").

Checks, in order; the first failure names the reason: invalid_json, not_an_object,
invalid_text_fields, invalid_domain, empty_text, char_ratio (>= max), token_ratio (> max).
Kept rows carry the cleaned texts and their ratios; rejected rows carry the 1-based input line,
the reason, a detail and the original (parsed value, or raw text when it was not JSON).
"""

from __future__ import annotations

import json
from typing import IO, Any, Iterable, Iterator, NamedTuple

from compression_layer.data.clean import clean_compressed
from compression_layer.data.jsonl import write_record
from compression_layer.data.stats import StageStats
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


def new_stats() -> StageStats:
    return StageStats("preprocess", REASONS, DOMAINS)


def _reject(line: int, reason: str, detail: str, domain: str, original: Any, raw: bool = False) -> Decision:
    record = {"line": line, "reason": reason, "detail": detail, ("raw" if raw else "record"): original}
    return Decision(False, record, reason, domain)


def decide(line: int, text: str, params: PreprocessParams, is_utf8: bool = True) -> Decision:
    """The decision on one input line: the first failing check, else the kept row."""
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
    ratio = token_ratio(count_tokens(compressed), count_tokens(verbose))
    if ratio > params.max_token_ratio:
        return _reject(line, "token_ratio", f"token ratio {ratio:.4f} > {params.max_token_ratio}", domain, pair)
    metadata = pair.get("metadata")
    record = {
        "verbose": verbose,
        "compressed": compressed,
        "domain": domain,
        "language": pair.get("language"),
        "metadata": metadata if isinstance(metadata, dict) else {},
        "validation": {"passed": True, "char_ratio": round(char_ratio, 4), "token_ratio": round(ratio, 4)},
    }
    return Decision(True, record, None, domain)


def preprocess_lines(
    lines: Iterable[tuple[int, str, bool]],
    params: PreprocessParams,
    stats: StageStats,
) -> Iterator[Decision]:
    """Decide every ``(line number, text, is_utf8)`` in input order; count rows read in ``stats``."""
    for line, text, is_utf8 in lines:
        stats.rows_in += 1
        yield decide(line, text, params, is_utf8)


def write_decisions(
    lines: Iterable[tuple[int, str, bool]],
    kept: IO[str],
    rejected: IO[str],
    stats: StageStats,
    params: PreprocessParams,
) -> None:
    """Decide ``lines``, write kept rows to ``kept`` and rejected ones to ``rejected``; count all in ``stats``."""
    for decision in preprocess_lines(lines, params, stats):
        if decision.kept:
            write_record(kept, decision.record)
            stats.keep(decision.domain)
            stats.add("char_ratio", decision.record["validation"]["char_ratio"])
            stats.add("token_ratio", decision.record["validation"]["token_ratio"])
        else:
            write_record(rejected, decision.record)
            stats.reject(decision.reason, decision.domain)
