"""The best adapter and early stopping: what every validation loss decides.

The best adapter is the one with the strictly lowest validation loss so far (the base model's loss at
iteration 0 included). Early stopping counts validations in a row whose loss is not below that best by
more than ``min_delta``; after ``patience`` of them the run stops.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Verdict:
    best: bool  # this validation's adapter is the new best
    stop: bool  # patience is exhausted: stop training after this iteration


@dataclass
class ValidationWatch:
    patience: int | None = None  # None or 0 = early stopping off
    min_delta: float = 0.0
    best_loss: float = math.inf
    best_iteration: int | None = None
    bad_validations: int = 0  # validations in a row without an improvement larger than min_delta
    stopped: dict[str, Any] | None = None  # when and why the run stopped early

    @property
    def enabled(self) -> bool:
        return bool(self.patience)

    def observe(self, iteration: int, loss: float) -> Verdict:
        improved_enough = loss < self.best_loss - self.min_delta
        best = loss < self.best_loss
        if best:
            self.best_loss, self.best_iteration = loss, iteration
        self.bad_validations = 0 if improved_enough else self.bad_validations + 1
        stop = self.enabled and self.bad_validations >= self.patience
        if stop:
            self.stopped = {
                "iteration": iteration,
                "reason": f"val_loss did not improve by more than {self.min_delta:g} for {self.bad_validations} "
                f"validations in a row (early_stopping_patience {self.patience})",
                "best_val_loss": round(self.best_loss, 6),
                "best_val_iteration": self.best_iteration,
            }
        return Verdict(best=best, stop=stop)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["best_loss"] = None if math.isinf(self.best_loss) else self.best_loss
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], patience: int | None, min_delta: float) -> "ValidationWatch":
        best = data.get("best_loss")
        return cls(patience=patience, min_delta=min_delta, best_loss=math.inf if best is None else float(best),
                   best_iteration=data.get("best_iteration"), bad_validations=int(data.get("bad_validations", 0)))
