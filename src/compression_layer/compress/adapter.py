"""Which adapter file to apply and which base model it belongs to, read from its adapter_config.json.

The train stage records the base model as given (``model``, often a path relative to the project)
and as resolved (``model_path``). A relative path is looked up from the current directory first,
then from the adapter folder's ancestors, so the default adapter works from anywhere in the project.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression_layer.compress.errors import AdapterNotFoundError, CompressError, ModelMismatchError
from compression_layer.evaluate.generate import EvaluateError, adapter_weights

DEFAULT_ADAPTER = Path("models/runs/mlx/latest/adapter")
CHECKPOINTS = ("best", "last")
# mlx-lm's own default, for adapters whose config does not record the training max_seq_length.
DEFAULT_MAX_SEQ_LENGTH = 2048


@dataclass(frozen=True)
class Adapter:
    """An adapter folder, its config, and the weights file chosen (best or last)."""

    path: Path
    config: dict[str, Any]
    weights: Path

    @property
    def trained_on(self) -> str | None:
        """The base model the adapter was trained on, as training was given it."""
        model = self.config.get("model")
        return model if isinstance(model, str) and model.strip() else None

    @property
    def max_seq_length(self) -> int:
        """The longest row (tokens) the adapter saw in training."""
        value = self.config.get("max_seq_length")
        return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_SEQ_LENGTH


def read_adapter(path: str | Path, checkpoint: str = "best") -> Adapter:
    """The adapter at ``path``: its config and the best-validation file when present, else adapters.safetensors."""
    if checkpoint not in CHECKPOINTS:
        raise CompressError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    path = Path(path)
    if not path.exists():
        hint = "train one first (dvc repro train)" if path == DEFAULT_ADAPTER else "check the path"
        raise AdapterNotFoundError(f"no adapter at {path}: {hint}, or give its folder with --adapter PATH")
    if not (path / "adapter_config.json").is_file():
        raise AdapterNotFoundError(f"{path} is not an adapter folder: adapter_config.json missing")
    try:
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompressError(f"cannot read {path / 'adapter_config.json'}: {exc}") from None
    if not isinstance(config, dict):
        raise CompressError(f"{path / 'adapter_config.json'} is not a JSON object")
    try:
        weights = adapter_weights(path, checkpoint)
    except EvaluateError as exc:
        raise AdapterNotFoundError(str(exc)) from None
    return Adapter(path, config, weights)


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith(("/", ".", "~"))


def local_model_dir(name: str, anchor: Path | None = None) -> Path | None:
    """The local model directory ``name`` refers to (resolved), or None: ``name`` itself, ``name``
    under one of ``anchor``'s ancestors, or a hub id's snapshot already in the Hugging Face cache."""
    if not name:
        return None
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    if anchor is not None and not path.is_absolute():
        for parent in anchor.resolve().parents:
            if (parent / path / "config.json").is_file():
                return (parent / path).resolve()
    if _looks_like_hub_id(name):
        from huggingface_hub import snapshot_download

        try:  # cache only: a comparison must not download
            return Path(snapshot_download(name, local_files_only=True)).resolve()
        except (OSError, ValueError):
            return None
    return None


def _trained_dirs(adapter: Adapter) -> set[Path]:
    names = [adapter.trained_on or "", str(adapter.config.get("model_path") or "")]
    return {d for d in (local_model_dir(n, adapter.path) for n in names) if d is not None}


def base_model(adapter: Adapter, model: str | None = None) -> str:
    """The base model to load under ``adapter``: ``model`` when given (it must be the one the adapter
    was trained on), else the one named in adapter_config.json."""
    trained_on = adapter.trained_on
    if model is None:
        if trained_on is None:
            raise CompressError(f"{adapter.path / 'adapter_config.json'} names no base model: give one with --model")
        found = _trained_dirs(adapter)
        local = local_model_dir(trained_on, adapter.path)
        return str(local) if local else (str(found.pop()) if found else trained_on)
    if trained_on is None:
        return model
    if model == trained_on:
        return base_model(adapter)  # the same name, looked up as for the default
    given = local_model_dir(model)
    if given is None and not _looks_like_hub_id(model):
        raise CompressError(f"model directory not found: {model}")
    if given is None or given not in _trained_dirs(adapter):
        raise ModelMismatchError(
            f"adapter {adapter.path} was trained on base model '{trained_on}', not '{model}': "
            "leave out --model to use its own base model"
        )
    return model
