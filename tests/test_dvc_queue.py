"""A parallel sweep with DVC's queue, as the README shows it: `dvc exp run --queue -S lora_rank=8,16` queues
two experiments, `dvc queue start -j 2` runs them (two workers), and both appear in `dvc exp show` with
their params and train metrics; `dvc exp apply` brings one run's outputs back.

    .venv/bin/python -m pytest -q tests/test_dvc_queue.py      (about half a minute)

Queued experiments run in a copy made from the last commit (git-tracked files only), so everything,
the small splits in data/training included, is committed first. The copy keeps the dataset and train
stages of dvc.yaml.
"""

from __future__ import annotations

import json
import time

import yaml
from repo_utils import copy_repo_with_stages, git_commit, run
from train_support import QUICK, chat_rows, write_rows

WAIT_SECONDS = 150


def _experiments(shown: list[dict]) -> dict[str, dict]:
    """Experiment name -> its data (params, metrics) from `dvc exp show --json`."""
    found = {}
    for baseline in shown:
        for group in baseline.get("experiments") or ():
            for rev in group["revs"]:
                found[rev["name"]] = rev["data"]
    return found


def test_queued_sweep_runs_in_parallel_workers_and_shows_both(tmp_path):
    repo = copy_repo_with_stages(tmp_path / "repo", ("dataset", "train"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update({k: v for k, v in QUICK.items() if k != "learning_rate"})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_rows(repo / "data/training/train.jsonl", chat_rows(16, seed=1))
    write_rows(repo / "data/training/valid.jsonl", chat_rows(6, seed=2))
    git_commit(repo, "small params and splits")  # the queue copies only what git tracks

    queued = run(["dvc", "exp", "run", "--queue", "-S", "lora_rank=8,16", "-S", "iters=4"], repo)
    assert queued.stdout.count("Queued experiment") == 2, queued.stdout
    try:
        run(["dvc", "queue", "start", "-j", "2"], repo)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            status = run(["dvc", "queue", "status"], repo).stdout
            if "Queued" not in status and "Running" not in status:
                break
            assert time.monotonic() < deadline, f"queue not done after {WAIT_SECONDS} s:\n{status}"
            time.sleep(2)
    finally:
        run(["dvc", "queue", "stop"], repo, check=False)  # the idle workers this test started
    assert status.count("Success") == 2, status

    experiments = _experiments(json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout))
    assert len(experiments) == 2, experiments.keys()
    by_rank = {}
    for name, data in experiments.items():
        values = data["params"]["params.yaml"]["data"]
        metrics = data["metrics"]["metrics/train.json"]["data"]
        assert values["iters"] == 4 and metrics["iterations"] == 4
        assert metrics["best_val_loss"] is not None and metrics["trained_tokens"] > 0
        by_rank[values["lora_rank"]] = name
    assert set(by_rank) == {8, 16}
    table = run(["dvc", "exp", "show", "--md", "--no-pager"], repo).stdout
    assert all(name in table for name in by_rank.values())

    run(["dvc", "exp", "apply", by_rank[16]], repo)
    adapter = json.loads((repo / "models/runs/mlx/latest/adapter/adapter_config.json").read_text())
    assert adapter["lora_parameters"]["rank"] == 16
