"""train.err: everything the run writes to stderr (Python warnings, MLX and tokenizer messages), still
shown on the terminal. A crash in native code (MLX segfaults when the CPU allocator runs out) leaves a
Python traceback there via faulthandler."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def tee_stderr(path: Path) -> Iterator[None]:
    """Copy file descriptor 2 into ``path`` (appending) while passing it through to the real stderr."""
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    log = open(path, "ab", buffering=0)

    def pump() -> None:
        while chunk := os.read(read_end, 65536):
            log.write(chunk)
            with contextlib.suppress(OSError):
                os.write(original, chunk)

    thread = threading.Thread(target=pump, name="train.err", daemon=True)
    thread.start()
    fault_was_enabled = faulthandler.is_enabled()
    faulthandler.enable(file=log)
    # Python-level writes go through fd 2 too, even where sys.stderr was replaced (pytest, notebooks).
    python_stderr = sys.stderr
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    try:
        yield
    finally:
        faulthandler.disable()
        if fault_was_enabled:
            faulthandler.enable()
        sys.stderr.flush()
        sys.stderr = python_stderr
        os.dup2(original, 2)  # drops the pipe's last write end: the pump sees EOF
        thread.join(timeout=5)
        os.close(read_end)
        os.close(original)
        log.close()
