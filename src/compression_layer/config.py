"""Top-level params (training, evaluation, logging) and the check that params.yaml has no stray keys.

Data stages read their own sections (see params.py). Everything else in params.yaml is a top-level key
that belongs to exactly one of the config objects below, so `dvc exp run -S lora_rank=16` works as typed
and a misspelt key fails with a "did you mean" hint instead of being ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from compression_layer.params import ParamsError, build, load_yaml, unknown_key_error

# Sections read by the data stages (each validated by its own stage).
SECTIONS = ("preprocess_nl", "preprocess_code", "split", "dataset")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """All top-level params, grouped by the stage that reads them."""

    train: Any
    evaluate: Any
    log: Any
    distributed: Any = None


def _config_classes() -> dict[str, type]:
    # Imported here so that data stages, which never call this, do not import training code.
    from compression_layer.evaluate.config import EvalConfig
    from compression_layer.tracking.config import LogConfig
    from compression_layer.train.config import TrainConfig
    from compression_layer.train.distributed import DistributedConfig

    return {"train": TrainConfig, "evaluate": EvalConfig, "log": LogConfig, "distributed": DistributedConfig}


def load_run_config(path: str | Path = "params.yaml") -> RunConfig:
    """Read params.yaml; every top-level key must belong to a config object or be a data section."""
    data = load_yaml(path)
    classes = _config_classes()
    owner = {f.name: group for group, cls in classes.items() for f in dataclasses.fields(cls)}
    grouped: dict[str, dict[str, Any]] = {group: {} for group in classes}
    for key, value in data.items():
        if key in SECTIONS:
            continue
        if key not in owner:
            raise unknown_key_error(str(key), list(owner) + list(SECTIONS), str(path))
        grouped[owner[key]][key] = value
    return RunConfig(**{group: build(cls, grouped[group], str(path)) for group, cls in classes.items()})


__all__ = ["RunConfig", "load_run_config", "ParamsError", "SECTIONS"]
