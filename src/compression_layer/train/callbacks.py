"""The run's recorder: train.log lines (flushed at every report), history CSVs, and the loss summary.

It is an mlx-lm ``TrainingCallback``: the loop calls it with mlx-lm's report dictionaries.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any, TextIO

from mlx_lm.tuner.callbacks import TrainingCallback

from compression_layer.io import atomic_open

TRAIN_COLUMNS = ("step", "train_loss", "learning_rate", "tokens_per_sec", "peak_mem_gb", "trained_tokens")
VAL_COLUMNS = ("step", "val_loss")


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Rewrite a whole CSV atomically (a few hundred rows at most), so a reader never sees half a line."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in columns} for row in rows)
    with atomic_open(path) as fh:
        fh.write(buf.getvalue())


class RunLog:
    """Human-readable progress: timestamped lines appended to train.log and echoed to stdout."""

    def __init__(self, path: Path, echo: TextIO | None = None):
        self.fh = open(path, "a", encoding="utf-8")
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
        self.fh.write(line)
        self.fh.flush()  # `tail -f train.log` sees every report at once
        if self.echo is not None:
            self.echo.write(line)
            self.echo.flush()

    def restore(self, previous: str) -> None:
        """Put a resumed run's earlier log (as saved with its checkpoint) before the lines written so far."""
        self.fh.flush()
        path = Path(self.fh.name)
        current = path.read_text(encoding="utf-8")
        with atomic_open(path) as fh:
            fh.write(previous + current)
        self.fh.close()
        self.fh = open(path, "a", encoding="utf-8")

    def close(self) -> None:
        self.fh.close()


class Chain(TrainingCallback):
    """Several callbacks called in order (the recorder first, then e.g. a tracking callback)."""

    def __init__(self, *callbacks: TrainingCallback):
        self.callbacks = callbacks

    def on_train_loss_report(self, info: dict) -> None:
        for cb in self.callbacks:
            cb.on_train_loss_report(info)

    def on_val_loss_report(self, info: dict) -> None:
        for cb in self.callbacks:
            cb.on_val_loss_report(info)

    def on_checkpoint(self, iteration: int, path: Path) -> None:
        for cb in self.callbacks:
            hook = getattr(cb, "on_checkpoint", None)
            if hook is not None:
                hook(iteration, path)

    def on_early_stop(self, info: dict) -> None:
        for cb in self.callbacks:
            hook = getattr(cb, "on_early_stop", None)
            if hook is not None:
                hook(info)


class Recorder(TrainingCallback):
    """Keeps the train/val series, writes them to history/*.csv and train.log at every report."""

    def __init__(self, log: RunLog, history_dir: Path | None, iters: int):
        self.log = log
        self.history_dir = history_dir
        self.width = len(str(iters))
        self.train_rows: list[dict[str, Any]] = []
        self.val_rows: list[dict[str, Any]] = []
        self.best_val_loss = math.inf
        self.best_val_iteration: int | None = None
        self.checkpoints: list[str] = []
        # Both files exist from the start (headers only), also for a run without a validation split.
        self._write("train.csv", TRAIN_COLUMNS, [])
        self._write("val.csv", VAL_COLUMNS, [])

    def _write(self, name: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        if self.history_dir is not None:  # None: a data-parallel rank other than 0 keeps the series in memory
            write_csv(self.history_dir / name, columns, rows)

    def on_train_loss_report(self, info: dict) -> None:
        row = {
            "step": info["iteration"],
            "train_loss": round(float(info["train_loss"]), 6),
            "learning_rate": float(f"{float(info['learning_rate']):.6g}"),
            "tokens_per_sec": round(float(info["tokens_per_second"]), 2),
            "peak_mem_gb": round(float(info["peak_memory"]), 4),
            "trained_tokens": int(info["trained_tokens"]),
            "cache_mem_gb": float(info.get("cache_memory", 0.0)),  # not a CSV column; shows clear_cache_threshold
        }
        self.train_rows.append(row)
        self._write("train.csv", TRAIN_COLUMNS, self.train_rows)
        self.log(
            f"iter {row['step']:>{self.width}} | train_loss {row['train_loss']:.4f} | lr {row['learning_rate']:.3e}"
            f" | {row['tokens_per_sec']:.1f} tok/s | {info['iterations_per_second']:.2f} it/s"
            f" | peak {row['peak_mem_gb']:.3f} GB | {row['trained_tokens']:,} tokens"
        )

    def on_val_loss_report(self, info: dict) -> None:
        loss = float(info["val_loss"])
        row = {"step": info["iteration"], "val_loss": round(loss, 6)}
        self.val_rows.append(row)
        improved = loss < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_val_iteration = loss, row["step"]
        self._write("val.csv", VAL_COLUMNS, self.val_rows)
        mark = " (best)" if improved else ""
        self.log(f"iter {row['step']:>{self.width}} | val_loss {loss:.4f}{mark} | {info['val_time']:.2f} s")

    def on_checkpoint(self, iteration: int, path: Path) -> None:
        self.checkpoints.append(path.name)
        self.log(f"iter {iteration:>{self.width}} | saved {path.name}")

    def on_early_stop(self, info: dict) -> None:
        self.log(f"iter {info['iteration']:>{self.width}} | early stop: {info['reason']}; best val_loss "
                 f"{info['best_val_loss']:.4f} at iter {info['best_val_iteration']}")

    def snapshot(self) -> dict[str, Any]:
        """The series so far, saved with a resume checkpoint."""
        return {"train_rows": self.train_rows, "val_rows": self.val_rows, "checkpoints": self.checkpoints}

    def restore(self, snapshot: dict[str, Any], best_loss: float | None, best_iteration: int | None) -> None:
        """Continue the series of a resumed run (history CSVs rewritten). The best loss is passed exact:
        val_rows hold rounded values."""
        self.train_rows = list(snapshot["train_rows"])
        self.val_rows = list(snapshot["val_rows"])
        self.checkpoints = list(snapshot["checkpoints"])
        if best_loss is not None:
            self.best_val_loss, self.best_val_iteration = best_loss, best_iteration
        if self.history_dir is not None:  # None on the ranks > 0 of a data-parallel run
            write_csv(self.history_dir / "train.csv", TRAIN_COLUMNS, self.train_rows)
            write_csv(self.history_dir / "val.csv", VAL_COLUMNS, self.val_rows)

    def summary(self) -> dict[str, Any]:
        last_train = self.train_rows[-1] if self.train_rows else {}
        return {
            "final_train_loss": last_train.get("train_loss"),
            "final_val_loss": self.val_rows[-1]["val_loss"] if self.val_rows else None,
            "best_val_loss": round(self.best_val_loss, 6) if self.best_val_iteration is not None else None,
            "best_val_iteration": self.best_val_iteration,
            "peak_memory_gb": max((r["peak_mem_gb"] for r in self.train_rows), default=None),
            "trained_tokens": last_train.get("trained_tokens", 0),
        }
