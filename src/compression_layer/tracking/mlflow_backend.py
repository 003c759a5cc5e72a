"""The MLflow backend of the Tracker interface (any tracking URI: server, DagsHub, local sqlite).

Uses only MlflowClient calls that an MLflow 2.x server answers (DagsHub runs 2.7): experiments,
runs, batched params/metrics/tags, metric history, artifact uploads. No model registry, no logged models,
and no ``list_artifacts`` (the 3.x client's also searches logged models, which a 2.x server answers 404).
mlflow is imported when a tracker is built (it takes about 2 s), never when this package is imported.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Iterator, Mapping

from compression_layer.tracking.base import RunState
from compression_layer.tracking.collect import IDENTITY_TAG
from compression_layer.tracking.target import Target, TrackingError, scrub

# MLflow's own batch limits (the client splits larger batches too).
_METRICS_PER_BATCH = 1000


class _Scrubber(logging.Filter):
    """Removes secrets from MLflow's own log lines (a retry warning prints the failing URL)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage(), self.secrets)
        record.args = None
        return True


def _reason(message: str, timeout: str | None) -> str:
    """A short cause for a failed request, from the text of MLflow's or requests' exception."""
    status = re.search(r"error code (\d{3})|status code (\d{3})|HTTP (\d{3})", message)
    code = next((g for g in status.groups() if g), None) if status else None
    if code in ("401", "403"):
        return f"the server refused the credentials (HTTP {code}); check the token / MLFLOW_TRACKING_USERNAME"
    if code:
        return f"the server answered HTTP {code}"
    if "Connection refused" in message:
        return "connection refused (is the server running?)"
    if re.search(r"Name or service not known|Failed to resolve|nodename nor servname|getaddrinfo failed", message):
        return "host name not found (no network?)"
    if re.search(r"timed out|Timeout", message):
        return f"no answer within {timeout or '?'} s (MLFLOW_HTTP_REQUEST_TIMEOUT)"
    first = message.strip().splitlines()[0] if message.strip() else type(message).__name__
    return first[:300]


class MlflowTracker:
    """Logs one run through ``MlflowClient``; every failure becomes a one-line TrackingError."""

    def __init__(self, target: Target, timeout: str | None = None) -> None:
        import mlflow  # noqa: F401  (the slow import happens here, in the log stage only)
        from mlflow.tracking import MlflowClient

        self.target = target
        self.timeout = timeout
        # Handler filters see the records of every mlflow.* logger (logger filters see only their own).
        self._filter = _Scrubber(target.secrets)
        self._handlers = logging.getLogger("mlflow").handlers + logging.getLogger().handlers
        for handler in self._handlers:
            handler.addFilter(self._filter)
        self.client = MlflowClient(tracking_uri=target.uri)
        self.run_id: str | None = None
        self._pending: list = []

    @contextlib.contextmanager
    def _calls(self, doing: str) -> Iterator[None]:
        try:
            yield
        except TrackingError:
            raise
        except Exception as exc:  # MlflowException, requests errors, sqlite errors: all one line
            text = scrub(str(exc), self.target.secrets)
            raise TrackingError(f"{doing} on {self.target.describe()} failed: {_reason(text, self.timeout)}") from None

    def _experiment_id(self, name: str) -> str:
        with self._calls(f"looking up experiment '{name}'"):
            experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage != "active":
                raise TrackingError(
                    f"experiment '{name}' is deleted on {self.target.describe()}; restore it or set experiment_name"
                )
            return experiment.experiment_id
        location = None
        if self.target.artifact_root:
            # Local store: artifacts in the project's mlartifacts/ (where `mlflow ui` keeps its own too).
            location = f"{self.target.artifact_root}/{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}"
        with self._calls(f"creating experiment '{name}'"):
            return self.client.create_experiment(name, artifact_location=location)

    def open_run(self, experiment: str, identity: str, run_name: str, tags: Mapping[str, str]) -> RunState:
        from mlflow.entities import ViewType

        experiment_id = self._experiment_id(experiment)
        with self._calls("searching runs"):
            found = self.client.search_runs(
                [experiment_id],
                filter_string=f"tags.{IDENTITY_TAG} = '{identity}'",
                run_view_type=ViewType.ACTIVE_ONLY,
                order_by=["attributes.start_time ASC"],
                max_results=5,
            )
        if found:
            run = found[0]
            self.run_id = run.info.run_id
            return RunState(
                run_id=run.info.run_id,
                experiment_id=experiment_id,
                run_name=run.info.run_name or "",
                created=False,
                finished=run.info.status == "FINISHED",
                params=dict(run.data.params),
                tags=dict(run.data.tags),
            )
        with self._calls("creating the run"):
            run = self.client.create_run(experiment_id, tags=dict(tags), run_name=run_name)
        self.run_id = run.info.run_id
        return RunState(
            run.info.run_id, experiment_id, run.info.run_name or run_name, created=True, finished=False,
            tags=dict(run.data.tags),
        )

    def metric_steps(self, key: str) -> set[int]:
        self._flush()
        with self._calls(f"reading the history of metric {key}"):
            return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        with self._calls("logging params"):
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        with self._calls("setting tags"):
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(key, float(value), now, int(step)) for key, value in metrics.items()]
        if len(self._pending) >= _METRICS_PER_BATCH:
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_METRICS_PER_BATCH], self._pending[_METRICS_PER_BATCH:]
            with self._calls("logging metrics"):
                self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, folder: str = "") -> None:
        self._flush()
        with self._calls(f"uploading {Path(path).name}"):
            self.client.log_artifact(self.run_id, str(path), folder or None)

    def log_artifacts(self, directory: Path, folder: str = "") -> None:
        self._flush()
        with self._calls(f"uploading {Path(directory).name}/"):
            self.client.log_artifacts(self.run_id, str(directory), folder or None)

    def close(self, status: str = "FINISHED") -> None:
        try:
            if status == "FINISHED":
                self._flush()
                with self._calls("finishing the run"):
                    self.client.set_terminated(self.run_id, status)
            elif self.run_id is not None:
                # Best effort after a failure: the server may be the thing that failed.
                with contextlib.suppress(Exception):
                    self.client.set_terminated(self.run_id, status)
        finally:
            for handler in self._handlers:
                handler.removeFilter(self._filter)
