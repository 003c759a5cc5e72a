"""Batching leaves out rows whose prompt fills max_seq_length: they have no completion token to learn.

Length sorting puts such rows together; a batch of only them made the masked loss 0/0 = NaN and every
later step NaN (seen on the embedded corpus at max_seq_length 512).
"""

from __future__ import annotations

import numpy as np
import pytest

from compression_layer.train import data
from compression_layer.train.errors import TrainError


def _split(items: list[tuple[list[int], int]]) -> data.TokenizedSplit:
    split = object.__new__(data.TokenizedSplit)
    split.items, split.name = items, "training"
    split.lengths = np.array([len(t) for t, _ in items], dtype=np.int64)
    return split


def test_rows_without_completion_tokens_are_left_out_and_counted():
    short = [(list(range(20)), 10) for _ in range(4)]  # prompt 10 tokens, completion 10
    prompt_too_long = [(list(range(40)), 35) for _ in range(4)]  # prompt beyond max_seq_length=32
    batching = data.Batching(_split(short + prompt_too_long), batch_size=2, max_seq_length=32)
    assert batching.skipped_rows == 4
    kept = {int(i) for batch in batching.batches for i in batch}
    assert kept == {0, 1, 2, 3}
    for index in range(len(batching)):
        _, lengths = batching.make(index)
        offsets, ends = np.array(lengths)[:, 0], np.array(lengths)[:, 1]
        assert (ends > offsets + 1).all()


def test_too_few_trainable_rows_is_one_clear_error():
    items = [(list(range(40)), 35) for _ in range(3)] + [(list(range(20)), 10)]
    with pytest.raises(TrainError, match="completion tokens within max_seq_length=32"):
        data.Batching(_split(items), batch_size=2, max_seq_length=32)
