"""The tracking interface, an offline null backend, and the idempotent sync of one RunRecord.

A backend opens (finds or creates) the run that carries a RunRecord's identity tag, then takes params,
tags, stepped metrics and artifacts, as torchtune's metric loggers do. ``sync_run`` logs only what the
run does not hold yet, so a rerun after success changes nothing and a rerun after a failure completes it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Protocol

from compression_layer.tracking.collect import IDENTITY_TAG, RunRecord
from compression_layer.tracking.target import TrackingError


@dataclasses.dataclass
class RunState:
    """What the backend already holds for the run (empty for a new run)."""

    run_id: str
    experiment_id: str
    run_name: str  # as the backend holds it (a found run keeps the name it was created with)
    created: bool  # this call created the run
    finished: bool  # an earlier call logged everything and closed it
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


class Tracker(Protocol):
    """A tracking backend (MLflow, or the null one)."""

    def open_run(self, experiment: str, identity: str, run_name: str, tags: Mapping[str, str]) -> RunState:
        """Find the experiment's run tagged with ``identity``, or create it with ``tags``."""

    def metric_steps(self, key: str) -> set[int]:
        """Steps already logged for ``key`` in the open run."""

    def log_params(self, params: Mapping[str, str]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, path: Path, folder: str = "") -> None: ...

    def log_artifacts(self, directory: Path, folder: str = "") -> None: ...

    def close(self, status: str = "FINISHED") -> None:
        """Flush what is buffered and mark the run with ``status`` (FINISHED or FAILED)."""


class NullTracker:
    """Logs nowhere and remembers every call: offline dry runs and tests of the sync logic."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[str, float, int]] = []
        self.artifacts: list[tuple[Path, str]] = []
        self.status: str | None = None

    def open_run(self, experiment: str, identity: str, run_name: str, tags: Mapping[str, str]) -> RunState:
        self.tags.update(tags)
        return RunState("offline", "offline", run_name, created=True, finished=False, tags=dict(tags))

    def metric_steps(self, key: str) -> set[int]:
        return {step for k, _, step in self.metrics if k == key}

    def log_params(self, params: Mapping[str, str]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.metrics += [(key, value, step) for key, value in metrics.items()]

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def log_artifact(self, path: Path, folder: str = "") -> None:
        self.artifacts.append((Path(path), folder))

    def log_artifacts(self, directory: Path, folder: str = "") -> None:
        for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
            sub = path.parent.relative_to(directory).as_posix()
            self.artifacts.append((path, "/".join(x for x in (folder, sub) if x and x != ".")))

    def close(self, status: str = "FINISHED") -> None:
        self.status = status


@dataclasses.dataclass(frozen=True)
class SyncResult:
    run_id: str
    experiment_id: str
    run_name: str
    created: bool  # a new run was created
    logged: bool  # anything was sent (False: the run was already complete)


def sync_run(tracker: Tracker, record: RunRecord, experiment: str) -> SyncResult:
    """Make the experiment hold ``record`` exactly once; never re-log a param with another value."""
    state = tracker.open_run(experiment, record.identity, record.run_name, record.tags)
    if state.finished:
        return SyncResult(state.run_id, state.experiment_id, state.run_name, created=False, logged=False)
    try:
        # Params are write-once in MLflow: one with another value means the run is not this record's.
        changed = sorted(k for k, v in record.params.items() if k in state.params and state.params[k] != v)
        if changed:
            raise TrackingError(
                f"run {state.run_id} (tag {IDENTITY_TAG}={record.identity[:12]}...) already holds other values "
                f"for params {', '.join(changed)}; delete that run to log this one"
            )
        missing_params = {k: v for k, v in record.params.items() if k not in state.params}
        if missing_params:
            tracker.log_params(missing_params)
        missing_tags = {k: v for k, v in record.tags.items() if k not in state.tags}
        if missing_tags:
            tracker.set_tags(missing_tags)

        by_step: dict[int, dict[str, float]] = {}
        done: dict[str, set[int]] = {}
        for key, value, step in record.metrics:
            if not state.created and key not in done:
                done[key] = tracker.metric_steps(key)  # a resumed run: skip points already logged
            if step not in done.get(key, ()):
                by_step.setdefault(step, {})[key] = value
        for step in sorted(by_step):
            tracker.log_metrics(by_step[step], step)

        # Artifacts overwrite themselves, so a resumed run simply uploads them again.
        for artifact in record.artifacts:
            tracker.log_artifact(artifact.path, artifact.folder)
    except BaseException:
        tracker.close("FAILED")
        raise
    tracker.close("FINISHED")
    return SyncResult(state.run_id, state.experiment_id, state.run_name, created=state.created, logged=True)
