"""sanitize: per-row decisions on chat-format split rows (data-rules.md, "sanitize").

A row is rejected as bad_format when verbose/compressed cannot be taken from it, else by the
first failing rule of A (expansion), B (orphan symbol), C (lost negation, NL only), D (missing
@/∵, NL only). Kept rows are written unchanged (the input line as it was); rejected rows carry
line, reason, detail and the original record (or the raw text).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, NamedTuple

from compression_layer.data.rules import is_code, rule_a, rule_b, rule_c, rule_d
from compression_layer.data.stats import StageStats
from compression_layer.data.token_batches import decide_lines
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


class _Candidate(NamedTuple):
    """A well-formed row: everything is decided but rule A, which needs the token counts."""

    line: int
    text: str
    record: Any
    verbose: str
    compressed: str
    domain: str
    reason: str | None  # the first of rules B, C, D that fails, if any
    detail: str | None


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


def _check_format(line: int, text: str, is_utf8: bool) -> Decision | _Candidate:
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
    # Rules B, C, D now (they need no tokens); rule A, which comes first, once the tokens are counted.
    reason, detail = "rule_b_orphan_symbol", rule_b(compressed, code)
    if detail is None and not code:
        reason, detail = "rule_c_lost_negation", rule_c(verbose, compressed, lower)
        if detail is None:
            reason, detail = "rule_d_missing_symbol", rule_d(verbose, compressed, lower)
    return _Candidate(line, text, record, verbose, compressed, "code" if code else "nl",
                      reason if detail is not None else None, detail)


def _apply_rules(c: _Candidate, verbose_tokens: int, compressed_tokens: int) -> Decision:
    """Rule A first; otherwise the verdict of rules B, C, D."""
    detail = rule_a(verbose_tokens, compressed_tokens)
    if detail is not None:
        return _reject(c.line, "rule_a_expansion", detail, c.domain, c.record)
    if c.reason is not None:
        return _reject(c.line, c.reason, c.detail, c.domain, c.record)
    return Decision(True, c.text, None, None, c.domain)


def decide(line: int, text: str, is_utf8: bool = True) -> Decision:
    """The decision on one input line (one row at a time; the stage uses sanitize_lines)."""
    checked = _check_format(line, text, is_utf8)
    if isinstance(checked, Decision):
        return checked
    return _apply_rules(checked, count_tokens(checked.verbose), count_tokens(checked.compressed))


def sanitize_lines(
    lines: Iterable[tuple[int, str, bool]],
    stats: StageStats,
    batch_size: int = 512,
) -> Iterator[Decision]:
    """Decide every ``(line number, text, is_utf8)`` in input order; count rows read in ``stats``.

    Rows are checked in batches by a producer thread while this thread counts the tokens of the
    previous batch (see token_batches.decide_lines); memory is bounded by a few batches.
    """
    return decide_lines(lines, _check_format, _apply_rules, _Candidate, stats, batch_size)
