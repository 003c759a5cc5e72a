"""Settings for huggingface_hub calls, read from the environment at call time.

huggingface_hub reads HF_HUB_CACHE / HF_HOME / HF_HUB_OFFLINE once, at import; passing them explicitly
lets a process (or a test) change them after import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def hub_kwargs() -> dict[str, Any]:
    """`cache_dir` and `local_files_only` for snapshot_download, from the environment as it is now."""
    kwargs: dict[str, Any] = {}
    if os.environ.get("HF_HUB_CACHE"):
        kwargs["cache_dir"] = os.environ["HF_HUB_CACHE"]
    elif os.environ.get("HF_HOME"):
        kwargs["cache_dir"] = str(Path(os.environ["HF_HOME"]) / "hub")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        kwargs["local_files_only"] = True
    return kwargs
