"""Train stage outputs: the run dir layout, metrics, logs, and an adapter that mlx-lm loads and fuses.

    .venv/bin/python -m pytest -q tests/test_train_outputs.py

Each training run is a few iterations of the tiny model (about a second).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.tuner.callbacks import TrainingCallback
from train_support import make_data, quick_train

from compression_layer.train.callbacks import TRAIN_COLUMNS, VAL_COLUMNS
from compression_layer.train.errors import TrainError


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def finished(tiny_model_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train_outputs")
    return quick_train(tiny_model_path, tmp), tmp


def test_run_dir_layout_and_history(finished):
    result, tmp = finished
    run = tmp / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "adapter", "history", "loss_curve.png", "run.json", "train.err", "train.log"]
    assert sorted(p.name for p in (run / "adapter").iterdir()) == [
        "0000002_adapters.safetensors", "0000004_adapters.safetensors", "adapter_config.json", "adapters.safetensors",
        "best_adapters.safetensors"]
    header, train_rows = read_csv(run / "history/train.csv")
    assert tuple(header) == TRAIN_COLUMNS
    assert [int(r["step"]) for r in train_rows] == [2, 4]
    assert all(float(r["tokens_per_sec"]) > 0 and float(r["peak_mem_gb"]) > 0 for r in train_rows)
    assert int(train_rows[0]["trained_tokens"]) < int(train_rows[1]["trained_tokens"])
    header, val_rows = read_csv(run / "history/val.csv")
    assert tuple(header) == VAL_COLUMNS
    assert [int(r["step"]) for r in val_rows] == [0, 2, 4]  # before training, then every steps_per_eval
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The last checkpoint and the final adapter are the same weights.
    last = mx.load(str(run / "adapter/0000004_adapters.safetensors"))
    final = mx.load(str(run / "adapter/adapters.safetensors"))
    assert last.keys() == final.keys() and all(mx.array_equal(last[k], final[k]) for k in final)


def test_metrics_agree_with_history(finished):
    result, tmp = finished
    metrics = json.loads((tmp / "metrics.json").read_text())
    _, train_rows = read_csv(tmp / "run/history/train.csv")
    _, val_rows = read_csv(tmp / "run/history/val.csv")
    assert metrics == result.metrics
    assert metrics["final_train_loss"] == pytest.approx(float(train_rows[-1]["train_loss"]))
    assert metrics["final_val_loss"] == pytest.approx(float(val_rows[-1]["val_loss"]))
    best = min(val_rows, key=lambda r: float(r["val_loss"]))
    assert metrics["best_val_loss"] == pytest.approx(float(best["val_loss"]))
    assert metrics["best_val_iteration"] == int(best["step"])
    assert metrics["trained_tokens"] == int(train_rows[-1]["trained_tokens"])
    assert metrics["peak_memory_gb"] == max(float(r["peak_mem_gb"]) for r in train_rows)
    assert metrics["tokens_per_sec"] > 0 and metrics["duration_seconds"] >= metrics["train_seconds"] > 0
    assert metrics["iterations"] == 4
    # Loss goes down on a learning rate this high.
    assert float(val_rows[-1]["val_loss"]) < float(val_rows[0]["val_loss"])


def test_run_json_records_environment_params_and_results(finished, tiny_model_path):
    result, tmp = finished
    run = json.loads((tmp / "run/run.json").read_text())
    assert run["status"] == "completed"
    assert run["started_at"] <= run["finished_at"]
    assert run["params"] == result.run["params"] and run["params"]["lora_rank"] == 8
    assert run["params"]["model"] == str(tiny_model_path)
    assert run["packages"]["mlx-lm"] and run["packages"]["mlx"]
    assert run["device"]["backend"] in ("cpu", "metal", "cuda")
    assert run["blas"]["name"]
    assert run["git_sha"] is None or len(run["git_sha"].split("-")[0]) == 40
    assert run["results"] == result.metrics
    assert run["checkpoints"] == ["0000002_adapters.safetensors", "0000004_adapters.safetensors"]
    assert run["data"]["train_rows"] == 24 and run["data"]["valid_rows"] == 8


def test_train_log_is_readable(finished):
    _, tmp = finished
    log = (tmp / "run/train.log").read_text()
    assert "iter 2 | train_loss" in log and "iter 4 | val_loss" in log
    assert "saved 0000002_adapters.safetensors" in log
    assert log.rstrip().splitlines()[-1].split(" ", 2)[2].startswith("done: 4 iters")


def test_adapter_loads_with_mlx_lm_and_changes_the_output(finished, tiny_model_path):
    import mlx_lm

    result, tmp = finished
    adapter = tmp / "run/adapter"
    loaded, _ = mlx_lm.load(str(tiny_model_path), adapter_path=str(adapter))
    base, _ = mlx_lm.load(str(tiny_model_path))
    tokens = mx.array([[1, 5, 9, 14, 3, 7]])
    result.model.eval()
    out_trained = np.array(result.model(tokens))
    np.testing.assert_allclose(np.array(loaded(tokens)), out_trained, rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.array(base(tokens)), out_trained, atol=1e-4)


def test_mlx_lm_fuse_accepts_the_adapter(finished, tiny_model_path, tmp_path):
    _, tmp = finished
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "fuse", "--model", str(tiny_model_path),
         "--adapter-path", str(tmp / "run/adapter"), "--save-path", str(tmp_path / "fused")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fused/config.json").exists() and list((tmp_path / "fused").glob("*.safetensors"))


def test_quantized_model_trains_qlora_and_adapter_loads(tiny_model_q8_path, tmp_path):
    import mlx.nn as nn
    import mlx_lm

    result = quick_train(tiny_model_q8_path, tmp_path)
    lora = result.model.layers[-1].self_attn.q_proj
    assert isinstance(lora.linear, nn.QuantizedLinear) and lora.linear.bits == 8
    loaded, _ = mlx_lm.load(str(tiny_model_q8_path), adapter_path=str(tmp_path / "run/adapter"))
    tokens = mx.array([[1, 5, 9, 14]])
    result.model.eval()
    np.testing.assert_allclose(np.array(loaded(tokens)), np.array(result.model(tokens)), rtol=1e-4, atol=1e-4)


def test_hub_id_loads_from_the_local_cache_offline(hub_layout_model, tmp_path):
    result = quick_train(hub_layout_model, tmp_path)
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["status"] == "completed" and run["params"]["model"] == hub_layout_model
    assert "snapshots" in run["model_path"]
    config = json.loads((tmp_path / "run/adapter/adapter_config.json").read_text())
    assert config["model"] == hub_layout_model
    assert result.metrics["trained_tokens"] > 0


class _Probe(TrainingCallback):
    """Reads train.log at each report (as `tail -f` would) and writes to stderr both ways."""

    def __init__(self, log: Path):
        self.log, self.seen = log, []

    def on_train_loss_report(self, info):
        self.seen.append(f"iter {info['iteration']} | train_loss" in self.log.read_text())
        print(f"probe python stderr {info['iteration']}", file=sys.stderr, flush=True)
        os.write(2, f"probe fd2 {info['iteration']}\n".encode())


def test_train_log_is_flushed_at_each_report_and_stderr_lands_in_train_err(tiny_model_path, tmp_path):
    probe = _Probe(tmp_path / "run/train.log")
    quick_train(tiny_model_path, tmp_path, callbacks=[probe])
    assert probe.seen == [True, True]
    err = (tmp_path / "run/train.err").read_text()
    assert "probe python stderr 2" in err and "probe fd2 4" in err


def test_training_without_a_validation_split(tiny_model_path, tmp_path):
    from compression_layer.train.run import train
    from train_support import quick_config

    data = make_data(tmp_path / "data")
    result = train(quick_config(tiny_model_path), data / "train.jsonl", None, tmp_path / "run", tmp_path / "m.json",
                   echo=None)
    assert result.metrics["final_val_loss"] is None and result.metrics["best_val_loss"] is None
    assert result.metrics["final_train_loss"] is not None
    assert (tmp_path / "run/history/val.csv").read_text() == "step,val_loss\n"


def test_failed_run_leaves_no_run_dir(tiny_model_path, tmp_path):
    data = make_data(tmp_path / "data")
    (tmp_path / "run").mkdir()
    (tmp_path / "run/run.json").write_text("{}")  # a previous run's dir is replaced
    with pytest.raises(TrainError, match="lora_layers is 99"):
        quick_train(tiny_model_path, tmp_path, data=data, lora_layers=99)
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "metrics.json").exists()
    failed = json.loads((tmp_path / "run.failed/run.json").read_text())
    assert failed["status"] == "failed" and "lora_layers is 99" in failed["error"]
    assert "failed: lora_layers is 99" in (tmp_path / "run.failed/train.log").read_text()


def test_refuses_to_replace_a_directory_that_is_not_a_run(tiny_model_path, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run/precious.txt").write_text("keep me")
    with pytest.raises(TrainError, match="not a training run directory"):
        quick_train(tiny_model_path, tmp_path)
    assert (tmp_path / "run/precious.txt").read_text() == "keep me"
