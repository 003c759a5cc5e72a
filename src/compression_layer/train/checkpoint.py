"""Adapter files in mlx-lm's layout: adapters.safetensors (latest) and NNNNNNN_adapters.safetensors,
plus best_adapters.safetensors (lowest validation loss)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

ADAPTER_FILE = "adapters.safetensors"
# The adapter with the lowest validation loss; evaluate and the compress CLI look for this name.
BEST_ADAPTER_FILE = "best_adapters.safetensors"


def checkpoint_name(iteration: int) -> str:
    return f"{iteration:07d}_adapters.safetensors"


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    return dict(tree_flatten(model.trainable_parameters()))


def save_weights(path: Path, weights: dict[str, mx.array]) -> None:
    """Write a safetensors file atomically (temp name, then rename), so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.safetensors")
    try:
        mx.save_safetensors(str(tmp), weights)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_adapter(adapter_dir: Path, model: nn.Module, iteration: int | None = None) -> Path:
    """Save the adapter as adapters.safetensors and, with ``iteration``, as its numbered checkpoint."""
    weights = adapter_weights(model)
    save_weights(adapter_dir / ADAPTER_FILE, weights)
    if iteration is None:
        return adapter_dir / ADAPTER_FILE
    numbered = adapter_dir / checkpoint_name(iteration)
    save_weights(numbered, weights)
    return numbered
