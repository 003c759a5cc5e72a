"""The train stage under DVC, in a copy of the repository: `dvc repro` trains, an unchanged rerun is a no-op,
`dvc exp run -S lora_rank=16` reruns train with the new rank, and an eval_* change does not touch it.

    .venv/bin/python -m pytest -q tests/test_train_dvc.py

The copy keeps only the dataset and train stages of dvc.yaml (as written, with the top-level plots), so the small
splits written into data/training are plain git files rather than outputs of the data stages.
"""

from __future__ import annotations

import json

import yaml
from repo_utils import copy_repo_with_stages, git_commit, run
from train_support import QUICK, chat_rows, write_rows


def test_repro_then_experiment_with_a_new_rank(tmp_path):
    # dataset (local source: it only writes data/hf/source.json) is a dep of train.
    repo = copy_repo_with_stages(tmp_path / "repo", ("dataset", "train"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update({k: v for k, v in QUICK.items() if k != "learning_rate"})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_rows(repo / "data/training/train.jsonl", chat_rows(16, seed=1))
    write_rows(repo / "data/training/valid.jsonl", chat_rows(6, seed=2))
    git_commit(repo, "small params and splits")

    first = run(["dvc", "repro"], cwd=repo)
    assert "Running stage 'train'" in first.stdout
    run_json = json.loads((repo / "models/runs/mlx/latest/run.json").read_text())
    assert run_json["status"] == "completed" and run_json["params"]["lora_rank"] == 8
    metrics = json.loads((repo / "metrics/train.json").read_text())
    assert metrics["iterations"] == 4 and metrics["best_val_loss"] is not None

    again = run(["dvc", "repro"], cwd=repo)
    assert "Running stage 'train'" not in again.stdout

    # An evaluation key is not a train param: the stage stays cached.
    other = run(["dvc", "exp", "run", "-S", "eval_batch_size=2"], cwd=repo)
    assert "Running stage 'train'" not in other.stdout

    exp = run(["dvc", "exp", "run", "-S", "lora_rank=16"], cwd=repo)
    assert "Running stage 'train'" in exp.stdout
    run_json = json.loads((repo / "models/runs/mlx/latest/run.json").read_text())
    assert run_json["params"]["lora_rank"] == 16
    adapter = json.loads((repo / "models/runs/mlx/latest/adapter/adapter_config.json").read_text())
    assert adapter["lora_parameters"]["rank"] == 16
    shown = run(["dvc", "exp", "show", "--json"], cwd=repo)
    assert "lora_rank" in shown.stdout and "best_val_loss" in shown.stdout

    # The declared plots resolve to the history files (offline: --json, no HTML).
    plots = json.loads(run(["dvc", "plots", "show", "--json"], cwd=repo).stdout)["data"]
    assert set(plots) == {"loss", "learning_rate", "tokens_per_sec", "peak_mem_gb",
                          "models/runs/mlx/latest/loss_curve.png"}
    series = {v["filename::field"]: v["step"] for v in plots["loss"][0]["content"]["data"]["values"]}
    assert set(series) == {"train.csv::train_loss", "val.csv::val_loss"}
