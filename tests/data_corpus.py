"""Deterministic synthetic corpora for the data stages: raw pairs and chat rows.

Rows read like the real ones in length and shape (English paragraphs of 3-10 sentences, Python
and JavaScript functions; compressions in the dense notation with → | @ ∵), and a few percent
carry each defect the stages must catch (tags, fences, expansions, lost negations, missing
@/∵, orphan symbols, malformed JSON, wrong types, unknown domains). Used by the tests and by
benchmarks/data_stages.py; the same seed always gives the same bytes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = (
    "You are a semantic compression engine. Compress the input into minimal tokens while preserving "
    "all information for equivalent LLM reasoning. Use dense notation: labeled fields, standard "
    "abbreviations, and symbols (→ | + @). Never lose information."
)

ADJS = ("large", "small", "ancient", "modern", "northern", "coastal", "public", "private", "rapid", "steady",
        "complex", "simple", "early", "late", "major", "minor", "local", "global", "digital", "rural")
NOUNS = ("council", "river", "market", "library", "harbor", "network", "festival", "railway", "museum",
         "garden", "factory", "province", "temple", "bridge", "archive", "academy", "reservoir", "colony",
         "treaty", "dynasty", "theory", "protocol", "engine", "algorithm", "vaccine", "climate", "economy")
VERBS = ("supports", "connects", "regulates", "describes", "produces", "protects", "funds", "replaced",
         "expanded", "recorded", "influenced", "managed", "organised", "measured", "attracted", "limited")
PLACES = ("Paris", "Lisbon", "Kyoto", "Nairobi", "Lima", "Oslo", "Hanoi", "Quebec", "Tunis", "Perth",
          "Cusco", "Gdansk", "Porto", "Tbilisi", "Manaus", "Seville")
ABBREV = {"council": "cncl", "library": "lib", "network": "net", "festival": "fest", "province": "prov",
          "academy": "acad", "protocol": "proto", "algorithm": "algo", "economy": "econ", "government": "govt"}


def _sentence(rng: random.Random) -> tuple[str, str]:
    adj, noun, verb, obj = rng.choice(ADJS), rng.choice(NOUNS), rng.choice(VERBS), rng.choice(NOUNS)
    short_noun, short_obj = ABBREV.get(noun, noun), ABBREV.get(obj, obj)
    year = rng.randint(1200, 2024)
    kind = rng.random()
    if kind < 0.15:
        place = rng.choice(PLACES)
        verbose = f"The {adj} {noun}, located in the city of {place}, {verb} the {obj} since {year}."
        compressed = f"{adj} {short_noun} @ {place} {verb} {short_obj} since {year}"
    elif kind < 0.3:
        cause = rng.choice(NOUNS)
        verbose = f"Because of the {cause}, the {adj} {noun} {verb} the {obj} in {year}."
        compressed = f"{adj} {short_noun} {verb} {short_obj} ({year}) ∵ {cause}"
    elif kind < 0.45:
        neg = rng.choice(("does not", "never", "can't", "won\u2019t", "no longer"))
        verbose = f"The {adj} {noun} {neg} {verb.rstrip('sd')} the {obj}, according to records from {year}."
        compressed = f"{adj} {short_noun} ¬{verb} {short_obj} (records {year})"
    else:
        extra = rng.choice(NOUNS)
        verbose = (f"In {year} the {adj} {noun} {verb} the {obj} and the {extra}, which changed how the "
                   f"{rng.choice(ADJS)} {rng.choice(NOUNS)} worked for many years afterwards.")
        compressed = f"{year}: {adj} {short_noun} {verb} {short_obj} + {extra} → changed {rng.choice(NOUNS)}"
    return verbose, compressed


def nl_pair(rng: random.Random) -> tuple[str, str]:
    parts = [_sentence(rng) for _ in range(rng.randint(3, 10))]
    return " ".join(v for v, _ in parts), " | ".join(c for _, c in parts)


def _ident(rng: random.Random) -> str:
    return f"{rng.choice(('load', 'parse', 'build', 'merge', 'fetch', 'render', 'check'))}_{rng.choice(NOUNS)}"


def code_pair(rng: random.Random) -> tuple[str, str]:
    name, arg, var = _ident(rng), rng.choice(NOUNS), rng.choice(("items", "rows", "parts", "result"))
    if rng.random() < 0.7:
        lines = [f"def {name}({arg}, limit: int = {rng.randint(1, 99)}) -> list:",
                 f'    """{rng.choice(VERBS).capitalize()} the {arg} and return the {var}.',
                 "",
                 "    Args:",
                 f"        {arg}: the {rng.choice(ADJS)} {rng.choice(NOUNS)} records to read, in input order.",
                 f"        limit: the largest number of {var} to return before stopping early.",
                 "",
                 "    Returns:",
                 f"        The {var} found, at most ``limit`` of them, each taken from its {rng.choice(NOUNS)}.",
                 '    """',
                 f"    {var} = []"]
        body = [f"        if item.{rng.choice(NOUNS)} is None:", "            continue",
                f"        {var}.append(item.{rng.choice(NOUNS)})",
                f"        if len({var}) >= limit:", "            break"]
        lines += [f"    for item in {arg}:"] + body[: rng.randint(2, len(body))] + [f"    return {var}"]
        verbose = "\n".join(lines)
        compressed = (f"fn:{name}({arg}, limit:int={lines[0].split('= ')[1].split(')')[0]})->list = "
                      f"[item.{rng.choice(NOUNS)} for item in {arg} if item != None][:limit] | doc: {lines[1].strip()[3:]}")
    else:
        verbose = (f"function {name}({arg}, options) {{\n  const {var} = [];\n  for (const x of {arg}) {{\n"
                   f"    if (!x) continue;\n    {var}.push(x.{rng.choice(NOUNS)});\n  }}\n  return {var};\n}}")
        compressed = f"fn:{name}({arg}, options) = {arg}.filter(truthy).map(.{rng.choice(NOUNS)})"
    return verbose, compressed


