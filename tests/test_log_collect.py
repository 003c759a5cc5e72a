"""The log stage without a server: where it logs, what it collects from a run dir, the idempotent sync
(on the offline NullTracker), the log params, and `--dry-run`. Seconds; mlflow is never imported.

    .venv/bin/python -m pytest -q tests/test_log_collect.py
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compression_layer.params import ParamsError, field_help
from compression_layer.tracking.base import NullTracker, RunState, sync_run
from compression_layer.tracking.collect import IDENTITY_TAG, collect_run, read_history
from compression_layer.tracking.config import LogConfig, load_log_config
from compression_layer.tracking.target import TrackingError, display_uri, http_limits, resolve, scrub, secret_values
from log_support import ROOT, make_project, run_stage

TOKEN = "tok-UNIT-5e1f0c3b9a7d"


# ---- where ----------------------------------------------------------------------------------


def test_tracking_uri_wins_over_dagshub(tmp_path):
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "DAGSHUB_OWNER": "o", "DAGSHUB_REPO": "r",
           "DAGSHUB_USER_TOKEN": TOKEN}
    target = resolve(env, tmp_path)
    assert (target.kind, target.uri, dict(target.env)) == ("server", "http://127.0.0.1:5000", {})


def test_dagshub_uri_and_credentials_in_process_env_only(tmp_path):
    target = resolve({"DAGSHUB_OWNER": "alice", "DAGSHUB_REPO": "compression-layer", "DAGSHUB_TOKEN": TOKEN}, tmp_path)
    assert target.kind == "dagshub"
    assert target.uri == target.display == "https://dagshub.com/alice/compression-layer.mlflow"
    assert dict(target.env) == {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": TOKEN}
    assert TOKEN not in target.describe() and TOKEN in target.secrets
    # DAGSHUB_USER_TOKEN comes first; DAGSHUB_USERNAME names the user when the owner is an organisation.
    target = resolve({"DAGSHUB_OWNER": "org", "DAGSHUB_REPO": "r", "DAGSHUB_USERNAME": "bob",
                      "DAGSHUB_USER_TOKEN": "first-token", "DAGSHUB_TOKEN": TOKEN}, tmp_path)
    assert dict(target.env) == {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "first-token"}


def test_dagshub_settings_incomplete_fail_clearly(tmp_path):
    with pytest.raises(TrackingError, match="DAGSHUB_USER_TOKEN"):
        resolve({"DAGSHUB_OWNER": "alice", "DAGSHUB_REPO": "r"}, tmp_path)
    with pytest.raises(TrackingError, match="DAGSHUB_REPO is not set"):
        resolve({"DAGSHUB_OWNER": "alice", "DAGSHUB_USER_TOKEN": TOKEN}, tmp_path)


def test_local_default_is_a_store_in_the_project(tmp_path):
    target = resolve({}, tmp_path)
    assert target.kind == "local" and target.env == {}
    assert target.uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert target.display == "sqlite:///mlflow.db"
    assert target.artifact_root == (tmp_path.resolve() / "mlartifacts").as_uri()


def test_credentials_in_tracking_uri_are_refused_without_echoing_them(tmp_path):
    with pytest.raises(TrackingError) as info:
        resolve({"MLFLOW_TRACKING_URI": f"https://user:{TOKEN}@mlflow.example/x"}, tmp_path)
    assert TOKEN not in str(info.value) and "https://mlflow.example/x" in str(info.value)
    with pytest.raises(TrackingError, match="holds credentials") as info:
        resolve({"MLFLOW_TRACKING_URI": f"https://{TOKEN}@mlflow.example/x"}, tmp_path)  # a token as user name
    assert TOKEN not in str(info.value)


def test_scrub_and_display_remove_credentials():
    env = {"DAGSHUB_USER_TOKEN": TOKEN, "MLFLOW_TRACKING_PASSWORD": "pw-0123456789"}
    secrets = secret_values(env)
    text = f"failed for https://me:{TOKEN}@host/x with pw-0123456789 and token {TOKEN}"
    assert scrub(text, secrets) == "failed for https://host/x with *** and token ***"
    assert display_uri("http://u:p@127.0.0.1:5000/a") == "http://127.0.0.1:5000/a"


def test_http_limits_keep_what_the_user_set():
    assert http_limits({}, 15, 0) == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    assert http_limits({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3"}, 15, 0) == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


# ---- what -----------------------------------------------------------------------------------


def _collect(project: Path, **kw):
    args = dict(
        train_metrics=project / "metrics/train.json",
        eval_metrics=project / "metrics/eval.json",
        project_dir=project,
    )
    args.update(kw)
    return collect_run(project / "models/runs/mlx/latest", **args)


def test_collect_params_metrics_tags_artifacts(tmp_path):
    project = make_project(tmp_path)
    record = _collect(project, env={"DVC_EXP_NAME": "sunny-lamb"})
    assert record.params["lora_rank"] == "8" and record.params["learning_rate"] == "0.0001"
    assert record.params["lr_schedule.name"] == "cosine" and record.params["lr_schedule.warmup"] == "5"
    assert record.params["lora_keys"] == '["self_attn.q_proj", "self_attn.v_proj"]'
    points = {(k, s): v for k, v, s in record.metrics}
    assert [s for k, _, s in record.metrics if k == "train_loss"] == [10, 20, 30]
    assert [s for k, _, s in record.metrics if k == "val_loss"] == [0, 10, 20, 30]
    assert points[("tokens_per_sec", 20)] == 920 and points[("trained_tokens", 30)] == 3000
    assert points[("eval/compression.token_ratio", 0)] == 0.41 and points[("train/best_val_loss", 0)] == 2.9
    assert points[("eval/by_domain.code.token_ratio", 0)] == 0.5
    # Only numbers: strings, booleans and lists of eval.json are not metrics.
    assert not {"eval/model", "eval/ok", "eval/rows"} & {k for k, _ in points}
    assert record.tags["data_md5/data/training/train.jsonl"] == "aaa111"
    assert record.tags["data_md5/data/training/test.jsonl"] == "bbb222"
    assert not any("data/split" in k for k in record.tags)
    assert record.tags["base_model"] == "models/base/tiny-qwen3" and record.tags["train_status"] == "completed"
    assert record.tags["dvc_exp_name"] == "sunny-lamb" and record.run_name == "sunny-lamb"
    assert record.tags[IDENTITY_TAG] == record.identity
    names = {(a.folder, a.path.name) for a in record.artifacts}
    assert {("", "run.json"), ("", "train.log"), ("", "loss_curve.png"), ("adapter", "adapters.safetensors"),
            ("adapter", "adapter_config.json"), ("history", "train.csv"), ("history", "val.csv"),
            ("metrics", "train.json"), ("metrics", "eval.json")} <= names
    assert ("adapter", "0000010_adapters.safetensors") not in names
    with_checkpoints = _collect(project, log_checkpoints=True)
    assert ("adapter", "0000010_adapters.safetensors") in {(a.folder, a.path.name) for a in with_checkpoints.artifacts}


def test_git_sha_tag_in_a_git_repo(tmp_path):
    project = make_project(tmp_path)
    assert "git_sha" not in _collect(project).tags
    git = ["git", "-c", "user.email=t@localhost", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "x"], cwd=project, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    tags = _collect(project).tags
    assert tags["git_sha"] == tags["mlflow.source.git.commit"] == head
    assert tags["train_git_sha"] == "0" * 40


def test_identity_follows_adapter_and_metrics_not_the_folder(tmp_path):
    project = make_project(tmp_path / "a")
    key = _collect(project).identity
    moved = tmp_path / "b"
    shutil.copytree(project, moved)
    assert _collect(moved).identity == key  # logging the same run from another folder finds it
    (moved / "metrics/eval.json").write_text('{"test_loss": 2.0}')
    assert _collect(moved).identity != key
    other = make_project(tmp_path / "c", seed=7)
    assert _collect(other).identity != key


def test_older_run_folder_with_top_level_params(tmp_path):
    # The runbook's run.json kept params at the top level and had no history CSVs.
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapters.safetensors").write_bytes(b"w" * 10)
    (run / "run.json").write_text(json.dumps({"model": "mlx-community/Qwen3-4B", "lora_rank": 16, "iters": 500,
                                               "extra": {"nested": 1}}))
    record = collect_run(run, project_dir=tmp_path)
    assert record.params == {"iters": "500", "lora_rank": "16", "model": "mlx-community/Qwen3-4B"}
    assert record.tags["base_model"] == "mlx-community/Qwen3-4B" and record.metrics == []


def test_unusable_run_dirs_fail_with_one_line(tmp_path):
    project = make_project(tmp_path)
    run = project / "models/runs/mlx/latest"
    with pytest.raises(TrackingError, match="run dir not found"):
        collect_run(project / "nope")
    (run / "history" / "train.csv").write_text("step,train_loss\n10,abc\n")
    with pytest.raises(TrackingError, match=r"train.csv:2: train_loss 'abc' is not a number"):
        read_history(run / "history" / "train.csv")
    with pytest.raises(TrackingError, match="eval metrics not found"):
        collect_run(run, eval_metrics=project / "missing.json")
    shutil.rmtree(run / "adapter")
    with pytest.raises(TrackingError, match="no adapter/"):
        collect_run(run)
    (run / "run.json").unlink()
    with pytest.raises(TrackingError, match="no run.json"):
        collect_run(run)


# ---- sync -----------------------------------------------------------------------------------


class PreloadedTracker(NullTracker):
    """The offline tracker, opened on a run that already holds some data (as found on a server)."""

    def __init__(self, state: RunState, metrics: list[tuple[str, float, int]] = ()) -> None:
        super().__init__()
        self.state = state
        self.metrics = list(metrics)

    def open_run(self, experiment, identity, run_name, tags):
        return self.state


def test_sync_new_run_logs_everything(tmp_path):
    record = _collect(make_project(tmp_path))
    tracker = NullTracker()
    result = sync_run(tracker, record, "exp")
    assert result.created and result.logged and tracker.status == "FINISHED"
    assert tracker.params == record.params and tracker.tags == record.tags
    assert sorted(tracker.metrics) == sorted(record.metrics)
    assert [(a.path, a.folder) for a in record.artifacts] == tracker.artifacts


def test_sync_finished_run_sends_nothing(tmp_path):
    record = _collect(make_project(tmp_path))
    tracker = PreloadedTracker(RunState("r1", "1", "name", created=False, finished=True, params=dict(record.params)))
    result = sync_run(tracker, record, "exp")
    assert (result.run_id, result.created, result.logged) == ("r1", False, False)
    assert tracker.params == {} and tracker.metrics == [] and tracker.artifacts == [] and tracker.status is None


def test_sync_resumes_a_partial_run_without_duplicates(tmp_path):
    record = _collect(make_project(tmp_path))
    some_params = dict(list(record.params.items())[:3])
    logged = [m for m in record.metrics if m[0] == "train_loss" and m[2] <= 20]
    state = RunState("r1", "1", "name", created=False, finished=False, params=some_params,
                     tags={IDENTITY_TAG: record.identity})
    tracker = PreloadedTracker(state, logged)
    sync_run(tracker, record, "exp")
    assert sorted(tracker.metrics) == sorted(record.metrics)  # each point once
    assert set(tracker.params) == set(record.params) - set(some_params)
    assert tracker.status == "FINISHED"


def test_sync_never_changes_a_logged_param(tmp_path):
    record = _collect(make_project(tmp_path))
    state = RunState("r1", "1", "name", created=False, finished=False, params={"lora_rank": "16"})
    tracker = PreloadedTracker(state)
    with pytest.raises(TrackingError, match="other values for params lora_rank"):
        sync_run(tracker, record, "exp")
    assert tracker.params == {} and tracker.status == "FAILED"


# ---- params and the stage -------------------------------------------------------------------


def test_log_params_documented_in_params_yaml_and_dvc_yaml():
    names = [f.name for f in dataclasses.fields(LogConfig)]
    assert all(field_help(LogConfig)[n] for n in names)
    assert load_log_config(ROOT / "params.yaml") == LogConfig(**{
        k: v for k, v in yaml.safe_load((ROOT / "params.yaml").read_text()).items() if k in names})
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["log"]
    assert sorted(stage["params"]) == sorted(names)
    code = [d for d in stage["deps"] if d.endswith(".py")]
    imported = {f"src/compression_layer/tracking/{p.name}" for p in (ROOT / "src/compression_layer/tracking").glob("*.py")}
    assert imported <= set(code) and "stages/log.py" in code


def test_log_params_errors(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("experiment_name: x\nlog_http_timeout: soon\n")
    with pytest.raises(ParamsError, match="log_http_timeout: expected an integer"):
        load_log_config(bad)
    bad.write_text("log_predictions_sample: -1\n")
    with pytest.raises(ParamsError, match="log_predictions_sample must be >= 0"):
        load_log_config(bad)


def test_dry_run_logs_nothing_and_never_imports_mlflow(tmp_path):
    project = make_project(tmp_path)
    probe = (
        f"import sys, runpy; ns = runpy.run_path({str(ROOT / 'stages/log.py')!r}, run_name='probe'); "
        "ns['main'](['--dry-run', '--eval-metrics', 'metrics/eval.json']); "
        "print('mlflow imported:', 'mlflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "dry run: would log 11 params" in proc.stdout and "local MLflow store" in proc.stdout
    assert "mlflow imported: False" in proc.stdout
    assert not (project / "mlflow.db").exists() and not (project / "tracking").exists()


def test_stage_errors_are_one_line(tmp_path):
    project = make_project(tmp_path)
    proc = run_stage(project, "--run-dir", "models/runs/mlx/missing", "--dry-run")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: run dir not found: models/runs/mlx/missing"
