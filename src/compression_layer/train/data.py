"""Training data: the chat JSONL splits, tokenized with mlx-lm's datasets, and the batches the loop reads.

Batching follows mlx-lm's ``iterate_batches`` (rows sorted by length, padded to a multiple of 32 plus one,
truncated at max_seq_length) with two differences: rows are sorted by their real token length (mlx-lm's
CacheDataset sorts by the number of JSON keys, i.e. not at all), and the data order comes from a
generator seeded by ``seed`` alone, so evaluations never shift it and a run can be replayed.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import mlx.core as mx
import numpy as np

from compression_layer.io import iter_lines
from compression_layer.train.errors import TrainError

PAD_TO = 32  # as mlx-lm: padding to a few shapes keeps mx.compile from recompiling for every length


def resolve_split(path: str | Path, name: str) -> Path:
    """``path`` is the split file itself or a directory holding ``{name}.jsonl``."""
    path = Path(path)
    return path / f"{name}.jsonl" if path.is_dir() else path


def read_rows(path: str | Path, name: str) -> list[dict[str, Any]]:
    """All rows of one split; a missing file, an empty file or a bad line is a TrainError."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{name} split not found: {path}")
    rows = []
    for number, line in iter_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not any(k in row for k in ("messages", "text", "prompt")):
            raise TrainError(f"{path}:{number}: expected a chat row {{\"messages\": [...]}} (or text / prompt+completion)")
        rows.append(row)
    if not rows:
        raise TrainError(f"{name} split is empty: {path}")
    return rows


class TokenizedSplit:
    """A split tokenized once: (tokens, prompt_offset) per row, in file order."""

    def __init__(self, rows: list[dict[str, Any]], tokenizer: Any, mask_prompt: bool, name: str):
        from mlx_lm.tuner.datasets import CacheDataset, create_dataset

        try:
            dataset = CacheDataset(create_dataset(rows, tokenizer, types.SimpleNamespace(mask_prompt=mask_prompt)))
            self.items: list[tuple[list[int], int]] = [dataset[i] for i in range(len(dataset))]
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainError(f"{name} split: cannot tokenize its rows ({str(exc).splitlines()[0]})") from None
        self.name = name
        self.lengths = np.array([len(tokens) for tokens, _ in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)


def check_batch_size(split: TokenizedSplit, batch_size: int, world_size: int = 1) -> None:
    if len(split) < batch_size:
        raise TrainError(f"{split.name} split has {len(split)} rows, fewer than batch_size={batch_size}")
    if batch_size % world_size:
        raise TrainError(f"batch_size={batch_size} is not divisible by the number of processes ({world_size})")


@dataclass
class Batching:
    """The fixed batches of a split: rows sorted by length, cut into groups of ``batch_size``."""

    split: TokenizedSplit
    batch_size: int
    max_seq_length: int
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        # A row whose prompt fills max_seq_length has no completion token left to learn from; a batch of
        # only such rows (length sorting groups them) would make the loss 0/0 = NaN. Leave them out.
        offsets = np.array([offset for _, offset in self.split.items], dtype=np.int64)
        trainable = np.minimum(self.split.lengths, self.max_seq_length) > offsets + 1
        self.skipped_rows = int((~trainable).sum())
        order = np.argsort(self.split.lengths, kind="stable")
        order = order[trainable[order]]
        if len(order) < self.batch_size:
            raise TrainError(
                f"{self.split.name} split has {len(order)} rows with completion tokens within "
                f"max_seq_length={self.max_seq_length}, fewer than batch_size={self.batch_size}; raise max_seq_length"
            )
        n = len(order) - self.batch_size + 1
        # Each process of a distributed run takes every world_size-th row of a batch (as mlx-lm).
        self.batches = [
            order[i + self.rank : i + self.batch_size : self.world_size] for i in range(0, max(n, 0), self.batch_size)
        ]
        self.truncated_rows = int((self.split.lengths > self.max_seq_length).sum())

    def __len__(self) -> int:
        return len(self.batches)

    def make(self, index: int) -> tuple[mx.array, mx.array]:
        """The padded token array and (prompt offset, length) pairs of batch ``index``."""
        rows = [self.split.items[j] for j in self.batches[index]]
        lengths = [min(len(tokens), self.max_seq_length) for tokens, _ in rows]
        width = min(1 + PAD_TO * ((max(lengths) + PAD_TO - 1) // PAD_TO), self.max_seq_length)
        arr = np.zeros((len(rows), width), np.int32)
        for j, ((tokens, _), n) in enumerate(zip(rows, lengths)):
            arr[j, :n] = tokens[:n]
        offsets = [offset for _, offset in rows]
        return mx.array(arr), mx.array(list(zip(offsets, lengths)))

    def epoch_order(self, rng: np.random.RandomState) -> np.ndarray:
        return rng.permutation(len(self.batches))


def train_batches(batching: Batching, seed: int, start: int = 0) -> Iterator[tuple[mx.array, mx.array]]:
    """Batches forever, reshuffled every epoch by a generator of its own seeded with ``seed``.

    ``start`` skips that many batches (a resumed run): the order is a function of the seed alone.
    """
    rng = np.random.RandomState(seed)
    while True:
        for index in batching.epoch_order(rng):
            if start > 0:
                start -= 1
                continue
            yield batching.make(int(index))


def val_batch_indices(batching: Batching, val_batches: int, seed: int) -> list[int]:
    """The validation batches, the same ones at every evaluation (so losses are comparable)."""
    order = np.random.RandomState(seed).permutation(len(batching))
    if val_batches != -1:
        order = order[:val_batches]
    return [int(i) for i in order]
