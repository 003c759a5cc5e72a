"""The optimizer and learning-rate schedule named by the params (the choices of `mlx_lm lora`)."""

from __future__ import annotations

from typing import Any, Callable

import mlx.optimizers as optim

from compression_layer.train.config import TrainConfig
from compression_layer.train.errors import TrainError

_CLASSES = {
    "adam": optim.Adam,
    "adamw": optim.AdamW,
    "sgd": optim.SGD,
    "adafactor": optim.Adafactor,
    "muon": optim.Muon,
    "lion": optim.Lion,
}


def build_schedule(config: TrainConfig) -> float | Callable[[Any], Any]:
    """The learning rate per optimizer step: warmup from warmup_init, then constant / cosine / linear.

    Uses mlx-lm's build_schedule (the `lr_schedule:` block of its YAML config). mlx optimizers evaluate the
    schedule at 0, 1, ... for updates 1, 2, ...; mlx-lm's warmup covers updates 1..warmup and the main
    schedule starts at update warmup + 2. The decay is sized so the last update uses min_learning_rate.
    """
    from mlx_lm.tuner.utils import build_schedule as mlx_build_schedule

    lr, steps, warmup = config.learning_rate, config.optimizer_steps, config.warmup_steps
    if config.lr_schedule == "constant" and warmup == 0:
        return lr
    decay = max(steps - warmup - 2, 1) if warmup else max(steps - 1, 1)
    if config.lr_schedule == "cosine":
        spec = {"name": "cosine_decay", "arguments": [lr, decay, config.min_learning_rate]}
    elif config.lr_schedule == "linear":
        spec = {"name": "linear_schedule", "arguments": [lr, config.min_learning_rate, decay]}
    else:
        spec = {"name": "linear_schedule", "arguments": [lr, lr, 1]}
    if warmup:
        spec.update(warmup=warmup, warmup_init=config.warmup_init)
    return mlx_build_schedule(spec)


def build_optimizer(config: TrainConfig) -> optim.Optimizer:
    kwargs = dict(config.optimizer_config)
    if config.weight_decay is not None:
        kwargs["weight_decay"] = config.weight_decay
    try:
        return _CLASSES[config.optimizer](learning_rate=build_schedule(config), **kwargs)
    except TypeError as exc:
        raise TrainError(f"optimizer '{config.optimizer}' does not accept optimizer_config {kwargs}: {exc}") from None
