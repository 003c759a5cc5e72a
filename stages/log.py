"""Stage log: send a finished training run to MLflow once, and write a receipt of where it went.

Where: MLFLOW_TRACKING_URI if set; else DagsHub's MLflow when DAGSHUB_OWNER, DAGSHUB_REPO and a token
(DAGSHUB_USER_TOKEN or DAGSHUB_TOKEN) are set; else a local store (mlflow.db + mlartifacts/, open it
with `mlflow ui --backend-store-uri sqlite:///mlflow.db`). Rerunning for the same run adds nothing.

    python stages/log.py --run-dir models/runs/mlx/latest --train-metrics metrics/train.json \
        --eval-metrics metrics/eval.json --predictions models/eval/predictions.jsonl \
        --receipt tracking/receipt.json
    python stages/log.py --run-dir path/to/an/old/run --experiment-name sweep-1   # by hand
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from compression_layer.io import write_json
from compression_layer.params import ParamsError
from compression_layer.tracking.base import NullTracker, sync_run
from compression_layer.tracking.collect import collect_run, write_sample
from compression_layer.tracking.config import load_log_config
from compression_layer.tracking.target import TrackingError, http_limits, resolve, scrub, secret_values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, default=Path("models/runs/mlx/latest"), help="Training run folder.")
    p.add_argument("--train-metrics", type=Path, help="metrics/train.json of this run (logged when given).")
    p.add_argument("--eval-metrics", type=Path, help="metrics/eval.json of this run (logged when given).")
    p.add_argument("--predictions", type=Path, help="predictions.jsonl of this run (its first rows are logged).")
    p.add_argument("--experiment-name", help="MLflow experiment (default: experiment_name in params.yaml).")
    p.add_argument("--predictions-sample", type=int, help="Rows of predictions to log (default: params.yaml).")
    p.add_argument("--receipt", type=Path, help="Write the receipt JSON here (the pipeline: tracking/receipt.json).")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="Params file with the log keys.")
    p.add_argument("--project-dir", type=Path, default=Path("."), help="Holds dvc.lock, .git and the local store.")
    p.add_argument("--dry-run", action="store_true", help="Collect and summarise, log nothing (no MLflow import).")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    secrets = secret_values(os.environ)
    try:
        cfg = load_log_config(args.params)
        experiment = args.experiment_name or cfg.experiment_name
        sample_rows = cfg.log_predictions_sample if args.predictions_sample is None else args.predictions_sample
        target = resolve(os.environ, args.project_dir)
        # Before mlflow is imported: cap its HTTP waits (its defaults retry for minutes), give it the
        # credentials (this process only), and keep its usage telemetry off the network.
        os.environ.update(http_limits(os.environ, cfg.log_http_timeout, cfg.log_http_retries))
        os.environ.update(target.env)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

        with tempfile.TemporaryDirectory(prefix="log-stage-") as tmp:
            sample = None
            if args.predictions is not None and sample_rows > 0:
                if not args.predictions.is_file():
                    raise TrackingError(f"predictions not found: {args.predictions}")
                sample = Path(tmp) / "predictions_sample.jsonl"
                write_sample(args.predictions, sample, sample_rows)
            record = collect_run(
                args.run_dir,
                train_metrics=args.train_metrics,
                eval_metrics=args.eval_metrics,
                predictions_sample=sample,
                log_checkpoints=cfg.log_checkpoints,
                project_dir=args.project_dir,
                env=os.environ,
            )
            if args.dry_run:
                tracker = NullTracker()
            else:
                from compression_layer.tracking.mlflow_backend import MlflowTracker

                tracker = MlflowTracker(target, timeout=os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT"))
            result = sync_run(tracker, record, experiment)
    except (ParamsError, TrackingError) as exc:
        print(f"error: {scrub(str(exc), secrets)}", file=sys.stderr)
        sys.exit(1)

    summary = f"{len(record.params)} params, {len(record.metrics)} metric points, {len(record.artifacts)} artifacts"
    if args.dry_run:
        print(f"dry run: would log {summary} to {target.describe()} (experiment '{experiment}')")
        return
    receipt = {
        "run_id": result.run_id,
        "run_name": result.run_name,
        "experiment_id": result.experiment_id,
        "experiment_name": experiment,
        "tracking": target.kind,
        "tracking_uri": target.display,
        "identity_key": record.identity,
    }
    if target.display.startswith(("http://", "https://")):
        receipt["run_url"] = f"{target.display.rstrip('/')}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
    if args.receipt is not None:
        write_json(args.receipt, receipt)
    where = f"{target.describe()}, experiment '{experiment}'"
    if result.logged:
        verb = "logged new run" if result.created else "completed run"
        print(f"{verb} {result.run_id} ({summary}) to {where}")
    else:
        print(f"run {result.run_id} already logged to {where}: nothing to do")
    if target.kind == "local":
        print(f"view it with: mlflow ui --backend-store-uri {target.display}")


if __name__ == "__main__":
    main()
