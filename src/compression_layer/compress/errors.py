"""The compressor's user-facing errors: one line each, shown as `error: <message>` by the CLI."""

from __future__ import annotations


class CompressError(ValueError):
    """A compression or fuse request that cannot be served (model, adapter, input, output)."""


class AdapterNotFoundError(CompressError):
    """No adapter folder, or one without adapter_config.json or weights."""


class ModelMismatchError(CompressError):
    """The adapter was trained on another base model than the one given."""


class InputTooLongError(CompressError):
    """An input whose prompt is longer than the adapter's max_seq_length (and truncation is off)."""

    def __init__(self, message: str, index: int, tokens: int, limit: int):
        super().__init__(message)
        self.index, self.tokens, self.limit = index, tokens, limit
