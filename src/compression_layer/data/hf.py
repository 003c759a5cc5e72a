"""A Hugging Face dataset repo as the training data: download once, check every row, write the splits.

The repo's train/valid/test files (JSON Lines or Parquet; ``validation``/``dev`` count as valid) are
fetched with huggingface_hub into its cache (HF_HUB_CACHE, HF_HUB_OFFLINE honoured), and every row goes
through the sanitize stage's decisions (format, rules A-D): kept rows are written unchanged to
``{split}.jsonl``, the others with their reason to ``rejected_{split}.jsonl``. The resolved commit hash
is recorded in ``source.json``, so a rerun of the pipeline can name exactly what it trained on.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from compression_layer.data.jsonl import DataError, iter_lines, write_record, write_text_line
from compression_layer.data.sanitize import new_stats, sanitize_lines
from compression_layer.data.source import SOURCE_FILE, SPLITS
from compression_layer.data.stats import StageStats
from compression_layer.io import atomic_open, write_json
from compression_layer.hub import hub_kwargs

PATTERNS = ["*.jsonl", "*.parquet"]  # what is downloaded (huggingface_hub's fnmatch: '*' spans folders)
ALIASES = {"train": ("train", "training"), "valid": ("valid", "validation", "val", "dev"), "test": ("test", "testing")}
_PART_RE = re.compile(r"^(?P<name>[a-z]+)(?:[-_.].*)?$")  # train.jsonl, train-00000-of-00001.parquet


class DatasetSourceError(DataError):
    """The dataset repo cannot be fetched or read; one line for the user."""



def download(repo: str, revision: str | None) -> tuple[Path, str]:
    """(local snapshot folder, commit hash) of the dataset repo at ``revision`` (None = main)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f"'{repo}'" + (f" at revision '{revision}'" if revision else "")
    try:
        path = Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=PATTERNS,
                                      **hub_kwargs()))
    except HFValidationError:
        raise DatasetSourceError(f"'{repo}' is not a valid Hugging Face dataset repo id (owner/name)") from None
    except GatedRepoError:
        raise DatasetSourceError(f"dataset {at} is gated: log in (hf auth login) and accept its terms") from None
    except RevisionNotFoundError:
        raise DatasetSourceError(f"dataset '{repo}' has no revision '{revision}'") from None
    except RepositoryNotFoundError:
        raise DatasetSourceError(f"no Hugging Face dataset repo '{repo}' (or it is private: log in)") from None
    except LocalEntryNotFoundError:
        raise DatasetSourceError(
            f"dataset {at} is not in the Hugging Face cache and the hub cannot be reached "
            "(no network or HF_HUB_OFFLINE=1): download it once with network, or set dataset.source: local"
        ) from None
    except OSError as exc:  # network errors huggingface_hub did not wrap
        raise DatasetSourceError(f"dataset {at}: cannot download from the Hugging Face hub ({exc})") from None
    return path, path.name  # the snapshot folder is named by the commit hash


def split_of(relpath: str) -> str | None:
    """The split a repo file belongs to, from any part of its path (``data/validation-0000.parquet``)."""
    for part in reversed(Path(relpath).parts):
        match = _PART_RE.match(part.lower())
        if match:
            for split, names in ALIASES.items():
                if match["name"] in names:
                    return split
    return None


def find_split_files(snapshot: Path) -> dict[str, list[Path]]:
    """The files of each split, in path order; DatasetSourceError when a split has none."""
    files: dict[str, list[Path]] = {split: [] for split in SPLITS}
    found = sorted(p for pattern in PATTERNS for p in snapshot.rglob(pattern) if p.is_file())
    for path in found:
        split = split_of(path.relative_to(snapshot).as_posix())
        if split is not None:
            files[split].append(path)
    missing = [split for split in SPLITS if not files[split]]
    if missing:
        listed = ", ".join(p.relative_to(snapshot).as_posix() for p in found[:8]) or "no .jsonl or .parquet file"
        raise DatasetSourceError(
            f"dataset has no {' / '.join(missing)} split (expected files named like train.jsonl, "
            f"validation.jsonl, test.jsonl or data/train-*.parquet; found: {listed})"
        )
    return files


def _parquet_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetSourceError(f"{path.name}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield number, json.dumps(row, ensure_ascii=False), True


def split_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """``(line number, JSON text, is_utf8)`` per row, as the sanitize stage reads a split file."""
    return _parquet_lines(path) if path.suffix == ".parquet" else iter_lines(path)


def _staging_dir(output_dir: Path) -> Path:
    """An empty folder beside ``output_dir`` to build it in (``*.tmp``: git-ignored if a kill leaves it)."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp", dir=output_dir.parent))


def materialize(snapshot: Path, output_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Check every row of the snapshot's splits and write ``output_dir`` in full, or not at all.

    Returns the stats (rows in, kept, rejected by reason, per domain and per split) with ``record``.
    """
    files = find_split_files(snapshot)
    output_dir = Path(output_dir)
    staging = _staging_dir(output_dir)
    try:
        total = new_stats("dataset")
        per_split: dict[str, StageStats] = {}
        for split in SPLITS:
            stats = per_split[split] = new_stats(f"dataset {split}")
            with atomic_open(staging / f"{split}.jsonl") as kept, atomic_open(staging / f"rejected_{split}.jsonl") as bad:
                for path in files[split]:
                    rel = path.relative_to(snapshot).as_posix()
                    for decision in sanitize_lines(split_lines(path), stats):
                        if decision.kept:
                            write_text_line(kept, decision.text)
                            stats.keep(decision.domain)
                        else:
                            write_record(bad, {"file": rel, **decision.record})
                            stats.reject(decision.reason, decision.domain)
            stats.check()
            total.merge(stats)
        total.check()
        source = {
            **record,
            "files": {split: f"{split}.jsonl" for split in SPLITS},
            "rejected": {split: f"rejected_{split}.jsonl" for split in SPLITS},
            "repo_files": {split: [p.relative_to(snapshot).as_posix() for p in files[split]] for split in SPLITS},
            "rows": {split: {"in": s.rows_in, "kept": s.kept, "rejected": s.rejected_total}
                     for split, s in per_split.items()},
        }
        write_json(staging / SOURCE_FILE, source)
        replace_dir(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = {**{k: v for k, v in source.items() if k not in ("files", "rejected", "rows")}, **total.as_dict()}
    summary["per_split"] = {name: {k: v for k, v in s.as_dict().items() if k != "per_domain"}
                            for name, s in per_split.items()}
    return summary


def write_local(output_dir: Path) -> dict[str, Any]:
    """The local source: ``output_dir`` holds only the small record that says so."""
    from compression_layer.data.source import local_record

    output_dir = Path(output_dir)
    staging = _staging_dir(output_dir)
    write_json(staging / SOURCE_FILE, local_record())
    replace_dir(staging, output_dir)
    return {"source": "local"}


def replace_dir(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder in place of ``target`` (a previous output of this stage)."""
    if target.exists():
        if target.is_dir() and any(target.iterdir()) and not (target / SOURCE_FILE).exists():
            raise DatasetSourceError(f"{target} exists and was not written by the dataset stage; refusing to replace it")
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    staging.rename(target)
