"""Helpers for the train-stage tests: small chat splits and a quick TrainConfig for the tiny model."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

from compression_layer.data.chat import to_chat
from compression_layer.params import build
from compression_layer.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
WORDS = "server cache request payload user record queue retry deploy config token batch error worker".split()


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """Chat rows of varied length (so batches differ and long rows exist)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        sentences = [f"The {rng.choice(WORDS)} handles each {rng.choice(WORDS)} when the {rng.choice(WORDS)} is ready."
                     for _ in range(rng.randint(1, 6))]
        compressed = " | ".join(f"{rng.choice(WORDS)}→{rng.choice(WORDS)}" for _ in sentences)
        rows.append(to_chat(" ".join(sentences), compressed))
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_data(root: Path, n_train: int = 24, n_valid: int = 8) -> Path:
    """A directory with train.jsonl and valid.jsonl."""
    write_rows(root / "train.jsonl", chat_rows(n_train, seed=1))
    write_rows(root / "valid.jsonl", chat_rows(n_valid, seed=2))
    return root


QUICK = dict(iters=4, batch_size=2, lora_layers=2, steps_per_report=2, steps_per_eval=2, save_every=2,
             val_batches=2, max_seq_length=256, learning_rate=1e-3)


def quick_config(model: Path | str, **overrides) -> TrainConfig:
    return build(TrainConfig, {"model": str(model), **QUICK, **overrides}, "test")


def quick_train(model, tmp_path: Path, data: Path | None = None, callbacks=(), **overrides):
    """Train the tiny model for a few iterations into tmp_path/run; returns the TrainResult."""
    from compression_layer.train.run import train

    data = data or make_data(tmp_path / "data")
    return train(quick_config(model, **overrides), data / "train.jsonl", data / "valid.jsonl", tmp_path / "run",
                 tmp_path / "metrics.json", echo=None, callbacks=callbacks)


def load_stage():
    """stages/train.py as a module (its main() is called in-process by the error tests)."""
    spec = importlib.util.spec_from_file_location("train_stage", ROOT / "stages/train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
