"""Stage split: validated NL + code pairs -> train / valid / test chat rows, stratified by domain.

    python stages/split.py --input data/validated --output data/split \\
        --train-ratio 0.8 --valid-ratio 0.1 --test-ratio 0.1 --seed 42 [--stats metrics/split.json]

Reads nl_pairs.jsonl and code_pairs.jsonl in --input; writes train.jsonl, valid.jsonl and
test.jsonl in --output. Ratios and seed not given as flags come from params.yaml (section split).
A verbose text that occurs more than once is kept once (first occurrence) so that it cannot land
in two splits; the stats report how many duplicates were collapsed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from compression_layer.data.jsonl import DataError
from compression_layer.data.report import print_summary
from compression_layer.data.split import SPLITS, iter_split, new_stats, plan_split, source_paths
from compression_layer.io import atomic_open, write_json
from compression_layer.params import ParamsError, SplitParams, build, load_section

FLAGS = ("train_ratio", "valid_ratio", "test_ratio", "seed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="directory with nl_pairs.jsonl and code_pairs.jsonl")
    p.add_argument("--output", required=True, help="directory for train.jsonl, valid.jsonl, test.jsonl")
    p.add_argument("--train-ratio", type=float, help="share of each domain in train")
    p.add_argument("--valid-ratio", type=float, help="share of each domain in valid")
    p.add_argument("--test-ratio", type=float, help="share of each domain in test (the three sum to 1)")
    p.add_argument("--seed", type=int, help="seed of the shuffles")
    p.add_argument("--stats", help="write the stats (DVC metric) JSON here")
    p.add_argument("--params", help="params file for values not given as flags (default: params.yaml if present)")
    return p.parse_args(argv)


def resolve_params(args: argparse.Namespace) -> SplitParams:
    given = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    if len(given) < len(FLAGS):
        params_file = args.params or ("params.yaml" if Path("params.yaml").is_file() else None)
        defaults = load_section(params_file, "split", SplitParams) if params_file else SplitParams()
        given = {**{k: getattr(defaults, k) for k in FLAGS}, **given}
    return build(SplitParams, given, "split")


def _existing_parent(path: Path) -> Path:
    """The nearest existing folder at or above ``path`` (the scratch file goes there, not in /tmp)."""
    while not path.is_dir():
        path = path.parent
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params = resolve_params(args)
        sources = source_paths(args.input)
        stats = new_stats()
        output = Path(args.output)
        with contextlib.ExitStack() as stack:
            # Chat lines wait in an unnamed scratch file (gone on close) while the splits are drawn.
            scratch = stack.enter_context(tempfile.TemporaryFile(prefix="split-", dir=_existing_parent(output)))
            plan = plan_split(sources, params, stats, scratch)
            for name in SPLITS:
                fh = stack.enter_context(atomic_open(output / f"{name}.jsonl", "wb"))
                for line, domain in iter_split(plan, name):
                    fh.write(line)
                    stats.keep(domain)
            stats.check()  # inside the block: a mismatch leaves no output behind
        summary = stats.as_dict()
        summary["splits"] = plan.counts()
        summary["params"] = {k: getattr(params, k) for k in FLAGS}
        if args.stats:
            write_json(args.stats, summary)
    except (ParamsError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = summary["splits"]
    print_summary(
        f"split {args.input} -> {args.output}",
        summary,
        [
            "splits: " + ", ".join(f"{name} {counts[name]['rows']}" for name in SPLITS)
            + f" (ratios {params.train_ratio}/{params.valid_ratio}/{params.test_ratio}, seed {params.seed})",
            f"read: {', '.join(str(s) for s in sources)}",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
