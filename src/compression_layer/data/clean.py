"""Cleaning of generated compressions, exactly as the reference pipeline cleans them.

The generator sometimes wraps its answer in reasoning/tool tags or markdown fences; those are
removed so that the ratios and the training target see only the compression itself.
"""

from __future__ import annotations

import re

# Only the tags go; the text around and between them stays (case-insensitive, as the reference).
_TAG = re.compile(r"</?think>|</?tool_call>", re.IGNORECASE)
# A whole (stripped) line that is a bare fence: ``` optionally followed by an ASCII language word.
_FENCE_LINE = re.compile(r"```[a-zA-Z0-9_-]*")
_BLANK_RUN = re.compile(r"\n{3,}")


def clean_compressed(text: str) -> str:
    """Remove think/tool_call tags and bare fence lines; collapse runs of 3+ newlines to 2; strip.

    Lines are split as ``str.splitlines`` splits them (so ``\\r\\n``, ``\\r`` and the other Unicode
    line breaks become ``\\n`` in the result), which is what the reference does.
    """
    if "<" in text:
        text = _TAG.sub("", text)
    lines = text.splitlines()
    if "```" in text:
        lines = [line for line in lines if not _FENCE_LINE.fullmatch(line.strip())]
    text = "\n".join(lines).strip()
    if "\n\n\n" in text:
        text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()


def clean_verbose(text: str) -> str:
    """The original text only loses its surrounding whitespace."""
    return text.strip()
