"""The chat format shared by the splits, training, evaluation and the compress command.

The system prompt is exactly the published dataset's (Sudhendra/semantic-compression-sft), so that
an adapter trained here reads the same prompt as one trained on that dataset.
"""

from __future__ import annotations

from typing import Any

SYSTEM_PROMPT = (
    "You are a semantic compression engine. Compress the input into minimal tokens while preserving "
    "all information for equivalent LLM reasoning. Use dense notation: labeled fields, standard "
    "abbreviations, and symbols (→ | + @). Never lose information."
)
USER_PREFIX = "Compress:\n"


def to_chat(verbose: str, compressed: str, system: str = SYSTEM_PROMPT) -> dict[str, Any]:
    """One training record in the chat format mlx-lm's ChatDataset reads."""
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": USER_PREFIX + verbose},
            {"role": "assistant", "content": compressed},
        ]
    }


def prompt_messages(verbose: str, system: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The messages a model sees before it writes the compression (no assistant turn)."""
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": USER_PREFIX + verbose},
    ]
