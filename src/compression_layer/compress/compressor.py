"""The Python API of a trained compressor: base model + adapter, greedy generation, token stats.

    from compression_layer.compress import Compressor
    c = Compressor.load()                       # models/runs/mlx/latest/adapter, best checkpoint
    c.compress("some verbose text")             # -> str
    c.compress_many(texts, batch_size=16)       # -> list[str], batched generation
    c.compress(text, stats=True)                # -> Compression (text, token counts, ratio)

Prompts, generation and output cleaning are the evaluate stage's own functions, so a text gives the
same output here as in the predictions file for the same adapter, model and max_tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from compression_layer.compress.adapter import DEFAULT_ADAPTER, Adapter, base_model, local_model_dir, read_adapter
from compression_layer.compress.errors import CompressError, InputTooLongError
from compression_layer.evaluate.generate import EvaluateError, generate, load, prompt_tokens
from compression_layer.tokens import count_tokens_batch, token_ratio

DEFAULT_MAX_TOKENS = 512
DEFAULT_BATCH_SIZE = 16
# Written by `compression-layer fuse` into the fused folder: where it came from and its max_seq_length.
FUSE_RECORD = "fused_from.json"


@dataclass(frozen=True)
class Compression:
    """One compressed text with its cl100k_base token counts (of the text actually compressed)."""

    text: str
    input_tokens: int
    output_tokens: int
    token_ratio: float
    truncated: bool  # the input was cut to fit max_seq_length
    finish_reason: str  # "stop", or "length" when max_tokens cut the output short
    model_tokens: int  # tokens the model generated (its own tokenizer; what max_tokens counts)

    def stats(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "text"}


def _fused_max_seq_length(model: str) -> int | None:
    """The max_seq_length recorded in a folder written by `compression-layer fuse`, if any."""
    local = local_model_dir(model)
    record = local / FUSE_RECORD if local else None
    if record is None or not record.is_file():
        return None
    value = json.loads(record.read_text(encoding="utf-8")).get("max_seq_length")
    return value if isinstance(value, int) and value > 0 else None


class Compressor:
    """A loaded model (with its adapter applied) that compresses texts greedily."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str,
        adapter: Adapter | None = None,
        max_seq_length: int | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        truncate: bool = False,
    ):
        if max_tokens < 1:
            raise CompressError(f"max_tokens must be >= 1, got {max_tokens}")
        self.model, self.tokenizer = model, tokenizer
        self.model_name, self.adapter = model_name, adapter
        self.max_seq_length, self.max_tokens, self.truncate = max_seq_length, max_tokens, truncate

    @classmethod
    def load(
        cls,
        adapter_path: str | Path | None = DEFAULT_ADAPTER,
        model: str | None = None,
        checkpoint: str = "best",
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        truncate: bool = False,
    ) -> Compressor:
        """Load the base model (from adapter_config.json unless ``model`` is given) with the adapter's
        ``checkpoint`` ("best", falling back to the final adapters.safetensors, or "last").
        ``adapter_path=None`` loads ``model`` alone, e.g. a folder written by `compression-layer fuse`."""
        from compression_layer.blas import configure_threads

        configure_threads()  # OpenBLAS: one thread generates faster on small matrices
        if adapter_path is None:
            if model is None:
                raise CompressError("no adapter and no model: give an adapter folder or a (fused) model")
            adapter, name, max_seq_length = None, model, _fused_max_seq_length(model)
        else:
            adapter = read_adapter(adapter_path, checkpoint)
            name, max_seq_length = base_model(adapter, model), adapter.max_seq_length
        try:
            lm, tokenizer, _ = load(name, adapter.path if adapter else None, checkpoint)
        except EvaluateError as exc:
            raise CompressError(str(exc)) from None
        return cls(lm, tokenizer, model_name=name, adapter=adapter, max_seq_length=max_seq_length,
                   max_tokens=max_tokens, truncate=truncate)  # fmt: skip

    # ---- prompts ------------------------------------------------------------------------------

    def _fit(self, text: str) -> tuple[list[int], str]:
        """The prompt for the longest head of ``text`` that fits max_seq_length, and that head."""
        limit = self.max_seq_length
        overhead = len(prompt_tokens(self.tokenizer, ""))
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        keep = limit - overhead
        while keep > 0:
            # A cut inside a multi-byte character decodes to U+FFFD: drop it.
            head = self.tokenizer.decode(ids[:keep]).rstrip("\ufffd").strip()
            prompt = prompt_tokens(self.tokenizer, head)
            if len(prompt) <= limit:
                return prompt, head
            keep -= len(prompt) - limit  # re-tokenising the cut text can merge differently
        raise CompressError(f"max_seq_length {limit} leaves no room for text after the {overhead}-token prompt")

    def prompts(self, texts: Sequence[str], truncate: bool | None = None) -> list[tuple[list[int], str, bool]]:
        """(prompt token ids, text used, truncated) per text, as training formats a row; texts are stripped
        like the training data. Refuses a prompt longer than max_seq_length unless truncating."""
        truncate = self.truncate if truncate is None else truncate
        out = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise CompressError(f"input {index + 1} is {type(text).__name__}, not text")
            text = text.strip()
            prompt = prompt_tokens(self.tokenizer, text)
            if self.max_seq_length is None or len(prompt) <= self.max_seq_length:
                out.append((prompt, text, False))
            elif truncate:
                out.append((*self._fit(text), True))
            else:
                which = "input" if len(texts) == 1 else f"input {index + 1} of {len(texts)}"
                raise InputTooLongError(
                    f"{which} is {len(prompt)} tokens as a prompt, more than the adapter's max_seq_length "
                    f"{self.max_seq_length}: shorten it, or cut it to fit with --truncate (truncate=True)",
                    index, len(prompt), self.max_seq_length,
                )  # fmt: skip
        return out

    # ---- compression --------------------------------------------------------------------------

    def compress_many(
        self,
        texts: Sequence[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        stats: bool = False,
        truncate: bool | None = None,
        max_tokens: int | None = None,
    ) -> list[str] | list[Compression]:
        """Compressions of ``texts`` in order (batched greedy generation; ``batch_size=1`` = one at a time).
        With ``stats`` each is a Compression with token counts and ratio; a blank text compresses to ""."""
        if isinstance(texts, str):
            raise CompressError("compress_many takes a list of texts; use compress for one text")
        if batch_size < 1:
            raise CompressError(f"batch_size must be >= 1, got {batch_size}")
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        if max_tokens < 1:
            raise CompressError(f"max_tokens must be >= 1, got {max_tokens}")
        prepared = self.prompts(texts, truncate)
        todo = [i for i, (_, text, _) in enumerate(prepared) if text]
        # Longest prompts first, as the evaluate stage does: less padding, no long row left alone at the end.
        todo.sort(key=lambda i: -len(prepared[i][0]))
        results: dict[int, Any] = {}
        for position, generation in generate(self.model, self.tokenizer, [prepared[i][0] for i in todo],
                                             max_tokens, batch_size):  # fmt: skip
            results[todo[position]] = generation
        outputs = [results[i].text if i in results else "" for i in range(len(texts))]
        if not stats:
            return outputs
        used = [text for _, text, _ in prepared]
        counts = count_tokens_batch(used + outputs)
        compressions = []
        for i, out in enumerate(outputs):
            generation = results.get(i)
            compressions.append(Compression(
                out, counts[i], counts[len(used) + i], token_ratio(counts[len(used) + i], counts[i]), prepared[i][2],
                generation.finish_reason if generation else "stop", generation.tokens if generation else 0,
            ))  # fmt: skip
        return compressions

    def compress(
        self, text: str, *, stats: bool = False, truncate: bool | None = None, max_tokens: int | None = None
    ) -> str | Compression:
        """The compression of one text (generated alone), or its Compression with ``stats``."""
        if not isinstance(text, str):
            raise CompressError(f"compress takes one text, got {type(text).__name__}; use compress_many for a list")
        return self.compress_many([text], batch_size=1, stats=stats, truncate=truncate, max_tokens=max_tokens)[0]
