"""Loading a base model with an adapter, greedy generation (batched or one at a time), and test loss.

Batched generation uses mlx-lm's ``BatchGenerator`` (what ``batch_generate`` drives) with continuous
batching: a row that finishes frees its slot for the next prompt at once, and each finished row is
handed back immediately so the caller can save it. ``batch_size=1`` generates one prompt at a time
with ``stream_generate``, as the reference evaluator did; both are greedy and give the same tokens.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from compression_layer.data.chat import prompt_messages

# Prompts prefilled together. A few prompts of a few hundred tokens already fill a forward pass; 16 at
# once took 2-4x longer than 4 at a time on CPU (padding and attention masks grow with the batch).
PREFILL_BATCH_SIZE = 4
BEST_ADAPTER_FILE = "best_adapters.safetensors"
LAST_ADAPTER_FILE = "adapters.safetensors"


class EvaluateError(ValueError):
    """A model, adapter or test file that cannot be evaluated; the message is one line for the user."""


@dataclass(frozen=True)
class Generation:
    """One finished generation: decoded text (think tags removed), model tokens, and why it stopped."""

    text: str
    tokens: int
    finish_reason: str  # "stop" (end-of-turn token) or "length" (hit max_tokens)

    @property
    def unfinished(self) -> bool:
        return self.finish_reason == "length"


def adapter_weights(adapter_dir: str | Path, which: str = "best") -> Path:
    """The adapter file to evaluate: the best-validation-loss file when asked for and present,
    otherwise the final ``adapters.safetensors``."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise EvaluateError(f"no adapter at {adapter_dir} (adapter_config.json missing)")
    best, last = adapter_dir / BEST_ADAPTER_FILE, adapter_dir / LAST_ADAPTER_FILE
    if which == "best" and best.is_file():
        return best
    if not last.is_file():
        raise EvaluateError(f"no {LAST_ADAPTER_FILE} in {adapter_dir}")
    return last


def load(model: str, adapter_dir: str | Path | None, which: str = "best") -> tuple[Any, Any, Path | None]:
    """Base model + tokenizer with the chosen adapter file applied; returns (model, tokenizer, file)."""
    import mlx_lm
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    weights = adapter_weights(adapter_dir, which) if adapter_dir is not None else None
    try:
        lm, tokenizer = mlx_lm.load(model, adapter_path=str(adapter_dir) if adapter_dir is not None else None)
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError) as exc:
        raise EvaluateError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from None
    except ValueError as exc:  # e.g. an adapter made for another base model
        with_adapter = f" with adapter {adapter_dir}" if adapter_dir is not None else ""
        raise EvaluateError(f"cannot load model {model!r}{with_adapter}: {str(exc).splitlines()[0]}") from None
    if weights is not None and weights.name != LAST_ADAPTER_FILE:
        lm.load_weights(str(weights), strict=False)
    lm.eval()
    return lm, tokenizer, weights


def prompt_tokens(tokenizer: Any, verbose: str) -> list[int]:
    """Token ids of the chat prompt for ``verbose``, exactly as training masks it (generation prompt on)."""
    return list(tokenizer.apply_chat_template(prompt_messages(verbose), add_generation_prompt=True))


_THINK_TAG_RE = re.compile(r"</?think>", re.IGNORECASE)


def clean_output(text: str) -> str:
    """Remove think tags (the tags only) and surrounding whitespace; nothing else is trimmed."""
    return _THINK_TAG_RE.sub("", text).strip()


def _decode(tokenizer: Any, tokens: list[int], finish_reason: str) -> Generation:
    return Generation(clean_output(tokenizer.decode(tokens)), len(tokens), finish_reason)


def generate_one_at_a_time(
    model: Any, tokenizer: Any, prompts: Sequence[list[int]], max_tokens: int
) -> Iterator[tuple[int, Generation]]:
    """(index, generation) for each prompt in order, one prompt at a time (greedy)."""
    from mlx_lm.generate import stream_generate

    eos = set(tokenizer.eos_token_ids)
    for index, prompt in enumerate(prompts):
        tokens: list[int] = []
        reason = "length"
        for response in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens):
            if response.token in eos:
                reason = "stop"
                break
            tokens.append(response.token)
        yield index, _decode(tokenizer, tokens, reason)


