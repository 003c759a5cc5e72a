"""The log stage against a real `mlflow server` on 127.0.0.1 (started by the tests, sqlite + proxied
artifacts in tmp): what lands on the server, read back with MlflowClient; reruns add no run; a partial
run is completed; a stopped server fails fast with one clear line and leaves the receipt as it was.

    .venv/bin/python -m pytest -q tests/test_log_server.py      # about half a minute
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from log_support import MlflowServer, clean_env, make_project, run_stage

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from compression_layer.tracking.collect import collect_run  # noqa: E402

EXPERIMENT = "test-exp"  # what make_project's params.yaml names


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield srv
    srv.stop()


def _git_project(root: Path, **kw) -> Path:
    project = make_project(root, **kw)
    git = ["git", "-c", "user.email=t@localhost", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(git + ["add", "-A"], cwd=project, check=True)
    subprocess.run(git + ["commit", "-qm", "run"], cwd=project, check=True)
    return project


def _log(project: Path, url: str, *args: str, **env: str):
    proc = run_stage(project, *args, env=clean_env(MLFLOW_TRACKING_URI=url, **env))
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads((project / "tracking/receipt.json").read_text())


def _runs(client: MlflowClient, identity: str | None = None):
    exp = client.get_experiment_by_name(EXPERIMENT)
    query = f"tags.identity_key = '{identity}'" if identity else ""
    return client.search_runs([exp.experiment_id], filter_string=query)


def test_params_metrics_tags_and_artifacts_reach_the_server(server, tmp_path):
    project = _git_project(tmp_path / "p", seed=1)
    _, receipt = _log(project, server.url)
    client = MlflowClient(server.url)
    run = client.get_run(receipt["run_id"])
    assert receipt["tracking_uri"] == server.url and receipt["experiment_name"] == EXPERIMENT
    assert receipt["run_url"] == f"{server.url}/#/experiments/{receipt['experiment_id']}/runs/{receipt['run_id']}"
    assert run.info.status == "FINISHED" and run.info.run_name == "2026-01-02T03:04:05Z"

    params = run.data.params
    assert params["lora_rank"] == "8" and params["learning_rate"] == "0.0001" and params["iters"] == "30"
    assert params["lr_schedule.name"] == "cosine" and params["model"] == "models/base/tiny-qwen3"
    tags = run.data.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert tags["git_sha"] == head and tags["identity_key"] == receipt["identity_key"]
    assert tags["data_md5/data/training/train.jsonl"] == "aaa111" and tags["base_model"] == "models/base/tiny-qwen3"

    history = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
               for k in ("train_loss", "val_loss", "peak_mem_gb", "learning_rate")}
    assert sorted(history["train_loss"]) == [(10, 3.5), (20, 3.0), (30, 2.5)]
    assert sorted(history["val_loss"]) == [(0, 4.2), (10, 3.7), (20, 3.3), (30, 2.9)]
    assert [s for s, _ in sorted(history["peak_mem_gb"])] == [10, 20, 30]
    assert run.data.metrics["eval/compression.token_ratio"] == 0.41
    assert run.data.metrics["train/best_val_loss"] == 2.9 and "eval/model" not in run.data.metrics

    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"run.json", "train.log", "loss_curve.png", "adapter", "history", "metrics", "eval"} <= listed
    adapter = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert adapter == {"adapter/adapters.safetensors", "adapter/adapter_config.json"}  # no checkpoints by default
    got = Path(client.download_artifacts(run.info.run_id, "adapter/adapters.safetensors", str(tmp_path / "dl")))
    assert got.read_bytes() == (project / "models/runs/mlx/latest/adapter/adapters.safetensors").read_bytes()
    sample = Path(client.download_artifacts(run.info.run_id, "eval/predictions_sample.jsonl", str(tmp_path / "dl")))
    assert [json.loads(line)["id"] for line in sample.read_text().splitlines()] == [0, 1, 2, 3, 4]


def test_rerun_finds_the_run_and_adds_nothing(server, tmp_path):
    project = make_project(tmp_path / "p", seed=2)
    _, first = _log(project, server.url)
    client = MlflowClient(server.url)
    before = len(client.get_metric_history(first["run_id"], "train_loss"))
    receipt_bytes = (project / "tracking/receipt.json").read_bytes()
    # Under another DVC experiment name it is still the same training run.
    proc, second = _log(project, server.url, DVC_EXP_NAME="other-name")
    assert "nothing to do" in proc.stdout and second == first
    assert (project / "tracking/receipt.json").read_bytes() == receipt_bytes
    assert len(_runs(client, first["identity_key"])) == 1
    assert len(client.get_metric_history(first["run_id"], "train_loss")) == before

    (project / "models/runs/mlx/latest/adapter/adapters.safetensors").write_bytes(b"retrained" * 100)
    _, third = _log(project, server.url)
    assert third["run_id"] != first["run_id"] and third["identity_key"] != first["identity_key"]


def test_experiment_name_flag_and_checkpoints_param(server, tmp_path):
    project = make_project(tmp_path / "p", seed=3)
    (project / "params.yaml").write_text("experiment_name: test-exp\nlog_checkpoints: true\nlog_predictions_sample: 0\n")
    _, receipt = _log(project, server.url, "--run-dir", "models/runs/mlx/latest", "--experiment-name", "by-hand",
                      "--receipt", "tracking/receipt.json")
    client = MlflowClient(server.url)
    assert client.get_experiment(receipt["experiment_id"]).name == "by-hand"
    adapter = {a.path for a in client.list_artifacts(receipt["run_id"], "adapter")}
    assert "adapter/0000010_adapters.safetensors" in adapter
    assert "eval" not in {a.path for a in client.list_artifacts(receipt["run_id"])}  # no predictions given


def test_partial_run_is_completed_not_duplicated(server, tmp_path):
    # A run left RUNNING by a stage that died mid-way: some params and metric points already there.
    project = make_project(tmp_path / "p", seed=4)
    record = collect_run(project / "models/runs/mlx/latest", train_metrics=project / "metrics/train.json",
                         eval_metrics=project / "metrics/eval.json", project_dir=project)
    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name(EXPERIMENT) or client.get_experiment(client.create_experiment(EXPERIMENT))
    run = client.create_run(exp.experiment_id, tags={"identity_key": record.identity})
    client.log_param(run.info.run_id, "lora_rank", "8")
    client.log_metric(run.info.run_id, "train_loss", 3.5, step=10)
    _, receipt = _log(project, server.url)
    assert receipt["run_id"] == run.info.run_id
    done = client.get_run(run.info.run_id)
    assert done.info.status == "FINISHED" and done.data.params["iters"] == "30"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == [10, 20, 30]


def test_stopped_server_fails_with_one_clear_line(tmp_path):
    srv = MlflowServer(tmp_path / "srv").start()
    project = make_project(tmp_path / "p", seed=5)
    try:
        _log(project, srv.url)
    finally:
        srv.stop()
    receipt = (project / "tracking/receipt.json").read_bytes()
    (project / "metrics/eval.json").write_text('{"test_loss": 1.0}')  # a new result to log
    proc = run_stage(project, env=clean_env(MLFLOW_TRACKING_URI=srv.url))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: looking up experiment '{EXPERIMENT}' on MLflow server {srv.url} failed: "
        "connection refused (is the server running?)"
    )
    assert (project / "tracking/receipt.json").read_bytes() == receipt
