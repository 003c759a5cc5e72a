"""Token counts of streamed batches, computed in worker threads ahead of the consumer.

Counting tokens is the expensive part of preprocess and sanitize. tiktoken releases the GIL while
it encodes, so worker threads count batch k while the main thread parses and checks batch k+1;
at most ``depth`` batches wait, so memory stays bounded whatever the input size.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from compression_layer.tokens import encoding

B = TypeVar("B")


def default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def _count(texts: Sequence[str]) -> list[int]:
    encode = encoding().encode_ordinary  # cl100k_base; special-token text counts as plain text
    return [len(encode(text)) for text in texts]


def counted_batches(
    batches: Iterable[B],
    texts_of: Callable[[B], list[str]],
    threads: int | None = None,
    depth: int = 2,
) -> Iterator[tuple[B, list[int]]]:
    """Yield ``(batch, token counts of texts_of(batch))`` in input order, counting ahead in threads."""
    threads = threads or default_threads()
    encoding()  # load once, before the threads race for it
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[tuple[B, list[Future[list[int]]]]] = deque()
        for batch in batches:
            texts = texts_of(batch)
            step = -(-len(texts) // threads) or 1
            futures = [pool.submit(_count, texts[i : i + step]) for i in range(0, len(texts), step)]
            pending.append((batch, futures))
            if len(pending) > depth:
                yield _finish(*pending.popleft())
        while pending:
            yield _finish(*pending.popleft())


def _finish(batch: B, futures: list[Future[list[int]]]) -> tuple[B, list[int]]:
    counts: list[int] = []
    for future in futures:
        counts.extend(future.result())
    return batch, counts
