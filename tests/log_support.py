"""Helpers of the log-stage tests: a fake training run in the train stage's layout, a real MLflow
server on 127.0.0.1 (started and stopped by the tests), and a way to run stages/log.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from repo_utils import ROOT, venv_env

# Environment variables that would send a test's run somewhere else, or leak into it.
TRACKING_VARS = (
    "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "DAGSHUB_OWNER", "DAGSHUB_REPO", "DAGSHUB_USER_TOKEN", "DAGSHUB_TOKEN", "DAGSHUB_USERNAME",
    "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_EXPERIMENT_NAME",
)

TRAIN_PARAMS = {
    "model": "models/base/tiny-qwen3",
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "lora_layers": 4,
    "iters": 30,
    "batch_size": 2,
    "learning_rate": 1e-4,
    "lr_schedule": {"name": "cosine", "warmup": 5},
    "lora_keys": ["self_attn.q_proj", "self_attn.v_proj"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_project(root: Path, iters: int = 30, seed: int = 0, pipeline_files: bool = True) -> Path:
    """A project folder with a finished run (models/runs/mlx/latest), metrics and predictions, plus a
    params.yaml and dvc.lock unless ``pipeline_files`` is False (a copy of the repo has its own)."""
    run = root / "models/runs/mlx/latest"
    (run / "adapter").mkdir(parents=True)
    (run / "history").mkdir()
    (root / "metrics").mkdir(exist_ok=True)
    (root / "models/eval").mkdir(parents=True, exist_ok=True)
    params = dict(TRAIN_PARAMS, iters=iters)
    (run / "run.json").write_text(json.dumps({
        "started_at": "2026-01-02T03:04:05Z", "finished_at": "2026-01-02T03:05:00Z", "status": "completed",
        "git_sha": "0" * 40, "params": params, "final_train_loss": 2.5,
    }, indent=2))
    (run / "train.log").write_text("iter 10 train_loss 3.1\niter 20 train_loss 2.8\n")
    (run / "train.err").write_text("")
    (run / "adapter" / "adapters.safetensors").write_bytes(bytes([seed]) * 2048)
    (run / "adapter" / "0000010_adapters.safetensors").write_bytes(bytes([seed + 1]) * 2048)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"fine_tune_type": "lora", "num_layers": 4}))
    steps = range(10, iters + 1, 10)
    (run / "history" / "train.csv").write_text(
        "step,train_loss,learning_rate,tokens_per_sec,peak_mem_gb,trained_tokens\n"
        + "".join(f"{s},{4.0 - s / 20:.4f},0.0001,{900 + s},0.25,{s * 100}\n" for s in steps)
    )
    (run / "history" / "val.csv").write_text("step,val_loss\n0,4.2\n" + "".join(f"{s},{4.1 - s / 25:.4f}\n" for s in steps))
    (run / "loss_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (root / "metrics" / "train.json").write_text(json.dumps({"final_train_loss": 2.5, "best_val_loss": 2.9,
                                                             "best_val_iter": iters, "peak_mem_gb": 0.25}))
    (root / "metrics" / "eval.json").write_text(json.dumps({
        "test_loss": 3.0, "compression": {"token_ratio": 0.41, "char_ratio": 0.38}, "model": "tiny", "ok": True,
        "by_domain": {"nl": {"token_ratio": 0.4}, "code": {"token_ratio": 0.5}}, "rows": [1, 2],
    }))
    (root / "models/eval/predictions.jsonl").write_text(
        "".join(json.dumps({"id": i, "prediction": f"p{i}"}) + "\n" for i in range(50))
    )
    if not pipeline_files:
        return root
    (root / "params.yaml").write_text("experiment_name: test-exp\nlog_predictions_sample: 5\nlora_rank: 8\n")
    (root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  sanitize:\n    outs:\n"
        "    - path: data/training/train.jsonl\n      hash: md5\n      md5: aaa111\n      size: 10\n"
        "    - path: data/training/test.jsonl\n      hash: md5\n      md5: bbb222\n      size: 10\n"
        "  split:\n    outs:\n    - path: data/split/train.jsonl\n      hash: md5\n      md5: ccc333\n      size: 10\n"
    )
    return root


STAGE_ARGS = [
    "--run-dir", "models/runs/mlx/latest", "--train-metrics", "metrics/train.json",
    "--eval-metrics", "metrics/eval.json", "--predictions", "models/eval/predictions.jsonl",
    "--receipt", "tracking/receipt.json",
]


def clean_env(**extra: str) -> dict[str, str]:
    """The venv environment without any tracking settings of the person running the tests."""
    env = venv_env()
    for name in TRACKING_VARS:
        env.pop(name, None)
    env.update(extra)
    return env


def run_stage(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run stages/log.py in ``project``; returns the CompletedProcess."""
    args = args or tuple(STAGE_ARGS)
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / "log.py"), *args],
        cwd=project, env=env if env is not None else clean_env(), capture_output=True, text=True, timeout=timeout,
    )


class MlflowServer:
    """`mlflow server` on a free 127.0.0.1 port, sqlite store and proxied artifacts under ``root``."""

    def __init__(
        self, root: Path, *, auth: tuple[str, str] | None = None, prefix: str | None = None, backend: str | None = None,
        executable: str | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.executable = executable or str(Path(sys.executable).parent / "mlflow")  # another venv's: other version
        self.backend = backend or f"sqlite:///{root / 'server.db'}"  # another store: what `mlflow ui` opens
        self.auth = auth  # (user, password): MLflow's basic-auth app, as DagsHub checks user + token
        self.prefix = prefix  # a URL path prefix, e.g. "/owner/repo.mlflow" as on DagsHub
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: float = 90) -> "MlflowServer":
        env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        # That venv's bin first, so the server finds its own gunicorn.
        env["PATH"] = f"{Path(self.executable).parent}{os.pathsep}{env['PATH']}"
        cmd = [
            self.executable, "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--backend-store-uri", self.backend,
            "--artifacts-destination", str(self.root / "artifacts"), "--serve-artifacts",
        ]
        if self.prefix:
            cmd += ["--static-prefix", self.prefix]
            self.url += self.prefix
        if self.auth:
            ini = self.root / "auth.ini"
            ini.write_text(
                f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{self.root / 'auth.db'}\n"
                "admin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            cmd += ["--app-name", "basic-auth"]
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_FLASK_SERVER_SECRET_KEY="log-tests",
                       MLFLOW_AUTH_ADMIN_USERNAME=self.auth[0], MLFLOW_AUTH_ADMIN_PASSWORD=self.auth[1])
        log = open(self.root / "server.log", "wb")
        # Its own session, so teardown can stop the server and its worker by the group id.
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {wait} s: {(self.root / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with_group = os.getpgid(self.proc.pid) == self.proc.pid
        (os.killpg if with_group else os.kill)(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            (os.killpg if with_group else os.kill)(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if with_group:  # a worker that outlived the leader
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