DEFECTS = (  # (share of rows, name): the rest are clean
    (0.04, "think"), (0.03, "fence"), (0.02, "blank_run"), (0.03, "expansion"), (0.02, "near_ratio"),
    (0.03, "lost_negation"), (0.03, "missing_symbol"), (0.02, "orphan"), (0.005, "bad_json"),
    (0.005, "wrong_type"), (0.005, "unknown_domain"), (0.005, "empty"),
)


def _defect(rng: random.Random) -> str | None:
    x = rng.random()
    for share, name in DEFECTS:
        if x < share:
            return name
        x -= share
    return None


def _apply(defect: str | None, verbose: str, compressed: str, rng: random.Random) -> tuple[str, str]:
    if defect == "think":
        compressed = f"<think>\nshort it</think>\n{compressed}"
    elif defect == "fence":
        compressed = f"```{rng.choice(('', 'python', 'text'))}\n{compressed}\n```"
    elif defect == "blank_run":
        compressed = compressed.replace(" | ", "\n\n\n\n", 1)
    elif defect == "expansion":
        compressed = verbose + " (expanded with extra notes)"
    elif defect == "near_ratio":
        compressed = verbose[: int(len(verbose) * rng.uniform(0.9, 0.99))]
    elif defect == "lost_negation":
        verbose = verbose + " It does not close in winter."
    elif defect == "missing_symbol":
        verbose = verbose + " This happened due to the drought."
    elif defect == "orphan":
        compressed = rng.choice(("→ ", "| ")) + compressed if rng.random() < 0.5 else compressed + " |"
    elif defect == "empty":
        compressed = "<think></think>"
    return verbose, compressed


def raw_line(rng: random.Random, domain: str) -> str:
    verbose, compressed = (code_pair if domain == "code" else nl_pair)(rng)
    defect = _defect(rng)
    verbose, compressed = _apply(defect, verbose, compressed, rng)
    row: dict = {"verbose": verbose, "compressed": compressed, "domain": domain,
                 "language": "python" if domain == "code" else None, "metadata": {"source": "synthetic"}}
    if defect == "bad_json":
        return json.dumps(row, ensure_ascii=False)[:-7]
    if defect == "wrong_type":
        row["verbose"] = [verbose]
    if defect == "unknown_domain":
        row["domain"] = "prose"
    return json.dumps(row, ensure_ascii=False)


def chat_line(rng: random.Random) -> str:
    domain = "code" if rng.random() < 0.5 else "nl"
    verbose, compressed = (code_pair if domain == "code" else nl_pair)(rng)
    defect = _defect(rng)
    verbose, compressed = _apply(defect, verbose, compressed, rng)
    if defect == "bad_json":
        return '{"messages": [{"role": "user"'
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Compress:\n" + verbose},
                {"role": "assistant", "content": compressed.strip()}]
    if defect == "wrong_type":
        messages = messages[:1]
    return json.dumps({"messages": messages}, ensure_ascii=False)


def write_raw(path: str | Path, rows: int, domain: str, seed: int = 0) -> Path:
    rng = random.Random(f"{seed}-{domain}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            fh.write(raw_line(rng, domain) + "\n")
    return path


def write_chat(path: str | Path, rows: int, seed: int = 0) -> Path:
    rng = random.Random(f"{seed}-chat-{Path(path).name}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            fh.write(chat_line(rng) + "\n")
    return path
