"""The training params: top-level keys of params.yaml (collected by config.py), one documented object.

Modelled on mlx-lm's ``TrainingArgs`` plus the LoRA, optimizer and schedule options of ``mlx_lm lora``'s
YAML config, so every knob a user of mlx-lm expects is here, typed, and honoured by the stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

from compression_layer.params import ParamsError, field

OPTIMIZERS = ("adam", "adamw", "sgd", "adafactor", "muon", "lion")
# Optimizers whose mlx constructor takes a weight_decay argument.
_WEIGHT_DECAY_OPTIMIZERS = ("adamw", "sgd", "adafactor", "muon", "lion")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How the train stage fine-tunes (every key is top-level, so `dvc exp run -S lora_rank=16` works)."""

    model: str = field(
        "models/base/tiny-qwen3",
        "Base model: a local MLX model directory or a Hugging Face repo id "
        "(e.g. mlx-community/Qwen3-4B-Instruct-2507-8bit; a quantized model trains as QLoRA).",
    )
    fine_tune_type: Literal["lora", "dora"] = field("lora", "Adapter type: 'lora' or 'dora' (weight-decomposed LoRA).")
    lora_rank: int = field(8, "Rank r of the LoRA matrices.")
    lora_alpha: float = field(16.0, "LoRA alpha; the update is scaled by alpha / rank (mlx-lm's 'scale').")
    lora_dropout: float = field(0.0, "Dropout on the LoRA input during training, in [0, 1).")
    lora_layers: int = field(4, "Adapt the last N transformer blocks; -1 = all blocks (mlx-lm's num_layers).")
    lora_keys: Optional[list[str]] = field(
        None,
        "Module paths inside a block to adapt (e.g. [self_attn.q_proj, self_attn.v_proj]); "
        "null = every linear layer of the block, as mlx-lm does.",
    )
    iters: int = field(150, "Training iterations (optimizer steps times grad_accumulation_steps).")
    batch_size: int = field(4, "Rows per batch; the training split needs at least this many rows.")
    learning_rate: float = field(2e-4, "Peak learning rate (after warmup).")
    optimizer: Literal["adam", "adamw", "sgd", "adafactor", "muon", "lion"] = field(
        "adam", "Optimizer from mlx.optimizers: adam, adamw, sgd, adafactor, muon or lion."
    )
    weight_decay: Optional[float] = field(
        None, "Weight decay; null keeps the optimizer's own default (adamw 0.01, sgd 0). Not available for adam."
    )
    optimizer_config: dict[str, Any] = field(
        {}, "Extra keyword arguments for the optimizer (e.g. {betas: [0.9, 0.98]} or {momentum: 0.9})."
    )
    lr_schedule: Literal["constant", "cosine", "linear"] = field(
        "constant", "Learning-rate shape after warmup: constant, cosine decay or linear decay to min_learning_rate."
    )
    warmup_steps: int = field(0, "Optimizer steps of linear warmup from warmup_init to learning_rate.")
    warmup_init: float = field(0.0, "Learning rate at the first warmup step.")
    min_learning_rate: float = field(0.0, "Final learning rate of the cosine or linear decay.")
    grad_accumulation_steps: int = field(1, "Batches whose gradients are averaged into one optimizer update.")
    grad_checkpoint: bool = field(False, "Recompute activations in the backward pass: less memory, slower.")
    max_seq_length: int = field(512, "Longer rows are truncated to this many tokens.")
    mask_prompt: bool = field(True, "Train on the assistant reply only (the loss ignores system and user tokens).")
    steps_per_report: int = field(10, "Iterations between train-loss reports (train.log, history/train.csv).")
    steps_per_eval: int = field(50, "Iterations between validation-loss evaluations (also at the first and last).")
    save_every: int = field(50, "Iterations between adapter checkpoints (NNNNNNN_adapters.safetensors).")
    val_batches: int = field(25, "Validation batches per evaluation; -1 = the whole validation split.")
    early_stopping_patience: Optional[int] = field(
        None, "Stop after this many validations in a row without improvement; 0 or null = off (needs a valid split)."
    )
    early_stopping_min_delta: float = field(
        0.0, "A validation improves only when its loss is below the best so far by more than this."
    )
    seed: int = field(0, "Seed of the data order, LoRA initialisation and dropout.")
    clear_cache_threshold: int = field(
        0, "Clear MLX's allocator cache between steps when it grows beyond this many bytes; 0 = never."
    )
    trust_remote_code: bool = field(False, "Let the tokenizer run code shipped with a hub model.")

    def validate(self) -> None:
        positive = ("lora_rank", "iters", "batch_size", "grad_accumulation_steps", "max_seq_length",
                    "steps_per_report", "steps_per_eval", "save_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ParamsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.model.strip():
            raise ParamsError("model must name a model directory or a hub id, got an empty string")
        if self.lora_alpha <= 0:
            raise ParamsError(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ParamsError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_layers == 0 or self.lora_layers < -1:
            raise ParamsError(f"lora_layers must be -1 (all) or >= 1, got {self.lora_layers}")
        if self.lora_keys is not None and not self.lora_keys:
            raise ParamsError("lora_keys must list at least one module path, or be null for all linear layers")
        if self.learning_rate <= 0:
            raise ParamsError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.min_learning_rate < 0 or self.min_learning_rate > self.learning_rate:
            raise ParamsError(
                f"min_learning_rate must be in [0, learning_rate={self.learning_rate}], got {self.min_learning_rate}"
            )
        if self.warmup_steps < 0 or self.warmup_init < 0:
            raise ParamsError("warmup_steps and warmup_init must be >= 0")
        if self.warmup_steps >= self.optimizer_steps:
            raise ParamsError(
                f"warmup_steps ({self.warmup_steps}) must be smaller than the number of optimizer steps "
                f"({self.optimizer_steps} = iters / grad_accumulation_steps)"
            )
        if self.weight_decay is not None:
            if self.weight_decay < 0:
                raise ParamsError(f"weight_decay must be >= 0, got {self.weight_decay}")
            if self.optimizer not in _WEIGHT_DECAY_OPTIMIZERS:
                raise ParamsError(
                    f"weight_decay is not supported by optimizer '{self.optimizer}' (use adamw, or leave it null)"
                )
        if "learning_rate" in self.optimizer_config or "weight_decay" in self.optimizer_config:
            raise ParamsError("optimizer_config must not set learning_rate or weight_decay: use the top-level keys")
        if self.val_batches == 0 or self.val_batches < -1:
            raise ParamsError(f"val_batches must be -1 (all) or >= 1, got {self.val_batches}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            raise ParamsError(f"early_stopping_patience must be >= 0 (0 or null = off), got {self.early_stopping_patience}")
        if self.early_stopping_min_delta < 0:
            raise ParamsError(f"early_stopping_min_delta must be >= 0, got {self.early_stopping_min_delta}")
        if self.clear_cache_threshold < 0:
            raise ParamsError(f"clear_cache_threshold must be >= 0, got {self.clear_cache_threshold}")

    @property
    def lora_scale(self) -> float:
        """mlx-lm's LoRA ``scale``: alpha / rank."""
        return self.lora_alpha / self.lora_rank

    @property
    def optimizer_steps(self) -> int:
        """Optimizer updates in the run (the LR schedule's length)."""
        return max(self.iters // self.grad_accumulation_steps, 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
