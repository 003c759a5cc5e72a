"""The DagsHub path and the token: a real MLflow server with basic auth under DagsHub's URL layout
(`<host>/<owner>/<repo>.mlflow`, user name + token) stands in for dagshub.com.

A distinctive fake token goes through the stage (by hand and under `dvc repro`); afterwards no file
the project holds, no output line, and no MLflow param, tag or artifact contains it. A wrong token is
refused with one clear line.

    .venv/bin/python -m pytest -q tests/test_log_dagshub.py      # about a minute
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from log_support import MlflowServer, clean_env, make_project, run_stage
from repo_utils import copy_repo, git_commit

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

OWNER, REPO = "alice", "compression-layer"
# Made at run time: a literal would sit in this very file, which the repo scan reads.
TOKEN = "dhtok-" + secrets.token_hex(16)
WRONG = "dhtok-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def dagshub(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("dagshub"), auth=(OWNER, TOKEN), prefix=f"/{OWNER}/{REPO}.mlflow")
    srv.start()
    yield srv
    srv.stop()


def _env(server: MlflowServer, token: str = TOKEN, **extra: str) -> dict[str, str]:
    return clean_env(DAGSHUB_OWNER=OWNER, DAGSHUB_REPO=REPO, DAGSHUB_USER_TOKEN=token,
                     DAGSHUB_CLIENT_HOST=f"http://127.0.0.1:{server.port}", **extra)


def _dvc(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    dvc = str(Path(sys.executable).parent / "dvc")
    return subprocess.run([dvc, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def _files_holding(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    hits = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                hits.append(str(path.relative_to(root)))
    return hits


@pytest.fixture
def admin_client(dagshub, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", OWNER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", TOKEN)
    return MlflowClient(dagshub.url)


def test_logs_to_dagshub_layout_with_token_and_never_writes_it(dagshub, admin_client, tmp_path):
    project = make_project(tmp_path / "p", seed=11)
    first = run_stage(project, env=_env(dagshub))
    assert first.returncode == 0, first.stderr
    second = run_stage(project, env=_env(dagshub))
    assert second.returncode == 0 and "nothing to do" in second.stdout
    receipt = json.loads((project / "tracking/receipt.json").read_text())
    assert receipt["tracking"] == "dagshub"
    assert receipt["tracking_uri"] == dagshub.url == f"http://127.0.0.1:{dagshub.port}/{OWNER}/{REPO}.mlflow"

    run = admin_client.get_run(receipt["run_id"])
    assert run.data.params["lora_rank"] == "8" and run.info.status == "FINISHED"
    assert len(admin_client.get_metric_history(receipt["run_id"], "train_loss")) == 3

    for proc in (first, second):
        assert TOKEN not in proc.stdout + proc.stderr
    assert _files_holding(project, TOKEN) == []
    items = list(run.data.params.items()) + list(run.data.tags.items())
    assert [k for k, v in items if TOKEN in k + v] == []
    # What the server stored: its tracking database and every uploaded artifact.
    assert _files_holding(dagshub.root / "artifacts", TOKEN) == []
    assert TOKEN.encode() not in (dagshub.root / "server.db").read_bytes()


def test_wrong_token_is_refused_with_one_line(dagshub, tmp_path):
    project = make_project(tmp_path / "p", seed=12)
    proc = run_stage(project, env=_env(dagshub, token=WRONG))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: looking up experiment 'test-exp' on DagsHub MLflow {dagshub.url} failed: the server refused "
        "the credentials (HTTP 401); check the token / MLFLOW_TRACKING_USERNAME"
    )
    assert WRONG not in proc.stdout + proc.stderr and not (project / "tracking").exists()


def test_unreachable_dagshub_fails_fast_without_the_token(tmp_path):
    project = make_project(tmp_path / "p", seed=13)
    env = clean_env(DAGSHUB_OWNER=OWNER, DAGSHUB_REPO=REPO, DAGSHUB_TOKEN=TOKEN,
                    DAGSHUB_CLIENT_HOST="http://127.0.0.1:9")  # nothing listens on the discard port
    proc = run_stage(project, env=env)
    assert proc.returncode == 1 and "connection refused" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_token_stays_out_of_dvc_lock_and_the_repo_under_dvc_repro(dagshub, admin_client, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    make_project(repo, seed=14, pipeline_files=False)
    env = _env(dagshub)
    proc = _dvc(repo, env, "repro", "--single-item", "log")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    receipt = json.loads((repo / "tracking/receipt.json").read_text())
    assert admin_client.get_run(receipt["run_id"]).info.status == "FINISHED"
    assert "log:" in (repo / "dvc.lock").read_text()
    git_commit(repo, "logged")
    assert _files_holding(repo, TOKEN) == []

