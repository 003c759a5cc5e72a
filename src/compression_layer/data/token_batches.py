"""Token counts of streamed batches, computed in worker threads ahead of the consumer.

Counting tokens is the expensive part of preprocess and sanitize. tiktoken releases the GIL only
inside one encode call, so a batch is encoded as ONE string: the texts joined by a separator
that forms a token piece of its own (see ``count_tokens_joined``). A worker thread then encodes
batch k without the GIL while the main thread parses and checks batch k+1; at most ``depth``
batches wait, so memory stays bounded whatever the input size.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from compression_layer.tokens import encoding

B = TypeVar("B")
D = TypeVar("D")

# cl100k_base splits " \x00\n" into a piece of its own (a space, a punctuation run, its newline)
# whenever the text before it ends and the text after it starts with a non-space character: no
# piece of either text can absorb it, and it absorbs nothing of theirs. BPE never crosses pieces,
# so the tokens of the joined string are the texts' own tokens with the separator's in between,
# and the NUL byte (absent from the texts) marks where each text ends.
SEPARATOR = " \x00\n"
_lock = threading.Lock()
_separator_layout: tuple[int, int, int] | None = None  # (NUL token id, tokens before it, tokens after it)


def _layout() -> tuple[int, int, int]:
    global _separator_layout
    with _lock:
        if _separator_layout is None:
            enc = encoding()
            tokens = enc.encode_ordinary(SEPARATOR)
            (position,) = [i for i, t in enumerate(tokens) if b"\x00" in enc.decode_single_token_bytes(t)]
            _separator_layout = (tokens[position], position, len(tokens) - position - 1)
        return _separator_layout


def _joinable(text: str) -> bool:
    return bool(text) and "\x00" not in text and not text[0].isspace() and not text[-1].isspace()


def count_tokens_joined(texts: Sequence[str]) -> list[int]:
    """cl100k_base token count of each text, with one encode call for all joinable texts.

    Equal to ``[count_tokens(t) for t in texts]``; texts that could touch the separator (empty,
    with surrounding whitespace, or holding a NUL) are counted one by one.
    """
    nul, before, after = _layout()  # first: it loads the encoding under the lock
    enc = encoding()
    counts = [0] * len(texts)
    joined: list[int] = []
    for i, text in enumerate(texts):
        if _joinable(text):
            joined.append(i)
        else:
            counts[i] = len(enc.encode_ordinary(text))
    if not joined:
        return counts
    tokens = enc.encode_ordinary(SEPARATOR.join([texts[i] for i in joined]))
    start = 0
    for i in joined[:-1]:
        end = tokens.index(nul, start)
        counts[i] = end - before - start
        start = end + 1 + after
    counts[joined[-1]] = len(tokens) - start
    return counts


def default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def counted_batches(
    batches: Iterable[B],
    texts_of: Callable[[B], list[str]],
    threads: int | None = None,
    depth: int = 2,
) -> Iterator[tuple[B, list[int]]]:
    """Yield ``(batch, token counts of texts_of(batch))`` in input order, counting ahead in threads."""
    threads = threads or default_threads()
    with ThreadPoolExecutor(threads) as pool:
        warm = pool.submit(_layout)  # loads the encoding while the first batch is read
        pending: deque[tuple[B, list[Future[list[int]]]]] = deque()
        for batch in batches:
            texts = texts_of(batch)
            step = -(-len(texts) // threads) or 1
            futures = [pool.submit(count_tokens_joined, texts[i : i + step]) for i in range(0, len(texts), step)]
            pending.append((batch, futures))
            if len(pending) > depth:
                yield _finish(*pending.popleft())
        warm.result()
        while pending:
            yield _finish(*pending.popleft())


def _finish(batch: B, futures: list[Future[list[int]]]) -> tuple[B, list[int]]:
    counts: list[int] = []
    for future in futures:
        counts.extend(future.result())
    return batch, counts


def decide_lines(
    lines: Iterable[tuple[int, str, bool]],
    check: Callable[[int, str, bool], Any],
    finish: Callable[[Any, int, int], D],
    candidate: type,
    stats: Any,
    batch_size: int = 512,
    threads: int | None = None,
) -> Iterator[D]:
    """The decision on every ``(line number, text, is_utf8)``, in input order.

    ``check`` decides what it can without tokens; what it returns as a ``candidate`` (an object
    with ``verbose`` and ``compressed``) is decided by ``finish(candidate, verbose tokens,
    compressed tokens)`` once its batch is counted. ``stats.rows_in`` counts the lines read.
    """

    def batches() -> Iterator[list[Any]]:
        batch: list[Any] = []
        for line, text, is_utf8 in lines:
            stats.rows_in += 1
            batch.append(check(line, text, is_utf8))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def texts_of(batch: list[Any]) -> list[str]:
        texts: list[str] = []
        for item in batch:
            if type(item) is candidate:
                texts.append(item.verbose)
                texts.append(item.compressed)
        return texts

    for batch, counts in counted_batches(batches(), texts_of, threads=threads):
        position = 0
        for item in batch:
            if type(item) is candidate:
                yield finish(item, counts[position], counts[position + 1])
                position += 2
            else:
                yield item
