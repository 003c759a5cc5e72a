"""Loading the base model (local directory or hub id) and turning it into a LoRA model, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.nn as nn
from mlx.utils import tree_flatten

from compression_layer.train.config import TrainConfig
from compression_layer.train.errors import TrainError
from compression_layer.hub import hub_kwargs


def _looks_like_path(model: str) -> bool:
    """A local path (absolute, relative with ./ or ~, or more than one '/') rather than an 'org/name' hub id."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model



def resolve_model(model: str) -> Path:
    """The local directory of ``model``: the directory itself, or the hub id's snapshot in the HF cache.

    A hub id not in the cache is downloaded when the hub is reachable (huggingface_hub's own rules,
    HF_HUB_OFFLINE included); every failure becomes one TrainError line.
    """
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TrainError(f"model '{model}' is a file, expected a model directory (config.json + *.safetensors)")
        if not (path / "config.json").is_file():
            raise TrainError(f"model directory '{model}' has no config.json: not an MLX/Hugging Face model directory")
        return path
    if _looks_like_path(model):
        raise TrainError(f"model directory not found: {model}")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

    try:
        return Path(snapshot_download(model, allow_patterns=DEFAULT_ALLOW_PATTERNS, **hub_kwargs()))
    except HFValidationError:
        raise TrainError(f"unknown model '{model}': not a local directory nor a valid Hugging Face repo id") from None
    except GatedRepoError:
        raise TrainError(f"model '{model}' is gated on the Hugging Face hub: log in (hf auth login) and accept its terms") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise TrainError(f"unknown model '{model}': no such local directory or Hugging Face repo") from None
    except LocalEntryNotFoundError:
        raise TrainError(
            f"model '{model}' is not a local directory and not in the Hugging Face cache, and the hub cannot be "
            "reached (no network or HF_HUB_OFFLINE=1): download it once with network, or set model to a local directory"
        ) from None
    except OSError as exc:  # network errors that huggingface_hub did not wrap
        raise TrainError(f"model '{model}': cannot download from the Hugging Face hub ({exc})") from None


def load_base(config: TrainConfig) -> tuple[nn.Module, Any, Path]:
    """Load (model, tokenizer, local path); the model comes back frozen."""
    from mlx_lm.utils import load

    path = resolve_model(config.model)
    try:
        model, tokenizer = load(
            str(path),
            tokenizer_config={"trust_remote_code": config.trust_remote_code},
            trust_remote_code=config.trust_remote_code,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise TrainError(f"cannot load model '{config.model}' from {path}: {str(exc).splitlines()[0]}") from None
    model.freeze()
    return model, tokenizer, path


def layer_count(model: nn.Module) -> int:
    return len(model.layers)


def lora_parameters(config: TrainConfig) -> dict[str, Any]:
    """The ``lora_parameters`` block mlx-lm reads (rank, scale = alpha / rank, dropout, optional keys)."""
    params: dict[str, Any] = {"rank": config.lora_rank, "scale": config.lora_scale, "dropout": config.lora_dropout}
    if config.lora_keys is not None:
        params["keys"] = list(config.lora_keys)
    return params


def apply_lora(model: nn.Module, config: TrainConfig) -> int:
    """Replace the target linear layers of the last ``lora_layers`` blocks by LoRA layers; return the count.

    Call after ``mx.random.seed`` so the LoRA initialisation follows ``seed``.
    """
    from mlx_lm.tuner.utils import linear_to_lora_layers

    total = layer_count(model)
    if config.lora_layers > total:
        raise TrainError(f"lora_layers is {config.lora_layers} but model '{config.model}' has only {total} layers")
    if config.lora_keys is not None:
        present = {name for layer in model.layers for name, _ in layer.named_modules()}
        missing = [key for key in config.lora_keys if key not in present]
        if missing:
            raise TrainError(
                f"lora_keys {missing} not found in the model's blocks (e.g. {sorted(p for p in present if p)[:6]})"
            )
    linear_to_lora_layers(model, config.lora_layers, lora_parameters(config), use_dora=config.fine_tune_type == "dora")
    adapted = sum(1 for name, _ in tree_flatten(model.trainable_parameters()) if name.endswith("lora_a"))
    if adapted == 0:
        raise TrainError("no layer was turned into a LoRA layer: check lora_keys and lora_layers")
    return adapted


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts (quantized weights counted as their logical size)."""
    from mlx_lm.utils import get_total_parameters

    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    return trainable, get_total_parameters(model)


def adapter_config(config: TrainConfig, model_path: Path) -> dict[str, Any]:
    """adapter_config.json as mlx-lm writes it: `mlx_lm.load(..., adapter_path=)` and `mlx_lm.fuse` read
    fine_tune_type, num_layers and lora_parameters; the rest records how the adapter was trained."""
    values = config.to_dict()
    return {
        "model": config.model,
        "model_path": str(model_path),
        "fine_tune_type": config.fine_tune_type,
        "num_layers": config.lora_layers,
        "lora_parameters": lora_parameters(config),
        **{k: v for k, v in values.items() if k not in ("model", "fine_tune_type")},
    }


def write_adapter_config(path: Path, config: dict[str, Any]) -> None:
    from compression_layer.io import atomic_open

    with atomic_open(path) as fh:
        json.dump(config, fh, indent=4, sort_keys=True)
        fh.write("\n")
