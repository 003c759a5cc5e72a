"""The embedded default: no tracking variables, no server, no network. The run goes to mlflow.db and
mlartifacts/ in the project, `mlflow ui --backend-store-uri sqlite:///mlflow.db` shows it, and the
`log` stage of dvc.yaml runs it under `dvc repro` (in a copy of the repo) and keeps its receipt when
the tracking server is down.

    .venv/bin/python -m pytest -q tests/test_log_local.py      # about a minute
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from log_support import MlflowServer, clean_env, free_port, make_project, run_stage
from repo_utils import copy_repo

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def _offline_env(**extra: str) -> dict[str, str]:
    # Any HTTP request the stage tried would go to a dead proxy and fail the run.
    dead = f"http://127.0.0.1:{free_port()}"
    return clean_env(HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead, NO_PROXY="", **extra)


def _dvc(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    dvc = str(Path(sys.executable).parent / "dvc")
    return subprocess.run([dvc, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def test_local_store_in_the_project_and_mlflow_ui_opens_it(tmp_path):
    project = make_project(tmp_path / "p")
    proc = run_stage(project, env=_offline_env())
    assert proc.returncode == 0, proc.stderr
    assert "view it with: mlflow ui --backend-store-uri sqlite:///mlflow.db" in proc.stdout
    receipt = json.loads((project / "tracking/receipt.json").read_text())
    assert receipt["tracking"] == "local" and receipt["tracking_uri"] == "sqlite:///mlflow.db"

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(receipt["run_id"])
    assert run.data.params["lora_rank"] == "8"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 10, 20, 30]
    assert run.info.artifact_uri.startswith((project / "mlartifacts").as_uri())
    assert list((project / "mlartifacts").rglob("adapters.safetensors"))
    assert not (project / "mlruns").exists()

    again = run_stage(project, env=_offline_env())
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len(client.search_runs([receipt["experiment_id"]])) == 1

    # What `mlflow ui --backend-store-uri sqlite:///mlflow.db` serves when run in the project folder.
    ui = MlflowServer(tmp_path / "ui", backend=f"sqlite:///{project / 'mlflow.db'}").start()
    try:
        remote = MlflowClient(ui.url)
        assert remote.get_run(receipt["run_id"]).data.params["iters"] == "30"
        got = Path(remote.download_artifacts(receipt["run_id"], "run.json", str(tmp_path / "dl")))
        assert got.read_bytes() == (project / "models/runs/mlx/latest/run.json").read_bytes()
    finally:
        ui.stop()


def test_dvc_repro_runs_the_log_stage_and_a_failure_keeps_the_receipt(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    make_project(repo, pipeline_files=False)
    proc = _dvc(repo, _offline_env(), "repro", "--single-item", "log")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    receipt = (repo / "tracking/receipt.json").read_bytes()
    assert json.loads(receipt)["tracking"] == "local"
    lock = (repo / "dvc.lock").read_text()
    assert "tracking/receipt.json" in lock and "experiment_name" in lock

    # A new evaluation, but the tracking server is down: the stage fails, the old receipt stays.
    (repo / "metrics/eval.json").write_text('{"test_loss": 1.5}')
    down = _dvc(repo, _offline_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}"), "repro", "--single-item", "log")
    assert down.returncode != 0
    assert "connection refused (is the server running?)" in down.stdout + down.stderr
    assert (repo / "tracking/receipt.json").read_bytes() == receipt

    # Back on the local store: a second run is logged for the new result.
    again = _dvc(repo, _offline_env(), "repro", "--single-item", "log")
    assert again.returncode == 0, again.stdout + again.stderr
    new = json.loads((repo / "tracking/receipt.json").read_text())
    assert new["run_id"] != json.loads(receipt)["run_id"]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    assert len(client.search_runs([new["experiment_id"]])) == 2
