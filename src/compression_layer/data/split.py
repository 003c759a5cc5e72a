"""split: validated pairs -> train / valid / test chat rows (data-rules.md, "split").

Stratified by domain: each domain (nl, code, then any other, e.g. mixed, in name order) is
shuffled and cut with one ``random.Random(seed)``, in the reference's order, then each split is
shuffled; so without duplicates or extra domains the splits are the reference's, row for row.

Duplicates: rows are keyed by their verbose text (the model input). The first occurrence, in
reading order (NL file, then code file), is kept; every later one is collapsed (counted, not
written), before shuffling, so a text can never land in two splits.

Memory: the rows themselves are not held. Pass 1 parses each row once, writes its chat record
to a scratch file and keeps only where that line is (byte offset and length: two machine
integers) plus a 16-byte digest of its verbose text for duplicate detection; pass 2 copies the
lines, in each split's shuffled order, from the scratch file to the split files (no re-parsing).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from compression_layer.data.chat import to_chat
from compression_layer.data.jsonl import DataError
from compression_layer.io import dumps
from compression_layer.data.stats import StageStats
from compression_layer.params import SplitParams

SPLITS = ("train", "valid", "test")
SOURCE_FILES = ("nl_pairs.jsonl", "code_pairs.jsonl")  # read in this order
DOMAIN_ORDER = ("nl", "code")  # shuffled first, in this order (the reference's); others follow by name
REASONS = ("validation_failed",)  # rows a validator marked validation.passed = false (skipped, as the reference)


class SplitError(DataError):
    """A validated file that is not what preprocess writes (names file and line)."""


@dataclass
class SplitPlan:
    """Where each kept row's chat line is in the scratch file, and which rows make each split
    (row handles, in output order)."""

    scratch: IO[bytes]
    domains: list[str] = field(default_factory=list)
    offset: array = field(default_factory=lambda: array("q"))
    length: array = field(default_factory=lambda: array("q"))
    domain_no: array = field(default_factory=lambda: array("h"))
    splits: dict[str, list[int]] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per split and domain."""
        out = {}
        for name, rows in self.splits.items():
            per = dict.fromkeys(self.domains, 0)
            for row in rows:
                per[self.domains[self.domain_no[row]]] += 1
            out[name] = {"rows": len(rows), **per}
        return out


def new_stats() -> StageStats:
    stats = StageStats("split", REASONS, DOMAIN_ORDER)
    stats.track_duplicates()
    return stats


