"""Resume under DVC, in a copy of the repository: `dvc repro train` and `dvc exp run` killed with SIGKILL
(the whole process group: DVC and the stage) and run again continue from the last checkpoint.

    .venv/bin/python -m pytest -q tests/test_train_resume_dvc.py

The resume state (models/runs/mlx/latest.resume/) is no DVC output: DVC deletes the half-made run dir
before rerunning the stage, but not the state, and the stage is rerun because a killed run never
updated dvc.lock. About a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml
from repo_utils import copy_repo_with_stages, git_commit, run, venv_env
from train_support import chat_rows, write_rows

RUN = Path("models/runs/mlx/latest")
STATE = Path("models/runs/mlx/latest.resume")


def kill_after_checkpoint(repo: Path, cmd: list[str], iteration: int = 5) -> int:
    """Start ``cmd``, SIGKILL its process group once the state of ``iteration`` exists; return the newest
    complete state's iteration."""
    proc = subprocess.Popen(cmd, cwd=repo, env=venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not (repo / STATE / f"state-{iteration:07d}").is_dir():
            assert proc.poll() is None, f"{cmd} ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    states = sorted((repo / STATE).glob("state-*"))
    assert states
    return int(states[-1].name.split("-")[1])


def resumed_from(stdout: str) -> int:
    lines = [line for line in stdout.splitlines() if " resumed from iteration " in line]
    assert len(lines) == 1, stdout[-3000:]
    return int(lines[0].split(" resumed from iteration ")[1].split()[0])


def test_killed_repro_and_exp_run_resume(tmp_path):
    repo = copy_repo_with_stages(tmp_path / "repo", ("dataset", "train"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update(iters=30, batch_size=2, lora_layers=2, steps_per_report=5, steps_per_eval=5, save_every=5,
                  val_batches=2, max_seq_length=256, learning_rate=1e-3)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_rows(repo / "data/training/train.jsonl", chat_rows(24, seed=1))
    write_rows(repo / "data/training/valid.jsonl", chat_rows(8, seed=2))
    git_commit(repo, "small params and splits")

    # dvc repro: killed, rerun resumes, then an unchanged repro is a no-op.
    saved = kill_after_checkpoint(repo, ["dvc", "repro", "train"])
    assert json.loads((repo / RUN / "run.json").read_text())["status"] == "running"
    again = run(["dvc", "repro", "train"], cwd=repo)
    assert "Running stage 'train'" in again.stdout and resumed_from(again.stdout) == saved
    run_json = json.loads((repo / RUN / "run.json").read_text())
    assert run_json["status"] == "completed" and run_json["resume"]["from_iteration"] == saved
    assert json.loads((repo / "metrics/train.json").read_text())["iterations"] == 30
    assert not (repo / STATE).exists()
    assert "Running stage 'train'" not in run(["dvc", "repro", "train"], cwd=repo).stdout
    assert "latest.resume" not in run(["git", "status", "--porcelain", "--ignored=no"], cwd=repo).stdout
    git_commit(repo, "trained")

    # dvc exp run (in the workspace): the same; the finished experiment is a normal DVC result.
    saved = kill_after_checkpoint(repo, ["dvc", "exp", "run", "-S", "seed=1"])
    exp = run(["dvc", "exp", "run", "-S", "seed=1"], cwd=repo)
    assert resumed_from(exp.stdout) == saved
    assert not (repo / STATE).exists()
    shown = json.loads(run(["dvc", "exp", "show", "--json"], cwd=repo).stdout)
    names = [(rev["name"], rev["data"]["params"]["params.yaml"]["data"]["seed"])
             for commit in shown for e in commit.get("experiments") or [] for rev in e["revs"]]
    assert len(names) == 1 and names[0][1] == 1
    # A SIGKILLed `dvc exp run` leaves git's HEAD detached (DVC cannot restore it): back to main, as the README says.
    run(["git", "checkout", "-q", "main"], cwd=repo)
    run(["git", "checkout", "-q", "--", "."], cwd=repo)
    run(["dvc", "checkout", "-q"], cwd=repo)
    assert json.loads((repo / RUN / "run.json").read_text())["params"]["seed"] == 0
    run(["dvc", "exp", "apply", names[0][0]], cwd=repo)
    applied = json.loads((repo / RUN / "run.json").read_text())
    assert applied["params"]["seed"] == 1 and applied["resume"]["from_iteration"] == saved
