"""The sanitize rules (data-rules.md, "sanitize"): code detection and rules A-D.

Each function decides exactly as the reference's does; regexes are compiled once, and cheap
substring tests skip a regex whenever it cannot match (they never change a result).
"""

from __future__ import annotations

import re

SYMBOLS = frozenset("→|@∵:")

# ---- code detection -------------------------------------------------------------------------

# Any one of these (in the lower-cased text) makes it code.
_VERY_STRONG = (
    "def ", "class ", "function ", "import ", "return ", "async ", "await ", "yield ",
    "@property", "@staticmethod", "@classmethod", "fn:", "lambda ", "isinstance(", "raise ",
)
_KEYWORDS = ("self.", "__init__", "const ", "let ", "var ", "void ", "int ", "string ", "bool ")
# On the original text; any match is one signal. Each comes with a substring it cannot match without.
_SHAPES = (
    ("def", re.compile(r"\bdef\s+\w+\s*\(")),
    ("class", re.compile(r"\bclass\s+\w+\s*[\(:]")),
    ("function", re.compile(r"\bfunction\s+\w+\s*\(")),
    ("function", re.compile(r"\w+\s*=\s*function\s*\(")),
)
_ANNOTATIONS = re.compile(r"(\w+\s*:\s*\w+.*){2,}")  # two "name: name" in a row (needs two colons)
_BRACE_BODY = re.compile(r"\{[^}]*(;|return\s|=\s)[^}]*\}")


def is_code(verbose: str, lower: str | None = None) -> bool:
    """Code when one very strong indicator is present, or at least two weaker signals.

    ``lower`` is ``verbose.lower()`` when the caller has it already.
    """
    if lower is None:
        lower = verbose.lower()
    for indicator in _VERY_STRONG:
        if indicator in lower:
            return True
    signals = 0
    for keyword in _KEYWORDS:
        if keyword in lower:
            signals += 1
            break
    # Lines starting with four spaces or a tab (the text is split on "\n" only).
    indented = verbose.count("\n    ") + verbose.count("\n\t") + verbose.startswith(("    ", "\t"))
    if indented >= 3:
        signals += 1
    if "```python" in lower or "```java" in lower:  # ```javascript starts with ```java
        signals += 1
    if signals >= 2:
        return True
    if signals == 0 and "{" not in verbose:
        return False  # only one more signal is possible below: not enough
    if _has_shape(verbose):
        signals += 1
    if signals >= 2:
        return True
    if signals == 0 or "{" not in verbose:
        return False
    return _BRACE_BODY.search(verbose) is not None


def _has_shape(verbose: str) -> bool:
    for literal, pattern in _SHAPES:
        if literal in verbose and pattern.search(verbose):
            return True
    return verbose.count(":") >= 2 and _ANNOTATIONS.search(verbose) is not None


# ---- rule A: expansion ----------------------------------------------------------------------


def rule_a(verbose_tokens: int, compressed_tokens: int) -> str | None:
    """Token ratio > 1.0 (the compression is longer than the original) -> detail, else None."""
    ratio = compressed_tokens / verbose_tokens if verbose_tokens else 1.0
    if ratio > 1.0:
        return f"token ratio {ratio:.2f} > 1.0 (expansion)"
    return None


# ---- rule B: orphan symbols -----------------------------------------------------------------

# Two adjacent symbols, except "::".
_ADJACENT = re.compile(r"[→|@∵][→|@∵:]|:[→|@∵]")


def rule_b(compressed: str, code: bool) -> str | None:
    """A leading symbol (``@`` allowed for code), a trailing one (``:`` allowed), or two adjacent."""
    first, last = compressed[0], compressed[-1]
    if first in SYMBOLS and not (code and first == "@"):
        return f"orphaned symbol at start: '{first}'"
    if last in SYMBOLS and last != ":":
        return f"orphaned symbol at end: '{last}'"
    match = _ADJACENT.search(compressed)
    if match:
        return f"consecutive symbols: '{match.group()}'"
    return None


# ---- rule C: lost negation ------------------------------------------------------------------

_APOSTROPHES = ("\u2019", "\u2018", "\u02bc", "`")  # each becomes ' before the n't test
_NT = ("n't", "n\u2019t", "n\u2018t", "n\u02bct", "n`t")
# "a word ending in n't": \w+n't\b in the reference; one \w before n't is the same test, in linear time.
_CONTRACTION = re.compile(r"\wn't\b")
# The whole words not no never neither nor without none nothing nobody nowhere, i.e.
# \b(?:not|no|...)\b, written so that the regex engine can skip ahead to an "n" or "w" (twice as
# fast); "no longer", "no more", "not anymore" need no pattern of their own: they contain no/not.
_NEGATION_WORD = re.compile(r"(?:n(?<!\wn)(?:ot?|ever|either|or|one|othing|obody|owhere)|w(?<!\ww)ithout)\b")
_NEGATION_SYMBOL = re.compile(r"![^=!]|~(?![/\d])")


def _has_negation_words(lower: str) -> bool:
    """On lower-cased text. Apostrophes are normalised for the n't test only, as in the reference
    (U+02BC is a word character: normalising it would move the whole-word boundaries)."""
    if any(nt in lower for nt in _NT):
        normalised = lower
        for apostrophe in _APOSTROPHES:
            if apostrophe in normalised:
                normalised = normalised.replace(apostrophe, "'")
        if _CONTRACTION.search(normalised):
            return True
    return _NEGATION_WORD.search(lower) is not None


def has_negation(verbose: str, lower: str | None = None) -> bool:
    """Negation in the original text: a word ending in n't, or a negation word."""
    return _has_negation_words(verbose.lower() if lower is None else lower)


def has_compressed_negation(compressed: str) -> bool:
    """Negation in the compression: as in the original, or ``¬``, ``!x`` (not != / !!), ``~`` (not ~/ or ~digit)."""
    if "¬" in compressed or _has_negation_words(compressed.lower()):
        return True
    return ("!" in compressed or "~" in compressed) and _NEGATION_SYMBOL.search(compressed) is not None


def rule_c(verbose: str, compressed: str, lower: str | None = None) -> str | None:
    """NL only: the original has a negation and the compression has none."""
    if has_negation(verbose, lower) and not has_compressed_negation(compressed):
        return "negation lost"
    return None


# ---- rule D: missing @ / ∵ ------------------------------------------------------------------

LOCATION_PHRASES = (
    "located in", "located at", "based in", "situated in", "found in", "positioned at",
    "positioned in", "place is", "place was", "city of", "town of", "on the shores of",
    "near the", "by the",
)
CAUSATION_PHRASES = (
    "because of", "due to", "caused by", "as a result of", "leads to", "results in", "led to",
    "resulted in", "owing to", "on account of", "thanks to", "consequently", "therefore", "thus",
)


def rule_d(verbose: str, compressed: str, lower: str | None = None) -> str | None:
    """NL only: a location phrase but no ``@``, or a causation phrase but no ``∵`` (substring tests)."""
    if lower is None:
        lower = verbose.lower()
    if "@" not in compressed and any(phrase in lower for phrase in LOCATION_PHRASES):
        return "location phrase but no '@'"
    if "∵" not in compressed and any(phrase in lower for phrase in CAUSATION_PHRASES):
        return "causation phrase but no '∵'"
    return None
