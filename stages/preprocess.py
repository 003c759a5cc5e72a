"""Stage preprocess_nl / preprocess_code: clean raw generated pairs and reject the bad ones.

    python stages/preprocess.py --input data/synthetic/nl_v2.jsonl \\
        --output data/validated/nl_pairs.jsonl --rejected data/validated/rejected_nl_pairs.jsonl \\
        --max-char-ratio 0.95 --max-token-ratio 0.95 [--stats metrics/preprocess_nl.json]

Thresholds not given on the command line come from params.yaml (section --section, default
preprocess_nl). The rules are in ../shared/spec/data-rules.md and src/compression_layer/data/.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from pathlib import Path

from compression_layer.data.chunks import Job, run_jobs
from compression_layer.data.jsonl import DataError, require_file
from compression_layer.data.preprocess import new_stats, write_decisions
from compression_layer.data.report import print_summary
from compression_layer.io import atomic_open, write_json
from compression_layer.params import ParamsError, PreprocessParams, build, load_section


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="raw pairs (JSON Lines: verbose, compressed, domain, ...)")
    p.add_argument("--output", required=True, help="kept, cleaned pairs (JSON Lines)")
    p.add_argument("--rejected", required=True, help="rejected rows with line, reason, detail and the original")
    p.add_argument("--max-char-ratio", type=float, help="reject when len(compressed)/len(verbose) >= this")
    p.add_argument("--max-token-ratio", type=float, help="reject when tokens(compressed)/tokens(verbose) > this")
    p.add_argument("--stats", help="write the stats (DVC metric) JSON here")
    p.add_argument("--params", help="params file for thresholds not given as flags (default: params.yaml if present)")
    p.add_argument("--section", default="preprocess_nl", help="params section to read (default: preprocess_nl)")
    p.add_argument("--workers", type=int, help="processes deciding rows (default: one per CPU; outputs do not depend on it)")
    return p.parse_args(argv)


def resolve_params(args: argparse.Namespace) -> tuple[PreprocessParams, str]:
    """Thresholds from the flags, the rest from the params file (or the built-in defaults)."""
    flags = {"max_char_ratio": args.max_char_ratio, "max_token_ratio": args.max_token_ratio}
    given = {k: v for k, v in flags.items() if v is not None}
    source = "flags"
    if len(given) < len(flags):
        params_file = args.params or ("params.yaml" if Path("params.yaml").is_file() else None)
        defaults = load_section(params_file, args.section, PreprocessParams) if params_file else PreprocessParams()
        given = {**{k: getattr(defaults, k) for k in flags}, **given}
        source = f"{params_file}:{args.section}" if params_file else "built-in defaults"
    return build(PreprocessParams, given, "preprocess"), source


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params, source = resolve_params(args)
        source_path = require_file(args.input)
        stats = new_stats()
        with contextlib.ExitStack() as stack:
            job = Job(source_path, stack.enter_context(atomic_open(args.output)),
                      stack.enter_context(atomic_open(args.rejected)), stats)
            run_jobs([job], functools.partial(write_decisions, params=params), new_stats, args.workers)
            stats.check()  # inside the block: a mismatch leaves no output behind
        summary = stats.as_dict()
        summary["thresholds"] = {"max_char_ratio": params.max_char_ratio, "max_token_ratio": params.max_token_ratio}
        if args.stats:
            write_json(args.stats, summary)
    except (ParamsError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_summary(
        f"preprocess {args.input}",
        summary,
        [f"thresholds: char ratio < {params.max_char_ratio}, token ratio <= {params.max_token_ratio} ({source})",
         f"kept -> {args.output}", f"rejected -> {args.rejected}"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
