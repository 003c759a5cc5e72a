"""Naive compressions that an adapter has to beat, at the same token budget as the adapter.

``identity`` keeps the input; ``truncate`` keeps its first tokens; ``extractive`` keeps the
highest-scoring whole sentences in their original order. Budgets are cl100k_base tokens, the unit
every ratio of this project is counted in.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from compression_layer.tokens import count_tokens, encoding

BASELINES = ("identity", "truncate", "extractive")


def token_budget(input_tokens: int, ratio: float) -> int:
    """Tokens allowed for an input of ``input_tokens`` at ``ratio`` (at least 1, at most the input)."""
    if input_tokens <= 0:
        return 0
    return max(1, min(input_tokens, round(input_tokens * ratio)))


def identity(text: str) -> str:
    return text


def truncate(text: str, budget: int) -> str:
    """The first ``budget`` tokens of ``text``; a character cut in half at the end is dropped."""
    ids = encoding().encode_ordinary(text)
    if len(ids) <= budget:
        return text
    return encoding().decode_bytes(ids[:budget]).decode("utf-8", errors="ignore")


# Sentences end at . ! ? followed by whitespace, or at a line break (lines of code or of lists).
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[ \t]+|\n+")
_WORD_RE = re.compile(r"[A-Za-z0-9_]+")
_STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in "
    "into is it its may might more most must of on or our out over she should so some such than that the "
    "their them then there these they this those through to too up us was we were what when where which "
    "while who why will with would you your".split()
)


def split_sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, separator that followed it) for each non-blank sentence of ``text``."""
    parts: list[tuple[str, str]] = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        parts.append((text[start : match.start()], match.group(0)))
        start = match.end()
    parts.append((text[start:], ""))
    return [(sentence, sep) for sentence, sep in parts if sentence.strip()]


def _content_words(sentence: str) -> list[str]:
    return [w for w in (m.group(0).lower() for m in _WORD_RE.finditer(sentence)) if len(w) > 2 and w not in _STOPWORDS]


def sentence_scores(sentences: list[str]) -> list[float]:
    """Luhn-style salience: the document frequency of a sentence's distinct content words, divided by
    the square root of its length so long sentences do not win by size alone."""
    frequency = Counter(w for s in sentences for w in _content_words(s))
    scores = []
    for sentence in sentences:
        words = _content_words(sentence)
        scores.append(sum(frequency[w] for w in set(words)) / math.sqrt(1 + len(words)))
    return scores


def _join(parts: list[tuple[str, str]]) -> str:
    return "".join(sentence + (sep if sep.startswith("\n") else " ") for sentence, sep in parts).strip()


def extractive(text: str, budget: int) -> str:
    """Whole sentences, best-scoring first, while the result stays within ``budget`` tokens; kept in
    their original order. When even the best sentence is over budget, it is truncated to the budget."""
    parts = split_sentences(text)
    if not parts:
        return ""
    if count_tokens(text) <= budget:
        return text
    scores = sentence_scores([sentence for sentence, _ in parts])
    ranked = sorted(range(len(parts)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    for index in ranked:
        candidate = sorted(chosen + [index])
        if count_tokens(_join([parts[i] for i in candidate])) <= budget:
            chosen = candidate
    if not chosen:
        return truncate(parts[ranked[0]][0].strip(), budget)
    return _join([parts[i] for i in chosen])


def compress(name: str, text: str, input_tokens: int, ratio: float) -> str:
    """The output of baseline ``name`` for ``text`` at ``ratio`` (identity ignores the ratio)."""
    if name == "identity":
        return identity(text)
    budget = token_budget(input_tokens, ratio)
    if name == "truncate":
        return truncate(text, budget)
    if name == "extractive":
        return extractive(text, budget)
    raise ValueError(f"unknown baseline {name!r} (expected one of {', '.join(BASELINES)})")