def source_paths(input_dir: str | Path) -> list[Path]:
    """The validated files in ``input_dir`` (those that exist); DataError if there are none."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DataError(f"input directory not found: {input_dir}")
    paths = [input_dir / name for name in SOURCE_FILES if (input_dir / name).is_file()]
    if not paths:
        raise DataError(f"no {' or '.join(SOURCE_FILES)} in {input_dir}")
    return paths


def _row_fields(row: Any, where: str) -> tuple[str, str, bool]:
    """(verbose, domain, passed) of one validated row; SplitError if it is not one."""
    if not isinstance(row, dict):
        raise SplitError(f"{where}: not a JSON object")
    verbose, compressed, domain = row.get("verbose"), row.get("compressed"), row.get("domain")
    if not isinstance(verbose, str) or not isinstance(compressed, str):
        raise SplitError(f"{where}: 'verbose' and 'compressed' must be strings")
    if not isinstance(domain, str) or not domain:
        raise SplitError(f"{where}: 'domain' must be a non-empty string")
    validation = row.get("validation")
    passed = validation.get("passed", True) if isinstance(validation, dict) else True
    return verbose, domain, bool(passed)


# dumps(to_chat(verbose, compressed)) is the same text whatever the two strings are, except for
# their escaped forms; JSON escapes character by character, so the line is assembled from the
# constant parts and dumps() of each string, without encoding the system prompt again per row.
_V, _C = "\ue000verbose\ue000", "\ue000compressed\ue000"
_HEAD, _REST = dumps(to_chat(_V, _C)).split(_V)
_MIDDLE, _TAIL = _REST.split(_C)
# dumps() of a str is this C function (json.dumps(s, ensure_ascii=False) calls it), without the
# encoder set-up that costs more than the escaping on row-sized strings.
_quoted = json.encoder.encode_basestring


def chat_line(verbose: str, compressed: str) -> bytes:
    """``dumps(to_chat(verbose, compressed)) + "\\n"`` as UTF-8 bytes."""
    try:
        return (_HEAD + _quoted(verbose)[1:-1] + _MIDDLE + _quoted(compressed)[1:-1] + _TAIL + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from a \\udXXX escape): keep it escaped
        return (json.dumps(to_chat(verbose, compressed)) + "\n").encode("ascii")


def index_rows(sources: Sequence[Path], stats: StageStats, scratch: IO[bytes]) -> SplitPlan:
    """Pass 1: read and parse every row once; write kept rows' chat lines to ``scratch``; collapse duplicates."""
    plan = SplitPlan(scratch=scratch)
    domain_ids: dict[str, int] = {}
    seen: set[bytes] = set()
    written = 0
    for path in sources:
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                where = f"{path}:{number}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise SplitError(f"{where}: not valid UTF-8") from None
                if not text.strip():
                    continue
                stats.rows_in += 1
                try:
                    row = json.loads(text)
                except (ValueError, RecursionError):
                    raise SplitError(f"{where}: not valid JSON") from None
                verbose, domain, passed = _row_fields(row, where)
                if not passed:
                    stats.reject("validation_failed", domain)
                    continue
                key = hashlib.blake2b(verbose.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                if key in seen:
                    stats.collapse(domain)
                    continue
                seen.add(key)
                if domain not in domain_ids:
                    domain_ids[domain] = len(plan.domains)
                    plan.domains.append(domain)
                line = chat_line(verbose, row["compressed"])
                scratch.write(line)
                plan.offset.append(written)
                plan.length.append(len(line))
                plan.domain_no.append(domain_ids[domain])
                written += len(line)
    scratch.flush()
    return plan


def assign_splits(plan: SplitPlan, params: SplitParams) -> None:
    """Stratified, seeded assignment of the indexed rows to train / valid / test (in place)."""
    by_domain: dict[str, list[int]] = {domain: [] for domain in plan.domains}
    for row, domain_no in enumerate(plan.domain_no):
        by_domain[plan.domains[domain_no]].append(row)
    order = [d for d in DOMAIN_ORDER if d in by_domain] + sorted(d for d in by_domain if d not in DOMAIN_ORDER)
    rng = random.Random(params.seed)
    for domain in order:
        rng.shuffle(by_domain[domain])
    splits: dict[str, list[int]] = {name: [] for name in SPLITS}
    for domain in order:
        rows = by_domain[domain]
        n = len(rows)
        n_train = int(n * params.train_ratio)
        n_valid = int(n * params.valid_ratio)
        splits["train"] += rows[:n_train]
        splits["valid"] += rows[n_train : n_train + n_valid]
        splits["test"] += rows[n_train + n_valid :]
    for name in SPLITS:
        rng.shuffle(splits[name])
    plan.splits = splits


def plan_split(sources: Sequence[Path], params: SplitParams, stats: StageStats, scratch: IO[bytes]) -> SplitPlan:
    """Pass 1 and the assignment; ``scratch`` is a binary file (e.g. ``tempfile.TemporaryFile``)."""
    plan = index_rows(sources, stats, scratch)
    assign_splits(plan, params)
    return plan


def iter_split(plan: SplitPlan, name: str) -> Iterator[tuple[bytes, str]]:
    """Pass 2: ``(chat line as UTF-8 bytes, domain)`` of each row of split ``name``, in order."""
    fd = plan.scratch.fileno()
    for row in plan.splits[name]:
        yield os.pread(fd, plan.length[row], plan.offset[row]), plan.domains[plan.domain_no[row]]
