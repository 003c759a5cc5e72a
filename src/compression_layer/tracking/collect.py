"""Read a finished training run (run dir, metrics files, dvc.lock) into what gets logged: a RunRecord.

The run dir layout is the train stage's: run.json, train.log, train.err, adapter/, history/train.csv,
history/val.csv, loss_curve.png. Only run.json and adapter/ are required, so an older run folder made
by the runbook's scripts can be logged by hand too.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from compression_layer.tracking.target import TrackingError

IDENTITY_TAG = "identity_key"
# DagsHub's MLflow 2.x server stores param values up to 500 characters.
MAX_PARAM_LENGTH = 500
CHECKPOINT_RE = re.compile(r"^\d+_adapters\.safetensors$")


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One local file and the artifact folder it goes to ("" = the run's artifact root)."""

    path: Path
    folder: str = ""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """Everything the log stage sends for one training run."""

    run_name: str
    identity: str  # hash of adapter files, metrics files and params: same training run -> same key
    params: dict[str, str]
    tags: dict[str, str]
    metrics: list[tuple[str, float, int]]  # (key, value, step)
    artifacts: list[Artifact]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: {"a": {"b": 1}} -> {"a.b": 1}; lists stay leaves."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def param_text(value: Any) -> str:
    """A param value as MLflow stores it: strings as they are, everything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def training_params(run_info: Mapping[str, Any]) -> dict[str, str]:
    """The training params of run.json, flattened: its "params" mapping, else its top-level scalars."""
    params = run_info.get("params")
    if not isinstance(params, Mapping):
        params = {k: v for k, v in run_info.items() if not isinstance(v, (Mapping, list))}
    return {key: param_text(value) for key, value in sorted(flatten(params).items())}


def numeric_metrics(data: Any, prefix: str) -> dict[str, float]:
    """Numbers of a metrics JSON, flattened under ``prefix`` (booleans, strings and lists are skipped)."""
    out = {}
    for key, value in flatten(data).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def read_history(path: Path) -> list[tuple[str, float, int]]:
    """A history CSV (a ``step`` column plus one column per metric) as (key, value, step) points."""
    points = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "step" not in reader.fieldnames:
            raise TrackingError(f"{path}: expected a 'step' column, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                step = int(float(row["step"]))
            except (TypeError, ValueError):
                raise TrackingError(f"{path}:{line}: step {row['step']!r} is not a number") from None
            for key, cell in row.items():
                if key == "step" or key is None or cell in (None, ""):
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise TrackingError(f"{path}:{line}: {key} {cell!r} is not a number") from None
                if math.isfinite(value):
                    points.append((key, value, step))
    return points


def data_hashes(lock_path: Path, prefix: str = "data/training") -> dict[str, str]:
    """md5 of every dvc.lock out at or under ``prefix``, as ``data_md5/<path>`` tags."""
    if not lock_path.is_file():
        return {}
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    tags = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            path = str(out.get("path", ""))
            if (path == prefix or path.startswith(prefix + "/")) and out.get("md5"):
                tags[f"data_md5/{path}"] = str(out["md5"])
    return tags


def git_sha(project_dir: Path) -> str | None:
    """HEAD of the project's git repository, or None outside one."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else None


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def identity_key(adapter_dir: Path, metric_files: Iterable[Path | None], params: Mapping[str, str]) -> str:
    """sha256 over the adapter's files, the metrics files and the params: the run's identity tag."""
    digest = hashlib.sha256()
    for path in sorted(p for p in adapter_dir.rglob("*") if p.is_file()):
        digest.update(f"adapter/{path.relative_to(adapter_dir).as_posix()}\0{_file_digest(path)}\n".encode())
    for path in metric_files:
        if path is not None:
            digest.update(f"metrics/{path.name}\0{_file_digest(path)}\n".encode())
    digest.update(json.dumps(dict(params), sort_keys=True).encode())
    return digest.hexdigest()


def _existing(path: Path | None, what: str) -> Path | None:
    if path is not None and not path.is_file():
        raise TrackingError(f"{what} not found: {path}")
    return path


