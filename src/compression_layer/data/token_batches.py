"""Streaming decisions whose last step needs token counts, with the counting overlapped.

Counting tokens is the expensive part of preprocess and sanitize. A producer thread reads and
checks the rows (Python: JSON, cleaning, rules) in batches; the calling thread counts each
batch's tokens with ONE tiktoken call on the texts joined by a separator that forms a token
piece of its own (``count_tokens_joined``), then finishes the decisions. tiktoken releases the
GIL while it encodes, so the producer checks batch k+1 while batch k is encoded. All counting
stays on one thread on purpose: measured here, tiktoken's regex runs about 35% slower (in CPU
time) on any thread but the first one that used it (its match caches have a fast path for that
thread only), so extra counting threads cost more CPU than they save on 2 cores. At most
``depth`` batches wait, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from compression_layer.tokens import encoding

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


class _Done:
    """End of the producer's batches; carries its exception, if it failed."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def decide_lines(
    lines: Iterable[tuple[int, str, bool]],
    check: Callable[[int, str, bool], Any],
    finish: Callable[[Any, int, int], D],
    candidate: type,
    stats: Any,
    batch_size: int = 512,
    depth: int = 2,
) -> Iterator[D]:
    """The decision on every ``(line number, text, is_utf8)``, in input order.

    ``check`` decides what it can without tokens; what it returns as a ``candidate`` (an object
    with ``verbose`` and ``compressed``) is decided by ``finish(candidate, verbose tokens,
    compressed tokens)`` once its batch is counted. ``stats.rows_in`` counts the lines read.
    """
    batches: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            batch: list[Any] = []
            for line, text, is_utf8 in lines:
                stats.rows_in += 1
                batch.append(check(line, text, is_utf8))
                if len(batch) >= batch_size:
                    if not put(batch):
                        return
                    batch = []
            if batch and not put(batch):
                return
            put(_Done())
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_Done(exc))

    producer = threading.Thread(target=produce, name="check-rows", daemon=True)
    producer.start()
    try:
        while True:
            batch = batches.get()
            if isinstance(batch, _Done):
                if batch.error is not None:
                    raise batch.error
                break
            texts: list[str] = []
            for item in batch:
                if type(item) is candidate:
                    texts.append(item.verbose)
                    texts.append(item.compressed)
            counts = count_tokens_joined(texts)
            position = 0
            for item in batch:
                if type(item) is candidate:
                    yield finish(item, counts[position], counts[position + 1])
                    position += 2
                else:
                    yield item
    finally:
        stop.set()  # a consumer that stops early (or fails) releases the producer
        producer.join()
