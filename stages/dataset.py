"""Stage dataset: the data source of train and evaluate, the local pipeline or a Hugging Face dataset repo.

    python stages/dataset.py --params params.yaml --output-dir data/hf --stats metrics/dataset.json

With `dataset.source: local` (the default) it writes only data/hf/source.json saying so; train and evaluate
then read data/training/. With `hf` it downloads the repo's train/valid/test files once (huggingface-hub;
HF_HUB_CACHE and HF_HUB_OFFLINE honoured), checks every row as the sanitize stage does, and writes
data/hf/{split}.jsonl (kept rows), data/hf/rejected_{split}.jsonl (with reasons) and data/hf/source.json
(repo, requested and resolved revision). data/training/ is never touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compression_layer.data.hf import download, materialize, write_local
from compression_layer.data.jsonl import DataError
from compression_layer.data.report import print_summary
from compression_layer.io import write_json
from compression_layer.params import DatasetParams, ParamsError, load_section


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="params file with a `dataset:` section")
    p.add_argument("--output-dir", default="data/hf", help="folder to (re)write: source.json and, for hf, the splits")
    p.add_argument("--stats", help="write the source and row counts (DVC metric) JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params = load_section(args.params, "dataset", DatasetParams)
        if params.source == "local":
            summary = write_local(Path(args.output_dir))
        else:
            snapshot, commit = download(params.hf_repo, params.hf_revision)
            record = {"source": "hf", "repo": params.hf_repo, "requested_revision": params.hf_revision, "revision": commit}
            summary = materialize(snapshot, Path(args.output_dir), record)
        if args.stats:
            write_json(args.stats, summary)
    except (ParamsError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if params.source == "local":
        print(f"dataset: local source (data/training/); wrote {args.output_dir}/source.json")
    else:
        splits = ", ".join(f"{n} {s['kept']}/{s['rows_in']} kept" for n, s in summary["per_split"].items())
        out = args.output_dir
        print_summary(f"dataset {params.hf_repo}@{commit}", summary,
                      [f"per split: {splits}", f"kept -> {out}/{{train,valid,test}}.jsonl, rejected -> {out}/rejected_*.jsonl"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
