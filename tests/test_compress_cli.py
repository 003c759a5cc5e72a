"""The `compression-layer compress` command: the evaluate stage's outputs for the same rows, text from
arguments, files, stdin and JSONL, --stats, and one-line errors.

Run: pytest tests/test_compress_cli.py   (about a minute: each call is a fresh process)
"""

from __future__ import annotations

import json

import pytest
from compress_support import TEXTS, adapter_copy, cli, one_line_error, q8_model  # noqa: F401
from eval_support import eval_adapter, eval_base_model, write_test_split  # noqa: F401
from repo_utils import ROOT, run

from compression_layer.compress import Compressor
from compression_layer.io import iter_jsonl
from compression_layer.tokens import count_tokens

MAX_TOKENS = 16


@pytest.fixture(scope="module")
def compressor(eval_base_model, eval_adapter):
    return Compressor.load(eval_adapter, max_tokens=MAX_TOKENS)


def test_jsonl_of_the_test_split_gives_the_evaluate_stage_predictions(tmp_path, eval_base_model, eval_adapter):
    write_test_split(tmp_path / "test.jsonl", 8)
    run([str(ROOT / ".venv/bin/python"), str(ROOT / "stages/evaluate.py"), "--params", str(ROOT / "params.yaml"),
         "--model", str(eval_base_model), "--adapter-path", str(eval_adapter), "--test", "test.jsonl",
         "--output", "eval.jsonl", "--limit", "0", "--batch-size", "4", "--max-tokens", str(MAX_TOKENS)],
        cwd=tmp_path, timeout=300)  # fmt: skip
    predictions = list(iter_jsonl(tmp_path / "eval.jsonl"))

    cli("compress", "--jsonl", "test.jsonl", "--output", "out.jsonl", "--adapter", eval_adapter,
        "--max-tokens", MAX_TOKENS, "--batch-size", 3, "--stats", cwd=tmp_path)  # fmt: skip
    rows = list(iter_jsonl(tmp_path / "out.jsonl"))
    assert len(rows) == len(predictions) == 8
    for row, pred in zip(rows, predictions):
        assert "messages" in row  # the input row, plus the compression
        assert row["compressed"] == pred["generated_output"]
        assert row["input_tokens"] == pred["input_tokens"] and row["output_tokens"] == pred["output_tokens"]
        assert row["token_ratio"] == pytest.approx(pred["token_ratio"])
        assert row["finish_reason"] == pred["finish_reason"] and row["truncated"] is False
        assert row["model_tokens"] == pred["generated_model_tokens"]
    assert len({r["compressed"] for r in rows}) > 1


def test_text_arguments_stdin_and_files_match_the_api(tmp_path, eval_adapter, compressor):
    common = ("--adapter", eval_adapter, "--max-tokens", MAX_TOKENS)
    words = TEXTS[0].split(" ")
    proc = cli("compress", *common, *words, cwd=tmp_path)  # arguments are joined into one text
    assert proc.stdout == compressor.compress(TEXTS[0]) + "\n"

    proc = cli("compress", *common, "--stats", cwd=tmp_path, stdin=TEXTS[5] + "\n")
    result = compressor.compress(TEXTS[5], stats=True)
    assert proc.stdout == result.text + "\n"
    assert f"tokens {count_tokens(TEXTS[5])} -> {result.output_tokens}, ratio {result.token_ratio:.3f}" in proc.stderr

    (tmp_path / "a.txt").write_text(TEXTS[1])
    (tmp_path / "b.py").write_text(TEXTS[6])
    proc = cli("compress", *common, "-f", "a.txt", "-f", "b.py", "--output", "out.txt", cwd=tmp_path)
    a, b = compressor.compress_many([TEXTS[1], TEXTS[6]])
    assert proc.stdout == ""
    assert (tmp_path / "out.txt").read_text() == f"==> a.txt <==\n{a}\n\n==> b.py <==\n{b}\n"


def test_jsonl_rows_with_text_or_verbose_fields(tmp_path, eval_adapter, compressor):
    rows = [{"id": 1, "text": TEXTS[2]}, {"id": 2, "verbose": TEXTS[7], "compressed": "old"}, {"text": "  "}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    proc = cli("compress", "--jsonl", "-", "--adapter", eval_adapter, "--max-tokens", MAX_TOKENS,
               cwd=tmp_path, stdin=(tmp_path / "in.jsonl").read_text())  # fmt: skip
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = compressor.compress_many([TEXTS[2], TEXTS[7], ""])
    assert out == [{**r, "compressed": e} for r, e in zip(rows, expected)]  # no stats unless asked


def test_errors_are_one_line_and_exit_1(tmp_path, eval_base_model, eval_adapter, q8_model, compressor):
    line = one_line_error(cli("compress", "x", cwd=tmp_path, check=False))  # no default adapter here
    assert "no adapter at models/runs/mlx/latest/adapter" in line and "--adapter" in line
    line = one_line_error(cli("compress", "x", "--adapter", eval_adapter, "--model", q8_model, cwd=tmp_path, check=False))
    assert "was trained on base model" in line

    limit = len(compressor.prompts([""])[0][0]) + 8  # room for "ok", not for TEXTS[0]
    short = adapter_copy(eval_adapter, tmp_path / "short", max_seq_length=limit)
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "ok"}) + "\n\n" + json.dumps({"text": TEXTS[0]}) + "\n")
    line = one_line_error(cli("compress", "--jsonl", "in.jsonl", "--adapter", short, cwd=tmp_path, check=False))
    assert line.startswith("error: in.jsonl:3: input 2 of 2 is") and "--truncate" in line
    assert not (tmp_path / "out.jsonl").exists()

    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"body": "b"}\n')
    line = one_line_error(cli("compress", "--jsonl", "bad.jsonl", "--adapter", eval_adapter, cwd=tmp_path, check=False))
    assert "bad.jsonl:2: expected an object with a string 'text' or 'verbose' field" in line
    line = one_line_error(cli("compress", "-f", "missing.txt", "--adapter", eval_adapter, cwd=tmp_path, check=False))
    assert "cannot read missing.txt" in line
    line = one_line_error(cli("compress", "x", "--jsonl", "bad.jsonl", cwd=tmp_path, check=False))
    assert "either --jsonl or text" in line


def test_truncate_flag_compresses_the_head_that_fits(tmp_path, eval_adapter, compressor):
    limit = len(compressor.prompts([""])[0][0]) + 10
    short = adapter_copy(eval_adapter, tmp_path / "short", max_seq_length=limit)
    proc = cli("compress", "--adapter", short, "--max-tokens", MAX_TOKENS, "--truncate", "--stats", TEXTS[0], cwd=tmp_path)
    c = Compressor.load(short, max_tokens=MAX_TOKENS, truncate=True)
    (_, head, _), = c.prompts([TEXTS[0]])
    assert proc.stdout == compressor.compress(head) + "\n"
    assert "(input truncated)" in proc.stderr
