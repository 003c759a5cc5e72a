"""Train stage: LoRA fine-tuning with mlx-lm, driven by the top-level training keys of params.yaml.

    python stages/train.py --params params.yaml --train data/training --valid data/training \
        --output-dir models/runs/mlx/latest --metrics metrics/train.json [--iters 20 --model DIR ...]

--train / --valid take a split file or a directory holding train.jsonl / valid.jsonl. Every training
key can be overridden for a run by hand with --<key> (e.g. --lora-rank 16 --learning-rate 1e-5).
A killed run, started again with the same params, continues from its last checkpoint (resume state in
<output-dir>.resume/; --fresh discards it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

import yaml

from compression_layer.config import load_run_config
from compression_layer.params import ParamsError, _Loader, build
from compression_layer.train.config import TrainConfig
from compression_layer.train.distributed import DistributedConfig, check, is_launched, launch_command
from compression_layer.train.errors import TrainError


def _override_flags(parser: argparse.ArgumentParser) -> None:
    """--<key> for every TrainConfig field; values are parsed as YAML (1e-5, true, null, [a, b])."""
    group = parser.add_argument_group("training params (override params.yaml)")
    for f in dataclasses.fields(TrainConfig):
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"param_{f.name}", metavar="VALUE",
                           default=None, help=f.metadata.get("help"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file (top-level training keys)")
    parser.add_argument("--train", default="data/training", help="training split: file or directory with train.jsonl")
    parser.add_argument("--valid", default="data/training", help="validation split: file or directory with valid.jsonl")
    parser.add_argument("--no-valid", action="store_true", help="train without validation")
    parser.add_argument("--data-source", help="dataset stage's source.json: with source hf its splits replace "
                        "--train / --valid (the pipeline passes data/hf/source.json)")
    parser.add_argument("--output-dir", default="models/runs/mlx/latest", help="run directory to (re)create")
    parser.add_argument("--metrics", default="metrics/train.json", help="metrics JSON for DVC")
    parser.add_argument("--resume-dir", help="resume state of an interrupted run (default: <output-dir>.resume); "
                        "a rerun with the same params continues from its last checkpoint")
    parser.add_argument("--fresh", action="store_true", help="discard any resume state and train from iteration 0")
    _override_flags(parser)
    group = parser.add_argument_group("data-parallel training (override params.yaml)")
    for f in dataclasses.fields(DistributedConfig):
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"dist_{f.name}", metavar="VALUE",
                           default=None, help=f.metadata.get("help"))
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> TrainConfig:
    """params.yaml (every top-level key checked, so a typo fails) with the --<key> flags on top."""
    values = load_run_config(args.params).train.to_dict()
    hints = typing.get_type_hints(TrainConfig)
    overrides = {}
    for f in dataclasses.fields(TrainConfig):
        raw = getattr(args, f"param_{f.name}")
        if raw is not None:
            # A flag value reads like a params.yaml value (1e-5, true, null, [a, b]); a model path stays a string.
            try:
                overrides[f.name] = raw if hints[f.name] is str else yaml.load(raw, Loader=_Loader)
            except yaml.YAMLError:
                raise ParamsError(f"--{f.name.replace('_', '-')}: cannot read {raw!r}") from None
    return build(TrainConfig, {**values, **overrides}, "command line" if overrides else str(args.params))


def load_distributed(args: argparse.Namespace) -> DistributedConfig:
    """num_processes, hostfile, distributed_backend from params.yaml, with --num-processes etc. on top."""
    values = load_run_config(args.params).distributed.to_dict()
    overrides = {}
    for f in dataclasses.fields(DistributedConfig):
        raw = getattr(args, f"dist_{f.name}")
        if raw is not None:
            overrides[f.name] = raw if f.name == "hostfile" else yaml.load(raw, Loader=_Loader)
    return build(DistributedConfig, {**values, **overrides}, "command line" if overrides else str(args.params))


def launch(dist: DistributedConfig, argv: list[str], args: argparse.Namespace) -> int:
    """Run this stage once per process through mlx.launch (the command starts with the interpreter), then
    check the run dir: mlx.launch exits 0 even when a process failed."""
    import subprocess
    import time

    from compression_layer.train.distributed import launch_outcome

    started = time.time()
    cmd = launch_command(dist, [sys.executable, os.path.abspath(__file__), *argv])
    print(f"launching {dist.num_processes} training processes: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd)
    error = launch_outcome(args.output_dir, started, dist.num_processes)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        config = load_config(args)
        dist = load_distributed(args)
        check(dist, config.batch_size)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if dist.num_processes > 1 and not is_launched():
        return launch(dist, sys.argv[1:] if argv is None else list(argv), args)
    from compression_layer.data.jsonl import DataError
    from compression_layer.data.source import split_path
    from compression_layer.train.data import resolve_split
    from compression_layer.train.run import train

    try:
        train_path = split_path(args.data_source, "train", resolve_split(args.train, "train"))
        valid_path = None if args.no_valid else split_path(args.data_source, "valid", resolve_split(args.valid, "valid"))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        train(
            config,
            train_path,
            valid_path,
            args.output_dir,
            args.metrics,
            resume_dir=args.resume_dir,
            fresh=args.fresh,
        )
    except (ParamsError, TrainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
