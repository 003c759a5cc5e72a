"""Resuming a data-parallel run: 2 processes under mlx.launch (ring backend, CPU), the whole process group
killed with SIGKILL after a checkpoint, then rerun. Each rank has its own RNG key, accumulated gradient and
report-window sums; rank 0 gathers them into the checkpoint, so the resumed run is bit-identical to an
uninterrupted 2-process run.

    .venv/bin/python -m pytest -q tests/test_train_resume_distributed.py      (about a minute)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import csv

import mlx.core as mx
import pytest
import yaml
from train_support import ROOT, make_data

PARAMS = dict(iters=20, batch_size=2, lora_layers=2, steps_per_report=3, steps_per_eval=5, save_every=5,
              val_batches=2, max_seq_length=256, learning_rate=1e-3, grad_accumulation_steps=2, lora_dropout=0.1,
              optimizer="adamw", lr_schedule="cosine", warmup_steps=2)


STABLE = ("step", "train_loss", "learning_rate", "trained_tokens")  # history/train.csv without timings


def read_csv(path, columns=None) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: r[k] for k in columns} if columns else r for r in csv.DictReader(fh)]


def same_weights(a, b) -> bool:
    x, y = mx.load(str(a)), mx.load(str(b))
    return x.keys() == y.keys() and all(mx.array_equal(x[k], y[k]).item() for k in x)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_path):
    root = tmp_path_factory.mktemp("resume-dist")
    data = make_data(root / "data")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"model": str(tiny_model_path), **PARAMS, "num_processes": 2}))
    return root, data, params


def cmd(setup, out):
    root, data, params = setup
    return [sys.executable, str(ROOT / "stages/train.py"), "--params", str(params), "--train", str(data),
            "--valid", str(data), "--output-dir", str(out), "--metrics", str(out.with_suffix(".json"))]


def env():
    return {**os.environ, "TOKENIZERS_PARALLELISM": "false"}


def test_two_process_run_killed_and_resumed_matches_an_uninterrupted_one(setup):
    root = setup[0]
    reference = subprocess.run(cmd(setup, root / "reference"), env=env(), capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = root / "killed"
    state = out.with_name("killed.resume")
    proc = subprocess.Popen(cmd(setup, out), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # mlx.launch and both ranks: one process group
    deadline = time.monotonic() + 300
    try:
        while not (state / "state-0000005").is_dir():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = max(int(p.name.split("-")[1]) for p in state.glob("state-*"))

    rerun = subprocess.run(cmd(setup, out), env=env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f" resumed from iteration {saved} of 20 " in rerun.stdout
    names = sorted(p.name for p in (root / "reference/adapter").glob("*.safetensors"))
    assert names == sorted(p.name for p in (out / "adapter").glob("*.safetensors"))
    assert "best_adapters.safetensors" in names
    for name in names:
        assert same_weights(out / "adapter" / name, root / "reference/adapter" / name), name
    assert read_csv(out / "history/train.csv", STABLE) == read_csv(root / "reference/history/train.csv", STABLE)
    assert read_csv(out / "history/val.csv") == read_csv(root / "reference/history/val.csv")
    assert not state.exists()
