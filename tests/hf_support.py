"""Helpers for the HF dataset tests: a dataset repo in the Hugging Face cache layout, built offline.

    <cache>/datasets--<owner>--<name>/snapshots/<commit>/<files>, refs/<branch or tag> = <commit>

which is what huggingface_hub's snapshot_download finds with HF_HUB_CACHE=<cache> and HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from train_support import chat_rows

from compression_layer.data.chat import to_chat

DATASET_ID = "test-org/compression-sft"
COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
OTHER_COMMIT = "ffffeeeeddddccccbbbbaaaa9999888877776666"
SIZES = {"train": 20, "valid": 6, "test": 6}  # good rows per split
# Two rows the sanitize stage rejects: bad_format and rule A (more tokens out than in).
BAD_ROWS = ['{"messages": "not a list"}',
            json.dumps(to_chat("Ship it.", "the compressed output is much longer than the verbose input was"))]


def good_rows(split: str, n: int | None = None) -> list[dict]:
    return chat_rows(n or SIZES[split], seed={"train": 1, "valid": 2, "test": 3}[split])


def add_snapshot(cache: Path, files: dict[str, str | bytes], commit: str = COMMIT, refs: tuple[str, ...] = ("main",),
                 repo_id: str = DATASET_ID) -> Path:
    """Write one snapshot of the dataset repo (files by path inside the repo) and point ``refs`` at it."""
    repo = cache / ("datasets--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for rel, content in files.items():
        path = snapshot / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)  # no newline: huggingface_hub reads the file as is
    return snapshot


def jsonl_files(bad_rows: bool = True) -> dict[str, str]:
    """data/{train,validation,test}.jsonl as a dataset repo holds them; train gets the two bad rows."""
    files = {}
    for split, name in (("train", "train"), ("valid", "validation"), ("test", "test")):
        lines = [json.dumps(r) for r in good_rows(split)]
        if split == "train" and bad_rows:
            lines[3:3] = BAD_ROWS
        files[f"data/{name}.jsonl"] = "\n".join(lines) + "\n"
    return files


def add_model(cache: Path, model_dir: Path, repo_id: str, commit: str = COMMIT) -> None:
    """A model repo in the same cache (models--owner--name), so a hub model id also loads offline."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
