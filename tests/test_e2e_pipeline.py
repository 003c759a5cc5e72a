"""End to end, as a user on a fresh clone: `make repro`, a no-op `dvc repro`, a sweep point, a metrics diff.

Runs the whole pipeline on the embedded sample corpus and tiny model (a few minutes on 2 cores). The copy
shares this venv through a `.venv` link, so `make repro` finds setup done (its stamp is named by content).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from repo_utils import copy_repo, git_commit, run

DATA_STAGES = ("preprocess_nl", "preprocess_code", "split", "sanitize")


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("e2e") / "project")
    (repo / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    stamp_name = subprocess.run(
        "cat pyproject.toml scripts/setup_blas.sh | cksum | cut -d' ' -f1", shell=True, cwd=repo,
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    # Under `make test` setup has run and its stamp exists; under a bare pytest, don't reinstall into this venv.
    make = ["make", "repro"] if (repo / ".venv" / f".installed-{stamp_name}").exists() else ["make", "-o", "setup", "repro"]
    proc = run(make, repo, timeout=1800)
    return repo, proc.stdout


def test_make_repro_builds_every_stage(project):
    repo, output = project
    assert _ran(output) == {*DATA_STAGES, "dataset", "train", "evaluate", "log"}, output[-3000:]
    assert (repo / "models/runs/mlx/latest/adapter/adapters.safetensors").exists()
    assert json.loads((repo / "metrics/eval.json").read_text())
    assert json.loads((repo / "tracking/receipt.json").read_text())["run_id"]


def test_second_repro_does_nothing(project):
    repo, _ = project
    out = run(["dvc", "repro"], repo).stdout
    assert _ran(out) == set(), out
    assert "up to date" in out


def test_sweep_point_reruns_only_train_evaluate_log_and_metrics_diff_shows_it(project):
    repo, _ = project
    git_commit(repo, "baseline run")
    before = json.loads((repo / "metrics/train.json").read_text())
    out = run(["dvc", "exp", "run", "-S", "lora_rank=16"], repo, timeout=1800).stdout
    assert _ran(out) == {"train", "evaluate", "log"}, out[-3000:]
    run_json = json.loads((repo / "models/runs/mlx/latest/run.json").read_text())
    assert run_json["params"]["lora_rank"] == 16
    assert json.loads((repo / "metrics/train.json").read_text()) != before

    diff = run(["dvc", "metrics", "diff", "--md"], repo).stdout
    assert "metrics/train.json" in diff and "metrics/eval.json" in diff, diff
    params = run(["dvc", "params", "diff", "--md"], repo).stdout
    assert "lora_rank" in params and "16" in params, params
    shown = run(["dvc", "exp", "show", "--md", "--no-pager"], repo, check=False)
    assert shown.returncode == 0 and "lora_rank" in shown.stdout, shown.stderr
