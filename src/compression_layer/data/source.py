"""The dataset source record: which splits train and evaluate read (the `dataset` stage writes it).

dvc.yaml is static, so train and evaluate always name the local splits (data/training/) on their command
line and also take ``--data-source data/hf/source.json``. With ``dataset.source: local`` the record says
so and the local paths stand; with ``hf`` it names the validated split files beside it (data/hf/), which
replace them. Reading it needs no MLX, so both stages import this module cheaply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compression_layer.data.jsonl import DataError

SOURCE_FILE = "source.json"
SPLITS = ("train", "valid", "test")


def local_record() -> dict[str, Any]:
    """The record of the local source: nothing to download, the pipeline's own splits are used."""
    return {"source": "local", "note": "train and evaluate read the splits named on their command line (data/training/)"}


def read_source(path: str | Path) -> dict[str, Any]:
    """The record at ``path`` (source.json, or the folder holding it); DataError if missing or malformed."""
    path = Path(path)
    if path.is_dir():
        path = path / SOURCE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"dataset source record not found: {path} (run the dataset stage: dvc repro dataset)") from None
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"dataset source record {path} is not valid JSON") from None
    if not isinstance(record, dict) or record.get("source") not in ("local", "hf"):
        raise DataError(f"dataset source record {path}: expected {{\"source\": \"local\" | \"hf\", ...}}")
    if record["source"] == "hf":
        files = record.get("files")
        if not isinstance(files, dict) or not all(isinstance(files.get(s), str) for s in SPLITS):
            raise DataError(f"dataset source record {path}: source 'hf' without files for {', '.join(SPLITS)}")
    record["_path"] = str(path)
    return record


def split_path(record_path: str | Path | None, split: str, default: str | Path) -> Path:
    """The file of ``split`` to read: ``default`` (the command line's) unless the record says hf."""
    if record_path is None:
        return Path(default)
    record = read_source(record_path)
    if record["source"] == "local":
        return Path(default)
    return Path(record["_path"]).parent / record["files"][split]


def describe(record_path: str | Path | None) -> str | None:
    """One line for logs: 'hf owner/name@<commit>' or None for the local source."""
    if record_path is None:
        return None
    record = read_source(record_path)
    if record["source"] == "local":
        return None
    return f"hf {record.get('repo')}@{record.get('revision')}"