def generate_batched(
    model: Any, tokenizer: Any, prompts: Sequence[list[int]], max_tokens: int, batch_size: int
) -> Iterator[tuple[int, Generation]]:
    """(index, generation) as each prompt finishes (greedy), with up to ``batch_size`` in flight.

    Prompts go in longest first: batches of similar lengths need less padding, and no long row is
    left running alone at the end while the other slots sit idle."""
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator, generation_stream

    if not prompts:
        return
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    generator = BatchGenerator(
        model,
        stop_tokens=[[t] for t in tokenizer.eos_token_ids],
        completion_batch_size=batch_size,
        prefill_batch_size=min(batch_size, PREFILL_BATCH_SIZE),
    )
    try:
        uids = generator.insert([list(prompts[i]) for i in order], [max_tokens] * len(prompts))
        index_of = {uid: i for uid, i in zip(uids, order)}
        tokens: dict[int, list[int]] = {uid: [] for uid in uids}
        while responses := generator.next_generated():
            for r in responses:
                if r.finish_reason != "stop":  # the stop token itself is not part of the output
                    tokens[r.uid].append(r.token)
                if r.finish_reason is not None:
                    yield index_of[r.uid], _decode(tokenizer, tokens.pop(r.uid), r.finish_reason)
    finally:
        generator.close()
        mx.synchronize(generation_stream)


def generate(
    model: Any, tokenizer: Any, prompts: Sequence[list[int]], max_tokens: int, batch_size: int
) -> Iterator[tuple[int, Generation]]:
    """Greedy generations for ``prompts``: one at a time when ``batch_size`` is 1, else batched."""
    if batch_size <= 1:
        return generate_one_at_a_time(model, tokenizer, prompts, max_tokens)
    return generate_batched(model, tokenizer, prompts, max_tokens, batch_size)


# ---- test loss -------------------------------------------------------------------------------


def _all_batches(dataset, batch_size, max_seq_length, **_: Any):
    """Like mlx-lm's ``iterate_batches`` (length-sorted, same padding and truncation) but with the last,
    smaller batch kept, so every row of the split is scored."""
    import mlx.core as mx
    import numpy as np

    order = sorted(range(len(dataset)), key=lambda j: len(dataset[j][0]))
    for start in range(0, len(order), batch_size):
        items = [dataset[j] for j in order[start : start + batch_size]]
        lengths = [min(len(tokens), max_seq_length) for tokens, _ in items]
        width = min(1 + 32 * ((max(lengths) + 31) // 32), max_seq_length)
        batch = np.zeros((len(items), width), np.int32)
        for row, ((tokens, _), length) in enumerate(zip(items, lengths)):
            batch[row, :length] = tokens[:length]
        yield mx.array(batch), mx.array([[offset, length] for (_, offset), length in zip(items, lengths)])


def test_loss(
    model: Any, tokenizer: Any, records: Sequence[dict], batch_size: int, num_batches: int, max_seq_length: int
) -> dict[str, Any]:
    """Mean cross-entropy per completion token over the chat records (prompt masked) and its perplexity,
    with mlx-lm's own ``evaluate`` and loss; ``num_batches=-1`` scores every record."""
    import math

    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import evaluate

    if not records:
        return {"loss": None, "perplexity": None, "rows": 0}
    dataset = CacheDataset(ChatDataset(list(records), tokenizer, mask_prompt=True))
    started = time.perf_counter()
    loss = evaluate(
        model, dataset, batch_size=batch_size, num_batches=num_batches,
        max_seq_length=max_seq_length, iterate_batches=_all_batches,
    )  # fmt: skip
    rows = len(records) if num_batches == -1 else min(len(records), num_batches * batch_size)
    return {"loss": loss, "perplexity": math.exp(loss), "rows": rows, "seconds": time.perf_counter() - started}


def adapter_summary(weights: Path | None) -> dict[str, Any]:
    """Which adapter file was evaluated, for the metrics file."""
    if weights is None:
        return {"file": None}
    config = json.loads((weights.parent / "adapter_config.json").read_text(encoding="utf-8"))
    return {"file": str(weights), "kind": "best" if weights.name == BEST_ADAPTER_FILE else "last",
            "lora_parameters": config.get("lora_parameters"), "num_layers": config.get("num_layers")}  # fmt: skip
