"""Resuming a killed training run: real stage processes (stages/train.py) killed with SIGKILL, then rerun.

    .venv/bin/python -m pytest -q tests/test_train_resume.py

The reference is an uninterrupted run of the same params. On this CPU backend MLX is deterministic, so a
resumed run must end with *bit-identical* adapters (last, best and every numbered checkpoint) and the same
loss history; the settings make that hard: dropout (RNG state), AdamW with a cosine schedule and warmup
(optimizer state, schedule position), gradient accumulation with checkpoints between two updates (the
accumulated gradient) and report windows that straddle checkpoints. About a minute in all.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import pytest
import yaml
from train_support import ROOT, make_data

from compression_layer.train.resume import KILL_HOOK_ENV

PARAMS = dict(iters=40, batch_size=2, lora_layers=2, steps_per_report=3, steps_per_eval=5, save_every=5,
              val_batches=2, max_seq_length=256, learning_rate=1e-3, grad_accumulation_steps=2, lora_dropout=0.1,
              optimizer="adamw", lr_schedule="cosine", warmup_steps=2)
# Columns of history/train.csv that do not depend on timing.
STABLE = ("step", "train_loss", "learning_rate", "trained_tokens")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_path):
    root = tmp_path_factory.mktemp("resume")
    data = make_data(root / "data")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"model": str(tiny_model_path), **PARAMS}))
    return root, data, params


def stage_cmd(setup, out: Path, *extra: str) -> list[str]:
    root, data, params = setup
    return [sys.executable, str(ROOT / "stages/train.py"), "--params", str(params), "--train", str(data),
            "--valid", str(data), "--output-dir", str(out), "--metrics", str(out.with_suffix(".metrics.json")),
            *extra]


def run_stage(setup, out: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env.pop(KILL_HOOK_ENV, None)
    if kill_at:
        env[KILL_HOOK_ENV] = kill_at
    return subprocess.run(stage_cmd(setup, out, *extra), env=env, capture_output=True, text=True, timeout=600)


def resume_dir(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def states(out: Path) -> list[str]:
    return sorted(p.name for p in resume_dir(out).glob("state-*"))


@pytest.fixture(scope="module")
def reference(setup):
    out = setup[0] / "reference"
    proc = run_stage(setup, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def read_csv(path: Path, columns=None) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: r[k] for k in columns} for r in rows] if columns else rows


def assert_same_weights(a: Path, b: Path) -> None:
    x, y = mx.load(str(a)), mx.load(str(b))
    assert x.keys() == y.keys()
    for key in x:
        assert mx.array_equal(x[key], y[key]).item(), f"{a.name}: {key} differs"


def assert_same_run(out: Path, reference: Path) -> None:
    """Bit-identical adapter files and the same history as the uninterrupted run."""
    names = sorted(p.name for p in (reference / "adapter").glob("*.safetensors"))
    assert names == sorted(p.name for p in (out / "adapter").glob("*.safetensors"))
    assert "best_adapters.safetensors" in names and "0000040_adapters.safetensors" in names
    for name in names:
        assert_same_weights(out / "adapter" / name, reference / "adapter" / name)
    assert read_csv(out / "history/train.csv", STABLE) == read_csv(reference / "history/train.csv", STABLE)
    assert read_csv(out / "history/val.csv") == read_csv(reference / "history/val.csv")
    ours, theirs = (json.loads(p.with_suffix(".metrics.json").read_text()) for p in (out, reference))
    for key in ("final_train_loss", "final_val_loss", "best_val_loss", "best_val_iteration", "trained_tokens",
                "iterations"):
        assert ours[key] == theirs[key], key


def resumed_line(log: str) -> str:
    lines = [line for line in log.splitlines() if " resumed from iteration " in line]
    assert len(lines) == 1, log
    return lines[0]


def test_sigkill_mid_run_then_rerun_continues_from_the_last_checkpoint(setup, reference):
    out = setup[0] / "killed"
    proc = subprocess.Popen(stage_cmd(setup, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    deadline = time.monotonic() + 300
    while not (resume_dir(out) / "state-0000005").is_dir():  # a checkpoint exists: kill somewhere after it
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    saved = states(out)
    assert saved, "the kill left no complete state"
    from_iteration = int(saved[-1].split("-")[1])
    assert 5 <= from_iteration < 40
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # a SIGKILL cleans nothing up

    rerun = run_stage(setup, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from iteration {from_iteration} of 40" in resumed_line(rerun.stdout)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed"
    assert run["resume"]["resumed"] is True and run["resume"]["from_iteration"] == from_iteration
    # train.log: the killed run's lines up to its checkpoint, the resume line, then the rest.
    log = (out / "train.log").read_text()
    head, tail = log.split(resumed_line(log))
    assert f"saved {from_iteration:07d}_adapters.safetensors" in head and "done:" in tail
    assert f"| saved {from_iteration:07d}_" not in tail
    assert int(read_csv(out / "history/train.csv")[-1]["step"]) == 40
    # Numbering kept: every checkpoint once, from the killed run's part and the resumed part.
    assert run["checkpoints"] == [f"{i:07d}_adapters.safetensors" for i in range(5, 41, 5)]
    assert_same_run(out, reference)
    assert not resume_dir(out).exists()  # a finished run leaves nothing to resume


@pytest.mark.parametrize("point, expected", [("partial", 10), ("published", 15)])
def test_kill_during_a_checkpoint_write_keeps_the_previous_one(setup, reference, point, expected):
    """The process SIGKILLs itself while saving the state of iteration 15: half-way through the temporary
    folder (the state of iteration 10 stays the one to use), or right after the rename, before the older
    state is removed (both complete; the newer one wins)."""
    out = setup[0] / f"killed-in-save-{point}"
    proc = run_stage(setup, out, kill_at=f"15:{point}")
    assert proc.returncode == -signal.SIGKILL
    if point == "partial":
        assert states(out) == ["state-0000010"] and (resume_dir(out) / ".state-0000015.partial").is_dir()
    else:
        assert states(out) == ["state-0000010", "state-0000015"]

    rerun = run_stage(setup, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from iteration {expected} of 40" in resumed_line(rerun.stdout)
    assert_same_run(out, reference)


@pytest.mark.parametrize(
    "flag, value, resumes",
    [
        ("--lora-rank", "16", False),  # changes the adapter itself
        ("--learning-rate", "2e-3", False),  # changes the numbers, not the shapes
        ("--steps-per-report", "2", True),  # only reporting: not part of the fingerprint
    ],
)
def test_a_checkpoint_of_other_params_is_not_resumed(setup, flag, value, resumes):
    out = setup[0] / f"mismatch{flag}"
    killed = run_stage(setup, out, "--iters", "10", kill_at="5:published")
    assert killed.returncode == -signal.SIGKILL and states(out) == ["state-0000005"]

    rerun = run_stage(setup, out, "--iters", "10", flag, value)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    val_steps = [int(r["step"]) for r in read_csv(out / "history/val.csv")]
    assert val_steps == [0, 5, 10]  # the history of the whole run in both cases
    if resumes:
        assert "resumed from iteration 5 of 10" in resumed_line(rerun.stdout)
        assert run["resume"]["from_iteration"] == 5
        return
    name = flag[2:].replace("-", "_")
    notes = [line for line in rerun.stdout.splitlines() if "resume:" in line]
    assert len(notes) == 1 and "not resuming from the checkpoint at iteration 5" in notes[0]
    assert f"{name} " in notes[0] and "starting fresh" in notes[0]
    assert " resumed from iteration " not in rerun.stdout
    assert run["resume"]["resumed"] is False and run["resume"]["note"] == notes[0].split(" ", 2)[2]
    if name == "lora_rank":
        assert "lora_rank 8 -> 16" in notes[0]
        config = json.loads((out / "adapter/adapter_config.json").read_text())
        assert config["lora_parameters"]["rank"] == 16
        weights = mx.load(str(out / "adapter/adapters.safetensors"))
        assert {v.shape[-1] for k, v in weights.items() if k.endswith("lora_a")} == {16}


def test_fresh_flag_discards_the_state(setup):
    out = setup[0] / "fresh"
    assert run_stage(setup, out, "--iters", "10", kill_at="5:published").returncode == -signal.SIGKILL
    rerun = run_stage(setup, out, "--iters", "10", "--fresh")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "--fresh given: discarding the checkpoint at iteration 5" in rerun.stdout
    assert json.loads((out / "run.json").read_text())["resume"]["resumed"] is False
    assert not resume_dir(out).exists()


def test_an_unreadable_newest_state_falls_back_to_the_previous_one(setup, reference):
    """Not a kill (renames make those safe) but a damaged disk or a hand edit: the older state is used."""
    out = setup[0] / "damaged"
    assert run_stage(setup, out, kill_at="10:published").returncode == -signal.SIGKILL
    assert states(out) == ["state-0000005", "state-0000010"]
    (resume_dir(out) / "state-0000010/state.json").write_text('{"iteration": 10, "fi')
    rerun = run_stage(setup, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resume: skipped state-0000010 is unreadable" in rerun.stdout
    assert "resumed from iteration 5 of 40" in resumed_line(rerun.stdout)
    assert_same_run(out, reference)


def test_a_state_that_does_not_fit_the_model_is_a_one_line_error(setup):
    out = setup[0] / "misfit"
    assert run_stage(setup, out, "--iters", "10", kill_at="5:published").returncode == -signal.SIGKILL
    mx.save_safetensors(str(resume_dir(out) / "state-0000005/optimizer.safetensors"), {"step": mx.array(5)})
    rerun = run_stage(setup, out, "--iters", "10")
    assert rerun.returncode == 1
    errors = [line for line in rerun.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "error: resume: cannot restore" in errors[0] and "--fresh" in errors[0]
    assert "Traceback" not in rerun.stderr
    assert (resume_dir(out) / "state-0000005").is_dir()  # kept: deleting it is the user's call
