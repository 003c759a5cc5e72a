"""sanitize: per-row decisions on chat-format split rows (data-rules.md, "sanitize").

A row is rejected as bad_format when verbose/compressed cannot be taken from it, else by the
first failing rule of A (expansion), B (orphan symbol), C (lost negation, NL only), D (missing
@/∵, NL only). Kept rows are written unchanged (the input line as it was); rejected rows carry
line, reason, detail and the original record (or the raw text).
"""

from __future__ import annotations

import json
from typing import IO, Any, Iterable, Iterator, NamedTuple

from compression_layer.data.jsonl import write_record, write_text_line
from compression_layer.data.rules import is_code, rule_a, rule_b, rule_c, rule_d
from compression_layer.data.stats import StageStats
from compression_layer.tokens import count_tokens

REASONS = ("bad_format", "rule_a_expansion", "rule_b_orphan_symbol", "rule_c_lost_negation", "rule_d_missing_symbol")
DOMAINS = ("nl", "code")  # as detected from the verbose text
UNKNOWN_DOMAIN = "unknown"  # stats bucket of bad_format rows
MARKER = "Compress:"


class Decision(NamedTuple):
    kept: bool
    text: str | None  # kept: the input line, written unchanged
    record: dict[str, Any] | None  # rejected: line, reason, detail and the original
    reason: str | None
    domain: str


def new_stats(stage: str = "sanitize") -> StageStats:
    return StageStats(stage, REASONS, DOMAINS)


def extract(record: Any) -> tuple[str, str] | str:
    """``(verbose, compressed)`` from a chat record, or a detail saying why that is impossible.

    verbose is the user message's text after its first ``Compress:``, compressed the assistant's
    text, both stripped; a later message of the same role replaces an earlier one, and list
    items that are not objects are ignored.
    """
    if not isinstance(record, dict):
        return "not an object"
    messages = record.get("messages")
    if not isinstance(messages, list):
        return "no 'messages' list" if "messages" in record else "no 'messages' key"
    if len(messages) < 2:
        return f"expected at least 2 messages, got {len(messages)}"
    verbose = compressed = ""
    found_user = found_assistant = False
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role", "")
        content = message.get("content", "")
        if role == "user":
            found_user = True
            if not isinstance(content, str):
                return "user message content is not a string"
            if MARKER not in content:
                return "user message without 'Compress:'"
            verbose = content.split(MARKER, 1)[1].strip()
        elif role == "assistant":
            found_assistant = True
            if not isinstance(content, str):
                return "assistant message content is not a string"
            compressed = content.strip()
    if not found_user:
        return "no user message"
    if not found_assistant:
        return "no assistant message"
    if not verbose:
        return "empty verbose text after 'Compress:'"
    if not compressed:
        return "empty compressed text"
    return verbose, compressed


def _reject(line: int, reason: str, detail: str, domain: str, original: Any, raw: bool = False) -> Decision:
    record = {"line": line, "reason": reason, "detail": detail, ("raw" if raw else "record"): original}
    return Decision(False, None, record, reason, domain)


def decide(line: int, text: str, is_utf8: bool = True) -> Decision:
    """The decision on one input line: bad_format, else the first failing rule of A, B, C, D."""
    if not is_utf8:
        return _reject(line, "bad_format", "line is not valid UTF-8", UNKNOWN_DOMAIN, text, raw=True)
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:
        detail = f"not valid JSON: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not valid JSON"
        return _reject(line, "bad_format", detail, UNKNOWN_DOMAIN, text, raw=True)
    pair = extract(record)
    if isinstance(pair, str):
        return _reject(line, "bad_format", pair, UNKNOWN_DOMAIN, record)
    verbose, compressed = pair
    lower = verbose.lower()
    code = is_code(verbose, lower)
    domain = "code" if code else "nl"
    detail = rule_a(count_tokens(verbose), count_tokens(compressed))
    if detail is not None:
        return _reject(line, "rule_a_expansion", detail, domain, record)
    detail = rule_b(compressed, code)
    if detail is not None:
        return _reject(line, "rule_b_orphan_symbol", detail, domain, record)
    if not code:
        detail = rule_c(verbose, compressed, lower)
        if detail is not None:
            return _reject(line, "rule_c_lost_negation", detail, domain, record)
        detail = rule_d(verbose, compressed, lower)
        if detail is not None:
            return _reject(line, "rule_d_missing_symbol", detail, domain, record)
    return Decision(True, text, None, None, domain)


def sanitize_lines(lines: Iterable[tuple[int, str, bool]], stats: StageStats) -> Iterator[Decision]:
    """Decide every ``(line number, text, is_utf8)`` in input order; count rows read in ``stats``."""
    for line, text, is_utf8 in lines:
        stats.rows_in += 1
        yield decide(line, text, is_utf8)


def write_decisions(lines: Iterable[tuple[int, str, bool]], kept: IO[str], rejected: IO[str], stats: StageStats) -> None:
    """Decide ``lines``, write kept rows (unchanged) to ``kept`` and rejected ones to ``rejected``; count all in ``stats``."""
    for decision in sanitize_lines(lines, stats):
        if decision.kept:
            write_text_line(kept, decision.text)
            stats.keep(decision.domain)
        else:
            write_record(rejected, decision.record)
            stats.reject(decision.reason, decision.domain)
