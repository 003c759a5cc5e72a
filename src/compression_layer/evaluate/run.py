"""Generating the predictions of the rows not done yet, saving each as it finishes."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from compression_layer.evaluate.generate import generate, prompt_tokens
from compression_layer.evaluate.predictions import PredictionWriter, prediction
from compression_layer.evaluate.testset import TestRow


def generate_predictions(
    model: Any,
    tokenizer: Any,
    pending: Sequence[TestRow],
    writer: PredictionWriter,
    max_tokens: int,
    batch_size: int,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """Generate ``pending`` rows greedily, write each finished row, and return (rows by test row index,
    throughput). Rows finish out of order when batched; ``finalize`` puts the file back in order."""
    prompts = [prompt_tokens(tokenizer, test.input_text) for test in pending]
    done: dict[int, dict[str, Any]] = {}
    generated_tokens = 0
    started = time.perf_counter()
    for position, generation in generate(model, tokenizer, prompts, max_tokens, batch_size):
        test = pending[position]
        row = prediction(test, generation)
        writer.write(row)
        done[test.row] = row
        generated_tokens += generation.tokens
        advance(1)
    seconds = time.perf_counter() - started
    throughput = {
        "rows": len(done),
        "seconds": seconds,
        "generated_tokens": generated_tokens,
        "rows_per_sec": len(done) / seconds if done and seconds > 0 else None,
        "generated_tokens_per_sec": generated_tokens / seconds if done and seconds > 0 else None,
        "batch_size": batch_size,
    }
    return done, throughput
