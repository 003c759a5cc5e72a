"""Stage evaluate: how well and how fast an adapter compresses the test split, against naive baselines.

Generates greedily for the test rows (batched; eval_batch_size=1 = one at a time), writes one
prediction line per row as it finishes, then the metrics (token ratios, fidelity proxies, degenerate
outputs, test loss and perplexity, throughput, baselines at the same ratio) and a summary table.

    python stages/evaluate.py                                   # the pipeline (params.yaml defaults)
    python stages/evaluate.py --adapter-path models/runs/mlx/<run>/adapter --output eval.jsonl \
        [--model M] [--limit N] [--resume]                      # any adapter, by hand

By hand, metrics go beside --output (eval.metrics.json) unless --metrics is given. --resume keeps
the rows already in --output and generates only the rest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compression_layer.blas import configure_threads, loaded_blas
from compression_layer.config import load_run_config
from compression_layer.data.jsonl import DataError
from compression_layer.data.source import split_path
from compression_layer.evaluate.generate import EvaluateError, adapter_summary, load, test_loss
from compression_layer.evaluate.predictions import PredictionWriter, finalize, read_done
from compression_layer.evaluate.progress import row_progress
from compression_layer.evaluate.report import build_metrics, print_summary
from compression_layer.evaluate.run import generate_predictions
from compression_layer.evaluate.testset import read_test_rows
from compression_layer.io import write_json
from compression_layer.params import ParamsError

DEFAULT_OUTPUT = Path("models/eval/predictions.jsonl")
DEFAULT_METRICS = Path("metrics/eval.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter-path", type=Path, default=Path("models/runs/mlx/latest/adapter"),
                   help="Adapter folder (adapter_config.json + adapters.safetensors).")
    p.add_argument("--model", help="Base model folder or hub id (default: model in params.yaml).")
    p.add_argument("--test", type=Path, default=Path("data/training/test.jsonl"), help="Test split (chat JSONL).")
    p.add_argument("--data-source", type=Path,
                   help="Dataset stage's source.json: with source hf its test split replaces --test.")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Predictions JSONL to write.")
    p.add_argument("--metrics", type=Path,
                   help=f"Metrics JSON (default: {DEFAULT_METRICS} for the default --output, else beside --output).")
    p.add_argument("--limit", type=int, help="Evaluate the first N test rows; 0 = all (default: eval_limit).")
    p.add_argument("--batch-size", type=int, help="Prompts generated together; 1 = one at a time (default: eval_batch_size).")
    p.add_argument("--max-tokens", type=int, help="Generation cap per row (default: eval_max_tokens).")
    p.add_argument("--adapter", choices=("best", "last"), help="Adapter file to use (default: eval_adapter).")
    p.add_argument("--resume", action="store_true", help="Keep the rows already in --output; generate the rest.")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="Params file.")
    return p.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        run_config = load_run_config(args.params)
        cfg = run_config.evaluate
        model_name = args.model or run_config.train.model
        limit = (args.limit if args.limit is not None else cfg.eval_limit) or None
        batch_size = args.batch_size or cfg.eval_batch_size
        max_tokens = args.max_tokens or cfg.eval_max_tokens
        if batch_size < 1 or max_tokens < 1 or (limit is not None and limit < 0):
            raise EvaluateError("--batch-size and --max-tokens must be >= 1 and --limit >= 0")
        metrics_path = args.metrics or (DEFAULT_METRICS if args.output == DEFAULT_OUTPUT else args.output.with_suffix(".metrics.json"))

        args.test = split_path(args.data_source, "test", args.test)
        all_tests = read_test_rows(args.test)
        tests = all_tests[:limit]
        done = read_done(args.output, all_tests) if args.resume else {}
        beyond = [i for i in done if i >= len(tests)]
        if beyond:
            print(f"note: dropping {len(beyond)} saved rows beyond --limit {limit}", file=sys.stderr)
            done = {i: row for i, row in done.items() if i < len(tests)}
        if args.resume:
            print(f"resuming: {len(done)} of {len(tests)} rows already in {args.output}", file=sys.stderr)

        model, tokenizer, weights = load(model_name, args.adapter_path, args.adapter or cfg.eval_adapter)
        threads = configure_threads()  # one OpenBLAS thread unless OPENBLAS_NUM_THREADS says otherwise
        pending = [t for t in tests if t.row not in done]
        with PredictionWriter(args.output, keep=[done[i] for i in sorted(done)]) as writer:
            with row_progress(len(tests), len(done)) as advance:
                new, throughput = generate_predictions(model, tokenizer, pending, writer, max_tokens, batch_size, advance)
        predictions = finalize(args.output, {**done, **new})

        loss = test_loss(model, tokenizer, [t.record for t in all_tests], cfg.eval_loss_batch_size,
                         cfg.eval_loss_batches, cfg.eval_max_seq_length)  # fmt: skip
        settings = {"model": model_name, "adapter": adapter_summary(weights), "test": str(args.test),
                    "rows": len(tests), "resumed_rows": len(done), "max_tokens": max_tokens, "batch_size": batch_size,
                    "blas": loaded_blas()["name"], "blas_threads": threads}  # fmt: skip
        metrics = build_metrics(tests, predictions, loss, throughput, settings)
        write_json(metrics_path, metrics)
    except (ParamsError, EvaluateError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print_summary(metrics)
    print(f"wrote {args.output} ({len(predictions)} rows) and {metrics_path}")


if __name__ == "__main__":
    main()
