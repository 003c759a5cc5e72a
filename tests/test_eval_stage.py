"""stages/evaluate.py end to end on the tiny model with a LoRA adapter: files, metrics, --resume, errors.

Run: pytest tests/test_eval_stage.py   (about half a minute: each run is a fresh process)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from eval_support import eval_adapter, eval_base_model, write_test_split  # noqa: F401
from repo_utils import ROOT, run

from compression_layer.io import iter_jsonl
from compression_layer.tokens import count_tokens

STAGE = [str(ROOT / ".venv/bin/python"), str(ROOT / "stages/evaluate.py")]
ROWS = 8


def evaluate(tmp_path: Path, model: Path, adapter: Path, *args: str, check: bool = True):
    cmd = STAGE + ["--params", str(ROOT / "params.yaml"), "--model", str(model), "--adapter-path", str(adapter),
                   "--test", str(tmp_path / "test.jsonl"), "--output", str(tmp_path / "out/predictions.jsonl"),
                   "--max-tokens", "16", *args]  # fmt: skip
    return run(cmd, cwd=tmp_path, check=check, timeout=300)


@pytest.fixture()
def split(tmp_path):
    return write_test_split(tmp_path / "test.jsonl", ROWS)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, eval_base_model, eval_adapter):
    """One batched run over all rows, shared by the tests that only read its files."""
    tmp = tmp_path_factory.mktemp("eval-full")
    write_test_split(tmp / "test.jsonl", ROWS)
    proc = evaluate(tmp, eval_base_model, eval_adapter, "--limit", "0", "--batch-size", "4")
    rows = list(iter_jsonl(tmp / "out/predictions.jsonl"))
    metrics = json.loads((tmp / "out/predictions.metrics.json").read_text())
    return proc, rows, metrics


def test_predictions_have_the_reference_fields_in_row_order(full_run):
    _, rows, _ = full_run
    assert [r["row"] for r in rows] == list(range(ROWS))
    for r in rows:
        for key in ("input_text", "expected_output", "generated_output", "input_tokens", "output_tokens", "token_ratio",
                    "domain", "expected_tokens", "char_ratio", "numbers_kept", "chrf", "unfinished"):  # fmt: skip
            assert key in r
        assert r["input_tokens"] == count_tokens(r["input_text"])
        assert r["output_tokens"] == count_tokens(r["generated_output"])
        assert r["token_ratio"] == pytest.approx(r["output_tokens"] / r["input_tokens"])
        assert r["unfinished"] == (r["finish_reason"] == "length")
    # domains from the sanitize stage's detector: 5 NL texts then 3 code texts, cycling
    assert [r["domain"] for r in rows] == ["nl"] * 5 + ["code"] * 3
    assert all(r["identifiers_total"] is not None for r in rows if r["domain"] == "code")


def test_metrics_summarise_the_predictions_and_the_baselines(full_run):
    proc, rows, metrics = full_run
    assert metrics["rows"] == ROWS
    pooled = sum(r["output_tokens"] for r in rows) / sum(r["input_tokens"] for r in rows)
    assert metrics["token_ratio"]["pooled"] == pytest.approx(pooled)
    assert set(metrics["by_domain"]) == {"nl", "code"}
    assert metrics["by_domain"]["code"]["rows"] == 3
    assert metrics["degenerate"]["unfinished"] == sum(r["unfinished"] for r in rows)
    assert metrics["test_loss"] > 0 and metrics["test_loss_rows"] == ROWS
    assert metrics["throughput"]["rows"] == ROWS and metrics["throughput"]["generated_tokens_per_sec"] > 0
    identity = metrics["baselines"]["identity"]
    assert identity["token_ratio"]["pooled"] == 1.0 and identity["numbers_kept"] == 1.0
    for name in ("truncate", "extractive"):  # at (about) the adapter's ratio, never above the input
        assert metrics["baselines"][name]["token_ratio"]["pooled"] <= 1.0
    assert metrics["settings"]["adapter"]["kind"] == "last"  # the fixture adapter has no best file
    assert "adapter" in proc.stdout and "extractive" in proc.stdout  # the summary table


def test_resume_generates_only_the_missing_rows(tmp_path, split, eval_base_model, eval_adapter, full_run):
    evaluate(tmp_path, eval_base_model, eval_adapter, "--limit", "3", "--batch-size", "2")
    out = tmp_path / "out/predictions.jsonl"
    first = list(iter_jsonl(out))
    assert [r["row"] for r in first] == [0, 1, 2]
    # mark the saved rows: a resumed run must keep them as they are, not generate them again
    marked = [{**r, "generated_output": f"KEPT {r['row']}"} for r in first]
    out.write_text("".join(json.dumps(r) + "\n" for r in marked) + '{"row": 3, "input_te')  # torn last line
    proc = evaluate(tmp_path, eval_base_model, eval_adapter, "--limit", "6", "--batch-size", "2", "--resume")
    assert "resuming: 3 of 6 rows" in proc.stderr
    rows = list(iter_jsonl(out))
    assert [r["row"] for r in rows] == list(range(6))
    assert [r["generated_output"] for r in rows[:3]] == ["KEPT 0", "KEPT 1", "KEPT 2"]
    # the new rows are what an uninterrupted run generates (greedy)
    assert [r["generated_output"] for r in rows[3:]] == [r["generated_output"] for r in full_run[1][3:6]]
    metrics = json.loads((tmp_path / "out/predictions.metrics.json").read_text())
    assert metrics["rows"] == 6 and metrics["settings"]["resumed_rows"] == 3
    assert metrics["throughput"]["rows"] == 3

    # nothing left to do: no row is generated, metrics are still written
    proc = evaluate(tmp_path, eval_base_model, eval_adapter, "--limit", "6", "--resume")
    assert "resuming: 6 of 6 rows" in proc.stderr
    assert json.loads((tmp_path / "out/predictions.metrics.json").read_text())["throughput"]["rows"] == 0


def test_resume_refuses_predictions_of_other_test_rows(tmp_path, split, eval_base_model, eval_adapter):
    evaluate(tmp_path, eval_base_model, eval_adapter, "--limit", "2")
    split[0]["messages"][1]["content"] = "Compress:\nsomething else entirely"
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split))
    proc = evaluate(tmp_path, eval_base_model, eval_adapter, "--limit", "4", "--resume", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "does not match the test split" in proc.stderr and "Traceback" not in proc.stderr


def test_one_line_errors(tmp_path, split, eval_base_model, eval_adapter):
    missing_adapter = evaluate(tmp_path, eval_base_model, tmp_path / "no-adapter", check=False)
    assert missing_adapter.returncode == 1 and "error: no adapter at" in missing_adapter.stderr
    (tmp_path / "test.jsonl").write_text("not json\n")
    bad_split = evaluate(tmp_path, eval_base_model, eval_adapter, check=False)
    assert bad_split.returncode == 1 and "test.jsonl:1: not valid JSON" in bad_split.stderr
    for proc in (missing_adapter, bad_split):
        assert "Traceback" not in proc.stderr


def test_best_adapter_file_is_used_when_present(tmp_path, split, eval_base_model, eval_adapter):
    adapter = tmp_path / "adapter"
    shutil.copytree(eval_adapter, adapter)
    shutil.copy(adapter / "adapters.safetensors", adapter / "best_adapters.safetensors")
    evaluate(tmp_path, eval_base_model, adapter, "--limit", "1")
    metrics = json.loads((tmp_path / "out/predictions.metrics.json").read_text())
    assert metrics["settings"]["adapter"]["kind"] == "best"
    evaluate(tmp_path, eval_base_model, adapter, "--limit", "1", "--adapter", "last")
    metrics = json.loads((tmp_path / "out/predictions.metrics.json").read_text())
    assert metrics["settings"]["adapter"]["kind"] == "last"
