"""preprocess: cleaning, every reject reason in its order, the kept/rejected row formats, the
accounting invariant, the streaming path against the one-row path and against a plain reading of
the spec (tests/data_oracle.py), and the stage's command line.

    .venv/bin/python -m pytest tests/test_preprocess.py -q
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
from compression_layer.data.clean import clean_compressed
from compression_layer.data.jsonl import iter_lines
from compression_layer.data.preprocess import decide, new_stats, preprocess_lines
from compression_layer.data.stats import AccountingError, StageStats
from compression_layer.params import PreprocessParams
from compression_layer.tokens import count_tokens

ROOT = Path(__file__).resolve().parents[1]
NL = PreprocessParams(0.95, 0.95)
LOOSE = PreprocessParams(10.0, 10.0)


def row(verbose="The harbour of the old town is closed to ships in winter.", compressed="harbour closed winter",
        domain="nl", **extra) -> str:
    return json.dumps({"verbose": verbose, "compressed": compressed, "domain": domain, **extra}, ensure_ascii=False)


# ---- cleaning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("<think>plan</think>answer", "plananswer"),  # tags go, the text between them stays
        ("<THINK>a</Think> b <tool_call>c</TOOL_CALL>", "a b c"),
        ("<thinking>x</thinking>", "<thinking>x</thinking>"),  # not one of the four tags
        ("```\nfn:f(x)\n```", "fn:f(x)"),
        ("```python\nx\n   ```   ", "x"),
        ("```c-sharp_2\nx", "x"),
        ("``` python\nx", "``` python\nx"),  # a space: not a bare fence line
        ("```c++\nx", "```c++\nx"),
        ("````\nx", "````\nx"),
        ("```pythön\nx", "```pythön\nx"),  # language words are ASCII letters, digits, _ and -
        ("a ```python b", "a ```python b"),  # a fence inside a line stays
        ("a\n\n\nb\n\n\n\n\nc", "a\n\nb\n\nc"),
        ("a\n\nb", "a\n\nb"),
        ("a\r\nb\rc", "a\nb\nc"),  # lines are re-joined with \n
        ("a\u2028b", "a\nb"),
        ("  \n <think></think> \n x \n", "x"),
        ("a\n```\n\n```\nb", "a\n\nb"),  # fences dropped, then blank runs collapsed
        ("a\n \n \n \nb", "a\n \n \n \nb"),  # whitespace-only lines are not blank-line runs
        ("<think></think>\n```\n```", ""),
    ],
)
def test_clean_compressed(raw, cleaned):
    assert clean_compressed(raw) == cleaned


# ---- every reason, in order ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"verbose": "a", ', "invalid_json"),
        ("NaN-is-not-a-row", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('"just a string"', "not_an_object"),
        ("null", "not_an_object"),
        (json.dumps({"compressed": "x", "domain": "nl"}), "invalid_text_fields"),
        (json.dumps({"verbose": "abc", "compressed": 3, "domain": "nl"}), "invalid_text_fields"),
        (json.dumps({"verbose": ["abc"], "compressed": "x", "domain": "bogus"}), "invalid_text_fields"),  # 3 before 4
        (row(domain="prose"), "invalid_domain"),
        (row(domain=None), "invalid_domain"),
        (json.dumps({"verbose": "abc", "compressed": "x"}), "invalid_domain"),
        (row(domain=["nl"]), "invalid_domain"),
        (row(verbose="  \n\t "), "empty_text"),
        (row(compressed="<think></think>\n```json\n```"), "empty_text"),
        (row(domain="bogus", verbose=""), "invalid_domain"),  # 4 before 5
        (row(verbose="short", compressed="much longer than the original"), "char_ratio"),
    ],
)
def test_each_reason(text, reason):
    decision = decide(7, text, LOOSE if reason != "char_ratio" else NL)
    assert (decision.kept, decision.reason) == (False, reason)
    assert decision.record["line"] == 7 and decision.record["reason"] == reason and decision.record["detail"]


def test_char_ratio_rejects_at_the_threshold_and_keeps_below():
    verbose, compressed = "abcdefghij", "abcde"  # 5 / 10 characters
    assert decide(1, row(verbose, compressed), PreprocessParams(0.5, 10.0)).reason == "char_ratio"
    assert decide(1, row(verbose, compressed), PreprocessParams(0.51, 10.0)).kept


def test_token_ratio_rejects_above_the_threshold_only():
    verbose = "The committee postponed the vote until the audit of the accounts was complete."
    compressed = "committee postponed vote until audit done"
    ratio = count_tokens(compressed) / count_tokens(verbose)
    assert decide(1, row(verbose, compressed), PreprocessParams(10.0, ratio)).kept  # equal: kept
    rejected = decide(1, row(verbose, compressed), PreprocessParams(10.0, ratio - 1e-9))
    assert rejected.reason == "token_ratio"


def test_char_ratio_is_checked_before_token_ratio():
    verbose, compressed = "aaaa aaaa", "b b b b b"  # more tokens AND more characters
    assert decide(1, row(verbose, compressed), PreprocessParams(0.5, 0.5)).reason == "char_ratio"


def test_ratios_use_the_cleaned_texts():
    text = row(verbose="   " + "word " * 20 + "  ", compressed="<think>" + "x" * 500 + "</think>")
    decision = decide(1, text, NL)
    assert decision.reason == "char_ratio"  # the text between the tags stays
    kept = decide(1, row(verbose="\n  alpha beta gamma delta  \n", compressed="```\nalpha\n```"), NL)
    assert kept.kept and kept.record["verbose"] == "alpha beta gamma delta" and kept.record["compressed"] == "alpha"
    assert kept.record["validation"]["char_ratio"] == round(5 / 22, 4)


# ---- output formats --------------------------------------------------------------------------


def test_kept_row_format():
    d = decide(3, row(language="python", metadata={"source": "gh"}, extra="dropped"), NL)
    assert d.kept and list(d.record) == ["verbose", "compressed", "domain", "language", "metadata", "validation"]
    assert d.record["language"] == "python" and d.record["metadata"] == {"source": "gh"}
    v = d.record["validation"]
    assert v["passed"] is True and list(v) == ["passed", "char_ratio", "token_ratio"]
    assert v["token_ratio"] == round(count_tokens("harbour closed winter")
                                     / count_tokens("The harbour of the old town is closed to ships in winter."), 4)
    plain = decide(3, row(metadata=["not", "an", "object"]), NL)
    assert plain.record["language"] is None and plain.record["metadata"] == {}


def test_rejected_rows_keep_the_original(tmp_path):
    src = tmp_path / "raw.jsonl"
    src.write_bytes(
        b"\n"  # blank lines are skipped but still numbered
        + row(domain="prose").encode() + b"\r\n"
        + b"{not json\n"
        + b"   \n"
        + b"[1]\r"  # a lone CR ends a line too
        + row().encode() + b"\n"
        + b'{"verbose": "\xff\xfe", "compressed": "x", "domain": "nl"}\n'  # not UTF-8: a reason, not a crash
    )
    stats = new_stats()
    decisions = list(preprocess_lines(iter_lines(src), NL, stats))
    assert [(d.kept, d.reason) for d in decisions] == [
        (False, "invalid_domain"), (False, "invalid_json"), (False, "not_an_object"), (True, None), (False, "invalid_json")]
    records = [d.record for d in decisions if not d.kept]
    assert [r["line"] for r in records] == [2, 3, 5, 7]
    assert records[0]["record"] == json.loads(row(domain="prose"))
    assert records[1]["raw"] == "{not json" and "record" not in records[1]
    assert records[2]["record"] == [1]
    assert records[3]["raw"].startswith('{"verbose": "\ufffd')
    assert stats.rows_in == 5


# ---- streaming path == one-row path == a plain reading of the spec ---------------------------

FRAGMENTS = ["<think>", "</Think>", "<tool_call>", "```", "```py", "\n", "\n\n\n\n", "\r\n", " ", "\t", "\u2028",
             "word", "The", "→", "|", "@", "∵", ":", "é", "日本", "12345", "'s", "x" * 40, "   "]


def fuzz_lines(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        text = lambda k: "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, k)))  # noqa: E731
        r = rng.random()
        if r < 0.03:
            lines.append(text(5) + "{")
        elif r < 0.05:
            lines.append(json.dumps([text(3)]))
        else:
            value = {"verbose": text(30), "compressed": text(14), "domain": rng.choice(["nl", "code", "mixed", "x"])}
            if r < 0.08:
                value["compressed"] = None
            lines.append(json.dumps(value, ensure_ascii=rng.random() < 0.5))
    return lines


@pytest.mark.parametrize("seed", [1, 2])
def test_matches_a_plain_reading_of_the_spec(seed):
    lines = fuzz_lines(seed, 1500)
    lines += [data_corpus.raw_line(random.Random(seed + i), random.choice(["nl", "code"])) for i in range(300)]
    for params in (NL, PreprocessParams(1.0, 1.0)):
        stats = new_stats()
        streamed = list(preprocess_lines(((i, t, True) for i, t in enumerate(lines, 1)), params, stats))
        assert len(streamed) == len(lines) == stats.rows_in
        for number, (text, decision) in enumerate(zip(lines, streamed), start=1):
            assert decision == decide(number, text, params)
            reason, record = data_oracle.preprocess_row(text, params.max_char_ratio, params.max_token_ratio)
            assert decision.reason == reason, text
            if record is not None:
                assert decision.record == record


# ---- accounting ------------------------------------------------------------------------------


def test_stats_count_every_row_and_catch_a_lost_one():
    stats = new_stats()
    lines = [(i, t, True) for i, t in enumerate(fuzz_lines(5, 200), 1)]
    for d in preprocess_lines(lines, NL, stats):
        stats.keep(d.domain) if d.kept else stats.reject(d.reason, d.domain)
    stats.check()
    out = stats.as_dict()
    assert out["rows_in"] == 200 == out["kept"] + out["rejected"]
    assert sum(out["rejected_by_reason"].values()) == out["rejected"]
    assert sum(d["rows"] for d in out["per_domain"].values()) == 200
    stats.rows_in += 1  # a row read but never written
    with pytest.raises(AccountingError, match="!= 201 rows in"):
        stats.check()


def test_stats_reject_unknown_reasons():
    with pytest.raises(KeyError):
        StageStats("x", ["a"]).reject("b", "nl")


# ---- command line ----------------------------------------------------------------------------


def run_stage(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages/preprocess.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_runbook_flags(tmp_path):
    src = data_corpus.write_raw(tmp_path / "nl_v2.jsonl", 150, "nl", seed=3)
    out, rej, stats = tmp_path / "v/nl_pairs.jsonl", tmp_path / "v/rejected_nl_pairs.jsonl", tmp_path / "m.json"
    proc = run_stage("--input", str(src), "--output", str(out), "--rejected", str(rej),
                     "--max-char-ratio", "0.95", "--max-token-ratio", "0.95", "--stats", str(stats))
    assert proc.returncode == 0, proc.stderr
    assert "rows in" in proc.stdout and "kept" in proc.stdout
    metrics = json.loads(stats.read_text())
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    rejected = [json.loads(x) for x in rej.read_text().splitlines()]
    assert metrics["rows_in"] == 150 == len(kept) + len(rejected)
    assert metrics["kept"] == len(kept) and metrics["thresholds"] == {"max_char_ratio": 0.95, "max_token_ratio": 0.95}
    assert all(r["validation"]["char_ratio"] < 0.95 and r["validation"]["token_ratio"] <= 0.95 for r in kept)
    assert {r["reason"] for r in rejected} <= set(metrics["rejected_by_reason"])
    assert not list(tmp_path.glob("v/.*.tmp"))


def test_cli_thresholds_default_to_params_yaml(tmp_path):
    src = data_corpus.write_raw(tmp_path / "code_v2.jsonl", 60, "code", seed=4)
    (tmp_path / "params.yaml").write_text("preprocess_code:\n  max_char_ratio: 0.3\n  max_token_ratio: 1.0\n")
    proc = run_stage("--input", str(src), "--output", "o.jsonl", "--rejected", "r.jsonl", "--stats", "m.json",
                     "--section", "preprocess_code", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "m.json").read_text())["thresholds"] == {"max_char_ratio": 0.3, "max_token_ratio": 1.0}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "missing.jsonl"], "error: input file not found: missing.jsonl"),
        (["--input", "raw.jsonl", "--max-char-ratio", "0"], "error: max_char_ratio must be > 0, got 0.0"),
        (["--input", "raw.jsonl", "--max-token-ratio", "-1"], "error: max_token_ratio must be > 0, got -1.0"),
    ],
)
def test_cli_bad_input_fails_with_one_line_and_no_output(tmp_path, args, message):
    (tmp_path / "raw.jsonl").write_text(row() + "\n")
    proc = run_stage(*args, "--output", "out/kept.jsonl", "--rejected", "out/rejected.jsonl", "--stats", "out/m.json",
                     *([] if "--max-char-ratio" in args else ["--max-char-ratio", "0.95"]),
                     *([] if "--max-token-ratio" in args else ["--max-token-ratio", "0.95"]), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == message and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