def collect_run(
    run_dir: Path,
    *,
    train_metrics: Path | None = None,
    eval_metrics: Path | None = None,
    predictions_sample: Path | None = None,
    log_checkpoints: bool = False,
    project_dir: Path = Path("."),
    env: Mapping[str, str] | None = None,
) -> RunRecord:
    """Build the record of ``run_dir``; optional files are logged only when given (and must exist)."""
    env = env or {}
    run_json = run_dir / "run.json"
    adapter_dir = run_dir / "adapter"
    if not run_dir.is_dir():
        raise TrackingError(f"run dir not found: {run_dir}")
    if not run_json.is_file():
        raise TrackingError(f"{run_dir} has no run.json: not a finished training run")
    if not adapter_dir.is_dir() or not any(adapter_dir.iterdir()):
        raise TrackingError(f"{run_dir} has no adapter/ folder (or it is empty): nothing to log")
    train_metrics = _existing(train_metrics, "train metrics")
    eval_metrics = _existing(eval_metrics, "eval metrics")
    try:
        run_info = json.loads(run_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TrackingError(f"{run_json}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(run_info, dict):
        raise TrackingError(f"{run_json}: expected a JSON object")

    params = training_params(run_info)
    metrics: list[tuple[str, float, int]] = []
    for name in ("train.csv", "val.csv"):
        if (run_dir / "history" / name).is_file():
            metrics += read_history(run_dir / "history" / name)
    for path, prefix in ((train_metrics, "train/"), (eval_metrics, "eval/")):
        if path is not None:
            metrics += [(k, v, 0) for k, v in numeric_metrics(json.loads(path.read_text(encoding="utf-8")), prefix).items()]

    tags = {"run_dir": run_dir.as_posix(), **data_hashes(project_dir / "dvc.lock")}
    base_model = (run_info.get("params") or {}).get("model") or run_info.get("model") or run_info.get("base_model")
    if isinstance(base_model, str) and base_model:
        tags["base_model"] = base_model
    sha = git_sha(project_dir)
    if sha:
        tags["git_sha"] = tags["mlflow.source.git.commit"] = sha
    if isinstance(run_info.get("git_sha"), str) and run_info["git_sha"]:
        tags["train_git_sha"] = run_info["git_sha"]
    if isinstance(run_info.get("status"), str):
        tags["train_status"] = run_info["status"]  # "completed"; a failed or interrupted run can be logged too
    if env.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = env["DVC_EXP_NAME"]

    artifacts = [Artifact(run_json)]
    artifacts += [Artifact(run_dir / n) for n in ("train.log", "train.err", "loss_curve.png") if (run_dir / n).is_file()]
    for path in sorted(p for p in adapter_dir.iterdir() if p.is_file()):
        if log_checkpoints or not CHECKPOINT_RE.match(path.name):
            artifacts.append(Artifact(path, "adapter"))
    artifacts += [Artifact(p, "history") for p in sorted((run_dir / "history").glob("*.csv"))]
    artifacts += [Artifact(p, "metrics") for p in (train_metrics, eval_metrics) if p is not None]
    if predictions_sample is not None:
        artifacts.append(Artifact(predictions_sample, "eval"))

    run_name = env.get("DVC_EXP_NAME") or str(run_info.get("started_at") or run_dir.resolve().name)
    identity = identity_key(adapter_dir, (train_metrics, eval_metrics), params)
    return RunRecord(run_name, identity, params, {IDENTITY_TAG: identity, **tags}, metrics, artifacts)


def write_sample(source: Path, dest: Path, rows: int) -> int:
    """Copy the first ``rows`` non-blank lines of a JSONL file; returns how many were copied."""
    copied = 0
    with open(source, encoding="utf-8") as src, open(dest, "w", encoding="utf-8", newline="\n") as out:
        for line in src:
            if copied >= rows:
                break
            if line.strip():
                out.write(line.rstrip("\r\n") + "\n")
                copied += 1
    return copied
