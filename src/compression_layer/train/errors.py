"""The train stage's user-facing error: one line, shown as `error: <message>` by stages/train.py."""

from __future__ import annotations

import re


class TrainError(ValueError):
    """A training problem the user can fix (model, data, params, memory); the message is one line."""


# What MLX's GPU allocators (Metal, CUDA) and the C++ runtime say when memory runs out.
_OOM_RE = re.compile(
    r"out of memory|insufficient memory|unable to allocate|failed to allocate|attempting to allocate"
    r"|\bmalloc\b|bad_alloc|cannot allocate memory",
    re.IGNORECASE,
)

OOM_HINT = "lower batch_size or max_seq_length, set grad_checkpoint: true, or train fewer lora_layers"


def out_of_memory(exc: BaseException) -> TrainError | None:
    """A TrainError for an allocation failure (MemoryError or MLX's allocator message), else None."""
    if isinstance(exc, MemoryError):
        detail = str(exc).splitlines()[0] if str(exc) else "MemoryError"
    elif isinstance(exc, RuntimeError) and _OOM_RE.search(str(exc)):
        detail = str(exc).splitlines()[0]
    else:
        return None
    return TrainError(f"out of memory while training ({detail}): {OOM_HINT}")
