"""Errors a user of the train stage will hit: one `error: ...` line on stderr and exit status 1.

    .venv/bin/python -m pytest -q tests/test_train_errors.py

Most cases call stages/train.py's main() in this process; one runs the script for real to check that
no traceback reaches the terminal.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from train_support import QUICK, ROOT, chat_rows, load_stage, make_data, write_rows

from compression_layer.train.errors import TrainError, out_of_memory

stage = load_stage()


@pytest.fixture
def params(tmp_path, tiny_model_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"model": str(tiny_model_path), **QUICK}))
    return path


def run_stage(capfd, params, data, *extra: str) -> str:
    """Run the stage; return its one-line error message (asserting exit status 1 and no traceback)."""
    argv = ["--params", str(params), "--train", str(data / "train.jsonl"), "--valid", str(data / "valid.jsonl"),
            "--output-dir", str(params.parent / "run"), "--metrics", str(params.parent / "metrics.json"), *extra]
    assert stage.main(argv) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert not (params.parent / "run").exists()  # no run dir DVC could take for a good one
    return lines[0]


def test_missing_local_model_dir(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    line = run_stage(capfd, params, data, "--model", "models/base/no-such-model")
    assert line == "error: model directory not found: models/base/no-such-model"


def test_directory_that_is_not_a_model(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    (tmp_path / "empty-model").mkdir()
    line = run_stage(capfd, params, data, "--model", str(tmp_path / "empty-model"))
    assert "has no config.json" in line


def test_unknown_hub_id_offline(capfd, params, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    data = make_data(tmp_path / "data")
    line = run_stage(capfd, params, data, "--model", "nobody-here/no-such-model")
    assert "model 'nobody-here/no-such-model' is not a local directory and not in the Hugging Face cache" in line
    assert "HF_HUB_OFFLINE" in line


def test_invalid_hub_id(capfd, params, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = make_data(tmp_path / "data")
    line = run_stage(capfd, params, data, "--model", "not a repo id!")
    assert line.startswith("error: unknown model 'not a repo id!'")


def test_hub_id_without_network_fails_fast_with_one_line(tmp_path, params):
    """No HF_HUB_OFFLINE: huggingface_hub tries the network, which this machine does not have (or, with
    network, finds no such repo). Either way: one line, exit 1, no traceback."""
    data = make_data(tmp_path / "data")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    env["HF_HUB_CACHE"] = str(tmp_path / "empty-cache")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages/train.py"), "--params", str(params), "--model", "nobody-here/no-such-model",
         "--train", str(data / "train.jsonl"), "--valid", str(data / "valid.jsonl"),
         "--output-dir", str(tmp_path / "run"), "--metrics", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "nobody-here/no-such-model" in last
    assert "not in the Hugging Face cache" in last or "unknown model" in last


def test_missing_training_split(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    (data / "train.jsonl").unlink()
    assert run_stage(capfd, params, data) == f"error: training split not found: {data / 'train.jsonl'}"


def test_empty_training_split(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    (data / "train.jsonl").write_text("\n")
    assert run_stage(capfd, params, data) == f"error: training split is empty: {data / 'train.jsonl'}"


def test_bad_line_in_a_split(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    with open(data / "valid.jsonl", "a") as fh:
        fh.write("{not json\n")
    line = run_stage(capfd, params, data)
    assert line.startswith(f"error: {data / 'valid.jsonl'}:9: not valid JSON")


@pytest.mark.parametrize("split", ["train", "valid"])
def test_fewer_rows_than_batch_size(capfd, params, tmp_path, split):
    data = make_data(tmp_path / "data")
    write_rows(data / f"{split}.jsonl", chat_rows(3))
    name = "training" if split == "train" else "validation"
    assert run_stage(capfd, params, data, "--batch-size", "4") == (
        f"error: {name} split has 3 rows, fewer than batch_size=4")


def test_lora_layers_larger_than_the_model(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    line = run_stage(capfd, params, data, "--lora-layers", "12")
    assert line.startswith("error: lora_layers is 12 but model") and line.endswith("has only 4 layers")


def test_lora_keys_not_in_the_model(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    line = run_stage(capfd, params, data, "--lora-keys", "[self_attn.qkv]")
    assert line.startswith("error: lora_keys ['self_attn.qkv'] not found in the model's blocks")


def test_mistyped_param_key(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    params.write_text(params.read_text() + "lora_rnak: 16\n")
    assert "unknown key 'lora_rnak' (did you mean 'lora_rank'?)" in run_stage(capfd, params, data)


def test_bad_param_value(capfd, params, tmp_path):
    data = make_data(tmp_path / "data")
    assert run_stage(capfd, params, data, "--lora-dropout", "1.5") == (
        "error: lora_dropout must be in [0, 1), got 1.5")


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError("[metal::malloc] Attempting to allocate 21474836480 bytes which is greater than the maximum "
                     "allowed buffer size of 17179869184 bytes."),
        RuntimeError("[METAL] Command buffer execution failed: Insufficient Memory "
                     "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)"),
        RuntimeError("[cuda::malloc] cudaMallocAsync failed: out of memory"),
        RuntimeError("std::bad_alloc"),
    ],
)
def test_out_of_memory_becomes_one_line(exc):
    error = out_of_memory(exc)
    assert isinstance(error, TrainError)
    message = str(error)
    assert message.startswith("out of memory while training (") and "\n" not in message
    assert "batch_size" in message and "grad_checkpoint" in message


def test_other_runtime_errors_are_not_taken_for_out_of_memory():
    assert out_of_memory(RuntimeError("[matmul] Last dimension of first input with shape (2,3) must match")) is None
    assert out_of_memory(ValueError("bad")) is None


def test_out_of_memory_during_a_run_fails_it_cleanly(tiny_model_path, tmp_path):
    """A MemoryError raised inside the training loop (here by a callback, as an allocation would) ends
    the run as failed, with the one-line message and the run dir moved aside."""
    import json

    from mlx_lm.tuner.callbacks import TrainingCallback
    from train_support import quick_train

    class Exhausted(TrainingCallback):
        def on_train_loss_report(self, info):
            raise MemoryError("Unable to allocate 2.0 GiB")

    with pytest.raises(TrainError, match=r"^out of memory while training \(Unable to allocate 2.0 GiB\)"):
        quick_train(tiny_model_path, tmp_path, callbacks=[Exhausted()])
    assert not (tmp_path / "run").exists()
    failed = json.loads((tmp_path / "run.failed/run.json").read_text())
    assert failed["status"] == "failed" and failed["error"].startswith("out of memory while training")


def test_diverging_training_stops_with_one_line_instead_of_a_nan_adapter(capfd, params, tmp_path):
    data = make_data(tmp_path)
    line = run_stage(capfd, params, data, "--optimizer", "sgd", "--learning-rate", "1e30", "--steps-per-report", "1")
    assert "training diverged: train loss is nan at iteration" in line
    assert (params.parent / "run.failed").exists()
