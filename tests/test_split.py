"""split: stratified cuts, the reference's shuffle order, byte-identical reruns, duplicates
collapsed (never in two splits), the chat format, and the stage's command line.

    .venv/bin/python -m pytest tests/test_split.py -q
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from compression_layer.data.chat import SYSTEM_PROMPT
from compression_layer.data.chat import to_chat
from compression_layer.data.split import chat_line, iter_split, new_stats, plan_split, source_paths
from compression_layer.io import dumps
from compression_layer.params import ParamsError, SplitParams, build

ROOT = Path(__file__).resolve().parents[1]


def pair(i: int, domain: str, verbose: str | None = None, **extra) -> dict:
    return {"verbose": verbose or f"{domain} text number {i}", "compressed": f"{domain}#{i}", "domain": domain,
            "language": None, "metadata": {}, "validation": {"passed": True, "char_ratio": 0.5, "token_ratio": 0.5},
            **extra}


def write_validated(folder: Path, nl: list[dict], code: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("nl_pairs.jsonl", nl), ("code_pairs.jsonl", code)):
        (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return folder


def run_split(folder: Path, params: SplitParams) -> tuple[dict[str, list[dict]], dict]:
    stats = new_stats()
    out = {}
    with tempfile.TemporaryFile() as scratch:
        plan = plan_split(source_paths(folder), params, stats, scratch)
        for name in ("train", "valid", "test"):
            out[name] = []
            for line, domain in iter_split(plan, name):
                assert line.endswith(b"\n") and line.count(b"\n") == 1
                out[name].append(json.loads(line))
                stats.keep(domain)
    stats.check()
    return out, stats.as_dict()


def verbose_of(record: dict) -> str:
    return record["messages"][1]["content"].removeprefix("Compress:\n")


def test_stratified_cut_per_domain(tmp_path):
    folder = write_validated(tmp_path, [pair(i, "nl") for i in range(23)], [pair(i, "code") for i in range(17)]
                             + [pair(i, "mixed") for i in range(9)])
    splits, stats = run_split(folder, SplitParams())
    per = {name: {d: sum(r["messages"][2]["content"].startswith(d + "#") for r in rows) for d in ("nl", "code", "mixed")}
           for name, rows in splits.items()}
    # n_train = floor(n * 0.8), n_valid = floor(n * 0.1), the rest is test; every domain is kept.
    assert per["train"] == {"nl": 18, "code": 13, "mixed": 7}
    assert per["valid"] == {"nl": 2, "code": 1, "mixed": 0}
    assert per["test"] == {"nl": 3, "code": 3, "mixed": 2}
    assert stats["rows_in"] == stats["kept"] == 49 and stats["duplicates_collapsed"] == 0


def test_same_assignment_as_the_reference_procedure(tmp_path):
    nl, code = [pair(i, "nl") for i in range(31)], [pair(i, "code") for i in range(29)]
    folder = write_validated(tmp_path, nl, code)
    splits, _ = run_split(folder, SplitParams(0.7, 0.2, 0.1, seed=7))
    # The reference: one random.Random(seed); shuffle NL, shuffle code, cut each, concatenate, shuffle each split.
    rng = random.Random(7)
    rng.shuffle(nl)
    rng.shuffle(code)
    cut = lambda rows: (rows[: int(len(rows) * 0.7)], rows[int(len(rows) * 0.7): int(len(rows) * 0.7) + int(len(rows) * 0.2)],  # noqa: E731
                        rows[int(len(rows) * 0.7) + int(len(rows) * 0.2):])
    expected = [a + b for a, b in zip(cut(nl), cut(code))]
    for rows in expected:
        rng.shuffle(rows)
    for name, rows in zip(("train", "valid", "test"), expected):
        assert [verbose_of(r) for r in splits[name]] == [p["verbose"] for p in rows]


def test_chat_record_format(tmp_path):
    folder = write_validated(tmp_path, [pair(0, "nl", verbose="Zürich → Genève: “quoted”")], [])
    splits, _ = run_split(folder, SplitParams(1.0, 0.0, 0.0))
    (record,) = splits["train"]
    assert record == {"messages": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Compress:\nZürich → Genève: “quoted”"},
        {"role": "assistant", "content": "nl#0"},
    ]}
    assert SYSTEM_PROMPT.startswith("You are a semantic compression engine.") and SYSTEM_PROMPT.endswith(
        "symbols (→ | + @). Never lose information.")


def test_chat_lines_are_dumps_of_the_chat_record():
    rng = random.Random(3)
    alphabet = ['"', "\\", "\n", "\t", "\x01", "\x7f", "é", "→", "😀", "\u2028", "/", "a", " ", "\ue000"]
    for _ in range(500):
        verbose, compressed = ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2))
        assert chat_line(verbose, compressed) == (dumps(to_chat(verbose, compressed)) + "\n").encode("utf-8")
    assert json.loads(chat_line("a\ud800", "b")) == to_chat("a\ud800", "b")  # lone surrogate: escaped, same value


def test_duplicates_are_collapsed_to_the_first_occurrence(tmp_path):
    nl = [pair(i, "nl") for i in range(40)] + [pair(99, "nl", verbose="nl text number 3"),   # same text, later
                                               pair(98, "nl", verbose="shared text")]
    code = [pair(i, "code") for i in range(40)] + [pair(97, "code", verbose="shared text"),  # across files and domains
                                                   pair(96, "code", verbose="code text number 5")]
    folder = write_validated(tmp_path, nl, code)
    splits, stats = run_split(folder, SplitParams(0.5, 0.25, 0.25))
    seen: dict[str, str] = {}
    for name, rows in splits.items():
        for record in rows:
            text = verbose_of(record)
            assert text not in seen, f"{text!r} in {seen.get(text)} and {name}"
            seen[text] = name
    assert len(seen) == 81 and stats["duplicates_collapsed"] == 3
    assert stats["per_domain"]["nl"]["collapsed"] == 1 and stats["per_domain"]["code"]["collapsed"] == 2
    assert stats["rows_in"] == stats["kept"] + stats["duplicates_collapsed"] + stats["rejected"] == 84
    compressed = {verbose_of(r): r["messages"][2]["content"] for rows in splits.values() for r in rows}
    assert compressed["nl text number 3"] == "nl#3" and compressed["shared text"] == "nl#98"  # the first one wins


def test_rows_marked_not_passed_are_skipped_and_counted(tmp_path):
    rows = [pair(i, "nl") for i in range(10)]
    rows[4]["validation"]["passed"] = False
    folder = write_validated(tmp_path, rows, [])
    splits, stats = run_split(folder, SplitParams())
    assert sum(len(r) for r in splits.values()) == 9
    assert stats["rejected_by_reason"] == {"validation_failed": 1}


def test_ratios_must_sum_to_one():
    with pytest.raises(ParamsError, match="split ratios must sum to 1"):
        build(SplitParams, {"train_ratio": 0.8, "valid_ratio": 0.1, "test_ratio": 0.2}, "split")
    build(SplitParams, {"train_ratio": 0.7, "valid_ratio": 0.2, "test_ratio": 0.1}, "split")  # 0.9999999999999999


# ---- command line ----------------------------------------------------------------------------


def run_stage(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages/split.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


RUNBOOK = ["--train-ratio", "0.8", "--valid-ratio", "0.1", "--test-ratio", "0.1", "--seed", "42"]


def test_cli_is_deterministic_byte_for_byte(tmp_path):
    rng = random.Random(0)
    nl = [pair(i, "nl", verbose=f"nl {rng.random()}") for i in range(300)]
    code = [pair(i, "code", verbose=f"code {rng.random()}") for i in range(200)] + [pair(1, "code", verbose=nl[0]["verbose"])]
    folder = write_validated(tmp_path / "validated", nl, code)
    outputs = []
    for run in ("a", "b"):
        proc = run_stage("--input", str(folder), "--output", str(tmp_path / run), *RUNBOOK,
                         "--stats", str(tmp_path / f"{run}.json"))
        assert proc.returncode == 0, proc.stderr
        outputs.append({name: (tmp_path / run / f"{name}.jsonl").read_bytes() for name in ("train", "valid", "test")})
    assert outputs[0] == outputs[1]
    stats = json.loads((tmp_path / "a.json").read_text())
    assert stats["duplicates_collapsed"] == 1 and stats["splits"]["train"]["rows"] == 240 + 160
    assert "duplicates collapsed" in proc.stdout
    other = run_stage("--input", str(folder), "--output", str(tmp_path / "c"), *RUNBOOK[:-1], "43")
    assert (tmp_path / "c/train.jsonl").read_bytes() != outputs[0]["train"], other.stderr


def test_cli_ratios_and_seed_default_to_params_yaml(tmp_path):
    folder = write_validated(tmp_path / "validated", [pair(i, "nl") for i in range(20)], [])
    (tmp_path / "params.yaml").write_text("split:\n  train_ratio: 0.5\n  valid_ratio: 0.25\n  test_ratio: 0.25\n  seed: 1\n")
    proc = run_stage("--input", "validated", "--output", "out", "--stats", "m.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "m.json").read_text())["splits"]["train"]["rows"] == 10


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "nowhere", *RUNBOOK], "error: input directory not found: nowhere"),
        (["--input", "validated", "--train-ratio", "0.8", "--valid-ratio", "0.1", "--test-ratio", "0.2", "--seed", "1"],
         "error: split ratios must sum to 1, got 0.8 + 0.1 + 0.2 = 1.1"),
        (["--input", "validated", "--train-ratio", "1.2", "--valid-ratio", "-0.1", "--test-ratio", "-0.1", "--seed", "1"],
         "error: split ratios must be >= 0, got (1.2, -0.1, -0.1)"),
        (["--input", "broken", *RUNBOOK], "error: broken/nl_pairs.jsonl:2: not valid JSON"),
        (["--input", "empty", *RUNBOOK], "error: no nl_pairs.jsonl or code_pairs.jsonl in empty"),
    ],
)
def test_cli_bad_input_fails_with_one_line_and_no_output(tmp_path, args, message):
    write_validated(tmp_path / "validated", [pair(i, "nl") for i in range(5)], [])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/nl_pairs.jsonl").write_text(json.dumps(pair(0, "nl")) + "\n{oops\n")
    (tmp_path / "empty").mkdir()
    proc = run_stage(*args, "--output", "out", "--stats", "m.json", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == message and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()
