"""Params of the log stage (top-level keys of params.yaml, collected by compression_layer.config)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from compression_layer.params import ParamsError, build, field, load_yaml


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """What the log stage sends to the tracking server and how long it waits for it."""

    experiment_name: str = field("compression-layer", "MLflow experiment the runs are logged under (created if missing).")
    log_predictions_sample: int = field(
        20, "Rows of models/eval/predictions.jsonl logged as an artifact (0 = none, the whole file is not logged)."
    )
    log_checkpoints: bool = field(
        False, "Also log the intermediate NNNNNNN_adapters.safetensors checkpoints, not only the final adapter."
    )
    log_http_timeout: int = field(
        30,
        "Seconds to connect to the tracking server or wait for one answer (MLFLOW_HTTP_REQUEST_TIMEOUT, unless "
        "set); a refused connection or unknown host fails at once, this bounds a silent host or a slow upload.",
    )
    log_http_retries: int = field(
        0, "Retries of a failed HTTP request (MLFLOW_HTTP_REQUEST_MAX_RETRIES, unless set); MLflow's 7 wait minutes."
    )

    def validate(self) -> None:
        if not self.experiment_name.strip():
            raise ParamsError("experiment_name must not be empty")
        for name in ("log_predictions_sample", "log_http_retries"):
            if getattr(self, name) < 0:
                raise ParamsError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.log_http_timeout <= 0:
            raise ParamsError(f"log_http_timeout must be > 0, got {self.log_http_timeout}")


def load_log_config(path: str | Path = "params.yaml") -> LogConfig:
    """The log keys of params.yaml; other top-level keys belong to other stages, which check them."""
    data = load_yaml(path)
    names = {f.name for f in dataclasses.fields(LogConfig)}
    return build(LogConfig, {k: v for k, v in data.items() if k in names}, str(path))
