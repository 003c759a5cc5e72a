"""The evaluation params: top-level ``eval_*`` keys of params.yaml (collected by config.py)."""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from compression_layer.params import ParamsError, field


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How the evaluate stage generates and scores (every key is top-level, so `-S eval_batch_size=1` works)."""

    eval_batch_size: int = field(16, "Prompts generated together with mlx-lm's batch_generate; 1 = one at a time.")
    eval_limit: Optional[int] = field(0, "Evaluate only the first N test rows; 0 or null = all rows.")
    eval_max_tokens: int = field(512, "Generation cap per row; a row that reaches it counts as unfinished.")
    eval_adapter: Literal["best", "last"] = field(
        "best",
        "Which adapter file of the run: 'best' (lowest validation loss; falls back to the final "
        "adapters.safetensors when the run has no best file) or 'last' (the final adapters.safetensors).",
    )
    eval_loss_batch_size: int = field(4, "Rows per batch when computing test loss (prompt masked).")
    eval_loss_batches: int = field(-1, "Batches of test loss to compute; -1 = the whole test split.")
    eval_max_seq_length: int = field(2048, "Longer test rows are truncated to this many tokens for the loss.")

    def validate(self) -> None:
        for name in ("eval_batch_size", "eval_max_tokens", "eval_loss_batch_size", "eval_max_seq_length"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_limit is not None and self.eval_limit < 0:
            raise ParamsError(f"eval_limit must be >= 0 (0 or null = all rows), got {self.eval_limit}")
        if self.eval_loss_batches == 0 or self.eval_loss_batches < -1:
            raise ParamsError(f"eval_loss_batches must be -1 (all) or >= 1, got {self.eval_loss_batches}")
