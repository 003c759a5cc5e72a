"""sanitize: format extraction (every bad_format case), code detection, rules A-D and their order,
kept rows written unchanged, the streaming path against the one-row path and against a plain
reading of the spec (tests/data_oracle.py), the joined token counting, and the command line.

    .venv/bin/python -m pytest tests/test_sanitize.py -q
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

import data_corpus
import data_oracle
from compression_layer.data.jsonl import iter_lines
from compression_layer.data.rules import has_compressed_negation, has_negation, is_code, rule_b, rule_c, rule_d
from compression_layer.data.sanitize import decide, extract, new_stats, sanitize_lines
from compression_layer.tokens import count_tokens

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = {"role": "system", "content": "You are a semantic compression engine."}


def chat(verbose: str, compressed: str) -> str:
    return json.dumps({"messages": [SYSTEM, {"role": "user", "content": "Compress:\n" + verbose},
                                    {"role": "assistant", "content": compressed}]}, ensure_ascii=False)


# ---- format ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record, detail",
    [
        ([1], "not an object"),
        ({"msgs": []}, "no 'messages' key"),
        ({"messages": "hi"}, "no 'messages' list"),
        ({"messages": [{"role": "user", "content": "Compress:\nx"}]}, "expected at least 2 messages, got 1"),
        ({"messages": [SYSTEM, {"role": "assistant", "content": "y"}]}, "no user message"),
        ({"messages": [SYSTEM, {"role": "user", "content": "Summarise:\nx"}, {"role": "assistant", "content": "y"}]},
         "user message without 'Compress:'"),
        ({"messages": [{"role": "user", "content": "Compress:\nx"}, {"role": "user", "content": "x"},
                       {"role": "assistant", "content": "y"}]}, "user message without 'Compress:'"),
        ({"messages": [SYSTEM, {"role": "user", "content": "Compress:\nx"}]}, "no assistant message"),
        ({"messages": [SYSTEM, {"role": "user", "content": "Compress:  \n "}, {"role": "assistant", "content": "y"}]},
         "empty verbose text after 'Compress:'"),
        ({"messages": [SYSTEM, {"role": "user", "content": "Compress:\nx"}, {"role": "assistant", "content": " \n"}]},
         "empty compressed text"),
        ({"messages": [SYSTEM, {"role": "user", "content": "Compress:\nx"}, {"role": "assistant", "content": "y"},
                       {"role": "assistant", "content": ""}]}, "empty compressed text"),  # the later one counts
        ({"messages": [SYSTEM, {"role": "user", "content": None}, {"role": "assistant", "content": "y"}]},
         "user message content is not a string"),
        ({"messages": [SYSTEM, {"role": "user", "content": "Compress:\nx"}, {"role": "assistant", "content": 5}]},
         "assistant message content is not a string"),
        ({"messages": ["junk", {"role": "user", "content": "Compress:\nx"}]}, "no assistant message"),
    ],
)
def test_bad_format(record, detail):
    assert extract(record) == detail
    decision = decide(4, json.dumps(record))
    assert (decision.kept, decision.reason, decision.domain) == (False, "bad_format", "unknown")
    assert decision.record == {"line": 4, "reason": "bad_format", "detail": detail, "record": record}


def test_bad_json_keeps_the_raw_text():
    decision = decide(2, '{"messages": [')
    assert decision.reason == "bad_format" and decision.record["raw"] == '{"messages": ['
    assert decision.record["detail"].startswith("not valid JSON")


def test_extract_takes_the_text_after_the_first_marker_and_the_later_messages():
    record = {"messages": [
        "not an object", {"role": "user", "content": "Compress: old"}, {"role": "assistant", "content": " old "},
        {"role": "user", "content": "Please Compress:\n  a Compress: b \n"}, {"role": "assistant", "content": "\n c \n"}]}
    assert extract(record) == ("a Compress: b", "c")


# ---- code detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("We define a class of problems.", True),  # very strong indicators are plain substrings: "class "
        ("Use IMPORT statements", True),  # ... of the lower-cased text
        ("an int value and a var name", False),  # keywords count once: one signal
        ("self.x = 1 and {a = b}", True),  # keyword + brace body
        ("line\n    a\n    b\n\tc", False),  # three indented lines alone: one signal
        ("x\n    a\n    b\n\tc const y", True),  # indentation + keyword
        ("```python\nx\n``` and let it be", True),  # fence + keyword
        ("```JavaScript\nx y", False),
        ("def\tmain(): pass", False),  # no "def " (tab): the def pattern alone is one signal
        ("def\tmain(): pass\n    a\n    b\n    c", True),  # ... plus indentation
        ("DEF\tmain(x) and let", False),  # the patterns are case-sensitive
        ("handler = function(e) { e; }", True),  # function assignment + brace body with ';'
        ("name: str, age: int", False),  # two annotations alone: one signal
        ("name: str, age: int and bool flags", True),
        ("name: str\nage: int and bool flags", False),  # '.' does not cross lines
        ("{ x = 1 } {y}", False),
        ("{ return\tx } with const y", True),
        ("Totally ordinary prose about rivers.", False),
    ],
)
def test_is_code(text, expected):
    assert is_code(text) is expected
    assert data_oracle.is_code(text) is expected


# ---- rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "compressed, code, failure",
    [
        ("→ a", False, "orphaned symbol at start: '→'"),
        ("@home a", False, "orphaned symbol at start: '@'"),
        ("@property a", True, None),  # a leading @ is fine in code
        ("|a", True, "orphaned symbol at start: '|'"),
        (":a", True, "orphaned symbol at start: ':'"),
        ("a ∵", False, "orphaned symbol at end: '∵'"),
        ("a:", False, None),  # a trailing ':' is fine
        ("a @", False, "orphaned symbol at end: '@'"),
        ("a →| b", False, "consecutive symbols: '→|'"),
        ("std::vector", False, None),  # '::' is fine
        ("a :@ b", False, "consecutive symbols: ':@'"),
        ("a @: b", False, "consecutive symbols: '@:'"),
        ("a:::b", False, None),
        ("a → b | c @ d ∵ e", False, None),
        ("@", True, "orphaned symbol at end: '@'"),
    ],
)
def test_rule_b(compressed, code, failure):
    assert rule_b(compressed, code) == failure
    assert data_oracle.rule_b_fails(compressed, code) is (failure is not None)


@pytest.mark.parametrize(
    "text, verbose_negation, compressed_negation",
    [
        ("It doesn't open", True, True),
        ("It doesn’t open", True, True),
        ("It doesn‘t open", True, True),
        ("It doesnʼt open", True, True),
        ("It doesn`t open", True, True),
        ("It DOESN'T open", True, True),
        ("n't alone", False, False),  # a word ENDING in n't needs letters before
        ("the don'ts list", False, False),  # n't must end the word
        ("Not today", True, True),
        ("no", True, True),
        ("knot, snow, nothingness, Nobody's", True, True),  # "Nobody" before an apostrophe is a whole word
        ("nobodyʼs", False, False),  # U+02BC is a letter: no word boundary (the reference's behaviour)
        ("neither / nor", True, True),
        ("without", True, True),
        ("no\n\tlonger", True, True),
        ("a ¬b", False, True),
        ("!x", False, True),
        ("a != b", False, False),
        ("wow!!", False, False),
        ("end!", False, False),
        ("~a", False, True),
        ("~/path", False, False),
        ("~5 items", False, False),
        ("~", False, True),
        ("knot snowy", False, False),
    ],
)
def test_negation(text, verbose_negation, compressed_negation):
    assert has_negation(text) is verbose_negation
    assert has_compressed_negation(text) is compressed_negation
    assert data_oracle.negation(text, False) is verbose_negation
    assert data_oracle.negation(text, True) is compressed_negation


def test_rule_c():
    assert rule_c("The gate is not locked.", "gate unlocked") == "negation lost"
    assert rule_c("The gate is not locked.", "gate ¬locked") is None
    assert rule_c("The gate is locked.", "gate locked") is None


@pytest.mark.parametrize(
    "verbose, compressed, failure",
    [
        ("The office is located in Lyon.", "office Lyon", "location phrase but no '@'"),
        ("The office is located in Lyon.", "office @ Lyon", None),
        ("A cafe nearby theatres.", "cafe", "location phrase but no '@'"),  # plain substring: "by the"
        ("Prices rose due to demand.", "prices ↑ demand", "causation phrase but no '∵'"),
        ("Prices rose due to demand.", "prices ↑ ∵ demand", None),
        ("THEREFORE it fell, in the city of Rome.", "fell", "location phrase but no '@'"),  # location first
        ("THEREFORE it fell, in the city of Rome.", "fell @ Rome", "causation phrase but no '∵'"),
    ],
)
def test_rule_d(verbose, compressed, failure):
    assert rule_d(verbose, compressed) == failure


def test_rules_apply_in_order_and_c_d_only_to_nl():
    verbose = "The museum, located in the city of Rome, does not open on Monday."
    cases = [
        (verbose, verbose + " and more besides that", "rule_a_expansion"),  # expands AND loses the @
        (verbose, "→ museum Rome closed Mon", "rule_b_orphan_symbol"),
        (verbose, "museum Rome open Mon", "rule_c_lost_negation"),  # C before D
        (verbose, "museum Rome ¬open Mon", "rule_d_missing_symbol"),
        (verbose, "museum @ Rome ¬open Mon", None),
        ("def f(x):\n    return x  # not located in the city of Rome", "fn:f(x)=x", None),  # code: no C or D
        ("def f(x):\n    return x", "@f x", None),
    ]
    for v, c, reason in cases:
        decision = decide(1, chat(v, c))
        assert decision.reason == reason, (v, c)
        assert decision.kept is (reason is None)


def test_rule_a_threshold_is_strict():
    verbose = "alpha beta gamma"
    same = "gamma beta alpha"
    assert count_tokens(same) == count_tokens(verbose)
    assert decide(1, chat(verbose, same)).kept
    longer = decide(1, chat(verbose, same + " delta"))
    assert longer.reason == "rule_a_expansion" and "> 1.0" in longer.record["detail"]


def test_kept_rows_are_written_unchanged(tmp_path):
    line = '{"messages":[{"role":"user","content":"Compress:\\nThe r\\u00e9sum\\u00e9 lists ten jobs."},' \
           '{"role":"assistant","content":"r\\u00e9sum\\u00e9: 10 jobs"}],"extra":1}'
    decision = decide(1, line)
    assert decision.kept and decision.text == line and decision.domain == "nl"


# ---- streaming path == one-row path == a plain reading of the spec ---------------------------

FRAGMENTS = ["def ", "class A:", "function f(", "x = function (", "return ", "lambda", "self.", "const ", "int ",
             "\n    ", "\n\t", "```python", "```", "{", "}", ";", "= ", "a: int", "b : str", ":", "::", "\n", " ",
             "word", "Not", "no", "nor", "nothing", "never", "without", "knot", "can't", "don’t", "isnʼt", "n't",
             "no longer", "¬", "!", "!=", "!!", "~", "~/", "~5", "→", "|", "@", "∵", "located in", "by the",
             "because of", "Therefore", "thus", "é", "İ", "_", "1", "ʼ", "x", "abc", "Compress:"]


def fuzz_lines(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    text = lambda k: "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, k)))  # noqa: E731
    lines = []
    for _ in range(n):
        r = rng.random()
        if r < 0.03:
            lines.append("{" + text(3))
            continue
        messages = [SYSTEM, {"role": "user", "content": rng.choice(["Compress:\n", "Compress:", "compress:"]) + text(30)},
                    {"role": "assistant", "content": text(12)}]
        if r < 0.06:
            messages = messages[:2]
        elif r < 0.08:
            messages.append({"role": "assistant", "content": text(4)})
        elif r < 0.1:
            messages.insert(1, "junk")
        lines.append(json.dumps({"messages": messages}, ensure_ascii=rng.random() < 0.5))
    return lines


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_a_plain_reading_of_the_spec(seed):
    lines = fuzz_lines(seed, 2000) + [data_corpus.chat_line(random.Random(seed * 1000 + i)) for i in range(300)]
    stats = new_stats()
    streamed = list(sanitize_lines(((i, t, True) for i, t in enumerate(lines, 1)), stats))
    assert len(streamed) == len(lines) == stats.rows_in
    reasons = set()
    for number, (text, decision) in enumerate(zip(lines, streamed), start=1):
        assert decision == decide(number, text)
        reason, domain = data_oracle.sanitize_row(text)
        assert (decision.reason, decision.domain if reason != "bad_format" else None) == (reason, domain), text
        reasons.add(reason)
    assert reasons == {None, "bad_format", "rule_a_expansion", "rule_b_orphan_symbol", "rule_c_lost_negation",
                       "rule_d_missing_symbol"}


# ---- command line ----------------------------------------------------------------------------


def run_stage(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages/sanitize.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_one_file(tmp_path):
    src = data_corpus.write_chat(tmp_path / "train.jsonl", 200, seed=5)
    proc = run_stage("--input", str(src), "--sanitized", str(tmp_path / "out/train.jsonl"),
                     "--unsanitized", str(tmp_path / "out/unsanitized_train.jsonl"))
    assert proc.returncode == 0, proc.stderr
    kept = (tmp_path / "out/train.jsonl").read_text().splitlines()
    rejected = [json.loads(x) for x in (tmp_path / "out/unsanitized_train.jsonl").read_text().splitlines()]
    original = src.read_text().splitlines()
    assert len(kept) + len(rejected) == 200 and rejected
    assert set(kept) <= set(original)  # unchanged lines
    assert all({"line", "reason", "detail"} <= set(r) for r in rejected)
    for r in rejected:
        if "raw" in r:
            assert r["raw"] == original[r["line"] - 1]
        else:
            assert r["record"] == json.loads(original[r["line"] - 1])


def test_cli_all_splits_and_stats(tmp_path):
    for name, n in (("train", 120), ("valid", 20), ("test", 25)):
        data_corpus.write_chat(tmp_path / f"split/{name}.jsonl", n, seed=6)
    proc = run_stage("--input-dir", "split", "--output-dir", "training", "--stats", "m.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((tmp_path / "m.json").read_text())
    assert stats["rows_in"] == 165 == stats["kept"] + stats["rejected"]
    for name, n in (("train", 120), ("valid", 20), ("test", 25)):
        kept = len((tmp_path / f"training/{name}.jsonl").read_text().splitlines())
        rejected = len((tmp_path / f"training/unsanitized_{name}.jsonl").read_text().splitlines())
        assert kept + rejected == n == stats["per_split"][name]["rows_in"]
        assert stats["per_split"][name]["kept"] == kept
    assert set(stats["per_domain"]) <= {"nl", "code", "unknown"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input-dir", "split", "--output-dir", "training"], "error: input file not found: split/test.jsonl"),
        (["--input", "nope.jsonl", "--sanitized", "training/a.jsonl", "--unsanitized", "training/b.jsonl"],
         "error: input file not found: nope.jsonl"),
    ],
)
def test_cli_missing_input_fails_with_one_line_and_no_output(tmp_path, args, message):
    for name in ("train", "valid"):  # test.jsonl is missing
        data_corpus.write_chat(tmp_path / f"split/{name}.jsonl", 10)
    proc = run_stage(*args, "--stats", "m.json", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == message and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "training").exists() and not (tmp_path / "m.json").exists()


def test_cli_needs_one_form_of_arguments(tmp_path):
    proc = run_stage("--input", "a.jsonl", "--input-dir", "split", cwd=tmp_path)
    assert proc.returncode == 2 and "give either" in proc.stderr


def test_lines_of_a_real_file_are_numbered_like_the_input(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text("\n" + chat("Not here.", "here") + "\n\n" + chat("Here.", "here") + "\n", encoding="utf-8")
    decisions = list(sanitize_lines(iter_lines(src), new_stats()))
    assert [d.reason for d in decisions] == ["rule_c_lost_negation", None]
    assert decisions[0].record["line"] == 2
