"""Stage sanitize: drop split rows that break the notation rules (A expansion, B orphan symbol,
C lost negation, D missing @/∵) or are not well-formed chat rows.

One file (the runbook's form):
    python stages/sanitize.py --input data/split/train.jsonl \\
        --sanitized data/training/train.jsonl --unsanitized data/training/unsanitized_train.jsonl
All three splits at once (the DVC stage):
    python stages/sanitize.py --input-dir data/split --output-dir data/training [--stats metrics/sanitize.json]
which writes <output-dir>/{train,valid,test}.jsonl and <output-dir>/unsanitized_{split}.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from compression_layer.data.chunks import Job, run_jobs
from compression_layer.data.jsonl import DataError, require_file
from compression_layer.data.report import print_summary
from compression_layer.data.sanitize import new_stats, write_decisions
from compression_layer.data.stats import StageStats
from compression_layer.io import atomic_open, write_json

SPLITS = ("train", "valid", "test")  # the files of --input-dir, as split writes them


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    one = p.add_argument_group("one file")
    one.add_argument("--input", help="chat rows to sanitize (JSON Lines)")
    one.add_argument("--sanitized", help="kept rows, unchanged")
    one.add_argument("--unsanitized", help="rejected rows with line, reason, detail and the original")
    many = p.add_argument_group("all splits")
    many.add_argument("--input-dir", help="directory with train.jsonl, valid.jsonl, test.jsonl")
    many.add_argument("--output-dir", help="directory for {split}.jsonl and unsanitized_{split}.jsonl")
    p.add_argument("--stats", help="write the stats (DVC metric) JSON here")
    p.add_argument("--workers", type=int, help="processes deciding rows (default: one per CPU; outputs do not depend on it)")
    args = p.parse_args(argv)
    single = [args.input, args.sanitized, args.unsanitized]
    folders = [args.input_dir, args.output_dir]
    if any(single) == any(folders) or (any(single) and not all(single)) or (any(folders) and not all(folders)):
        p.error("give either --input, --sanitized and --unsanitized, or --input-dir and --output-dir")
    return args


def jobs(args: argparse.Namespace) -> list[tuple[str, Path, Path, Path]]:
    """(name, input, sanitized, unsanitized) per file; every input is checked before anything is written."""
    if args.input:
        return [(Path(args.input).stem, require_file(args.input), Path(args.sanitized), Path(args.unsanitized))]
    source, target = Path(args.input_dir), Path(args.output_dir)
    return [
        (name, require_file(source / f"{name}.jsonl"), target / f"{name}.jsonl", target / f"unsanitized_{name}.jsonl")
        for name in SPLITS
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        work = jobs(args)
        total = new_stats()
        per_file: dict[str, StageStats] = {}
        # All outputs are renamed into place together at the end: a failure leaves none of them.
        with contextlib.ExitStack() as stack:
            batch = []
            for name, source, sanitized, unsanitized in work:
                per_file[name] = new_stats(f"sanitize {name}")
                batch.append(Job(source, stack.enter_context(atomic_open(sanitized)),
                                 stack.enter_context(atomic_open(unsanitized)), per_file[name]))
            run_jobs(batch, write_decisions, new_stats, args.workers)
            for stats in per_file.values():
                stats.check()
                total.merge(stats)
            total.check()
        summary = total.as_dict()
        summary["per_split"] = {
            name: {k: v for k, v in s.as_dict().items() if k != "per_domain"} for name, s in per_file.items()
        }
        if args.stats:
            write_json(args.stats, summary)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_summary(
        "sanitize " + (args.input or args.input_dir),
        summary,
        ["per file: " + ", ".join(f"{name} {s.kept}/{s.rows_in} kept" for name, s in per_file.items()),
         f"kept -> {args.sanitized or args.output_dir}"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
