"""The log stage against an MLflow 2.x server, as DagsHub hosts (2.7): log, rerun, resume a partial run.

Skipped unless MLFLOW2_SERVER names the `mlflow` executable of a venv holding a 2.x server, made with:

    python3 -m venv /tmp/mlflow27 && /tmp/mlflow27/bin/pip install 'mlflow==2.7.1' 'sqlalchemy<2.0.20'
    MLFLOW2_SERVER=/tmp/mlflow27/bin/mlflow .venv/bin/python -m pytest -q tests/test_log_mlflow2.py
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from log_support import MlflowServer, clean_env, make_project, run_stage

EXECUTABLE = os.environ.get("MLFLOW2_SERVER")
pytestmark = pytest.mark.skipif(not EXECUTABLE, reason="set MLFLOW2_SERVER to an MLflow 2.x `mlflow` executable")


def test_log_rerun_and_resume_on_a_2x_server(tmp_path):
    from mlflow.tracking import MlflowClient

    from compression_layer.tracking.collect import collect_run

    version = subprocess.run([EXECUTABLE, "--version"], capture_output=True, text=True).stdout
    assert "version 2." in version, version
    srv = MlflowServer(tmp_path / "srv", executable=EXECUTABLE).start()
    try:
        project = make_project(tmp_path / "p")
        env = clean_env(MLFLOW_TRACKING_URI=srv.url)
        assert run_stage(project, env=env).returncode == 0
        receipt = json.loads((project / "tracking/receipt.json").read_text())
        again = run_stage(project, env=env)
        assert again.returncode == 0 and "nothing to do" in again.stdout

        client = MlflowClient(srv.url)
        run = client.get_run(receipt["run_id"])
        assert run.info.status == "FINISHED" and run.data.params["lora_rank"] == "8"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 10, 20, 30]
        # Read the server's artifact folder directly: the 3.x client's list_artifacts needs a 3.x server.
        stored = {p.relative_to(srv.root / "artifacts").as_posix().split("/artifacts/", 1)[1]
                  for p in (srv.root / "artifacts").rglob("*") if p.is_file()}
        assert {"run.json", "adapter/adapters.safetensors", "history/val.csv", "eval/predictions_sample.jsonl"} <= stored
        assert len(client.search_runs([receipt["experiment_id"]])) == 1

        # A run left RUNNING with part of its data is completed, not duplicated.
        (project / "models/runs/mlx/latest/adapter/adapters.safetensors").write_bytes(b"new weights")
        record = collect_run(project / "models/runs/mlx/latest", train_metrics=project / "metrics/train.json",
                             eval_metrics=project / "metrics/eval.json", project_dir=project)
        partial = client.create_run(receipt["experiment_id"], tags={"identity_key": record.identity})
        client.log_metric(partial.info.run_id, "train_loss", 3.5, step=10)
        assert run_stage(project, env=env).returncode == 0
        assert json.loads((project / "tracking/receipt.json").read_text())["run_id"] == partial.info.run_id
        assert sorted(m.step for m in client.get_metric_history(partial.info.run_id, "train_loss")) == [10, 20, 30]
    finally:
        srv.stop()
