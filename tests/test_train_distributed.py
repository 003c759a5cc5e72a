"""Data-parallel training through the train stage: `num_processes: 2` makes `dvc repro` launch the stage twice
with mlx.launch (ring backend, CPU, this machine); rank 0 alone writes the run dir, metrics and checkpoints
(every file write of each process is recorded by a Python audit hook), and the run trains on exactly the
tokens a single process does. Plus the refusals (batch size, hostfile) and the launch command.

    .venv/bin/python -m pytest -q tests/test_train_distributed.py      (about a minute)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from repo_utils import copy_repo_with_stages, git_commit, run
from train_support import QUICK, ROOT, chat_rows, write_rows

from compression_layer.train.distributed import LAUNCHED_ENV, DistributedConfig, launch_command

# Loaded by every Python process started with this folder on PYTHONPATH; the ones mlx.launch starts (MLX_RANK
# set) log each file they open for writing and each rename/removal, so the test sees which rank wrote what.
AUDIT_HOOK = '''
import os, sys
_dir = os.environ.get("WRITE_AUDIT_DIR")
if _dir and "MLX_RANK" in os.environ:
    _log = open(os.path.join(_dir, f"rank{os.environ['MLX_RANK']}-{os.getpid()}.log"), "a", buffering=1)
    _writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def _path(p):
        return os.path.abspath(os.fsdecode(p)) if isinstance(p, (str, bytes, os.PathLike)) else None

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            if _path(path) and ((mode and any(c in str(mode) for c in "wax+")) or (isinstance(flags, int) and flags & _writes)):
                _log.write(f"open {_path(path)}\\n")
        elif event in ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree") and args and _path(args[0]):
            _log.write(f"{event} {' '.join(str(_path(a)) for a in args[:2] if _path(a))}\\n")

    sys.addaudithook(_hook)
'''


def _project(tmp_path: Path) -> Path:
    """A repo copy with the dataset and train stages, tiny training params and small committed splits."""
    repo = copy_repo_with_stages(tmp_path / "repo", ("dataset", "train"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update({k: v for k, v in QUICK.items() if k != "learning_rate"}, num_processes=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_rows(repo / "data/training/train.jsonl", chat_rows(16, seed=1))
    write_rows(repo / "data/training/valid.jsonl", chat_rows(6, seed=2))
    git_commit(repo, "small params and splits, two processes")
    return repo


def _writes(audit: Path, rank: int) -> list[str]:
    return [line for log in sorted(audit.glob(f"rank{rank}-*.log")) for line in log.read_text().splitlines()]


def test_two_ring_processes_through_the_train_stage_match_one_process(tmp_path):
    repo = _project(tmp_path)
    hook, audit = tmp_path / "hook", tmp_path / "audit"
    hook.mkdir()
    audit.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
           "WRITE_AUDIT_DIR": str(audit)}

    out = run(["dvc", "repro", "train"], repo, timeout=600, **env).stdout
    assert "launching 2 training processes" in out and "mlx.launch -n 2" in out, out[-3000:]
    run_dir, metrics_file = repo / "models/runs/mlx/latest", repo / "metrics/train.json"
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["status"] == "completed" and run_json["processes"] == 2
    assert not (repo / "models/runs/mlx/latest.failed").exists()

    # Both ranks ran under the hook; rank 1 trained in lockstep but wrote nothing of the run's outputs.
    assert list(audit.glob("rank0-*.log")) and list(audit.glob("rank1-*.log"))
    rank0, rank1 = _writes(audit, 0), _writes(audit, 1)
    assert rank0 and any(str(run_dir / "adapter") in line for line in rank0)
    outputs = (str(run_dir), str(metrics_file))
    assert [line for line in rank1 if any(o in line for o in outputs)] == []
    # Rank 0 wrote each checkpoint once (temp file renamed into place), and the metrics once.
    for name in ("0000002_adapters.safetensors", "0000004_adapters.safetensors"):
        assert sum(line.endswith(str(run_dir / "adapter" / name)) for line in rank0 if line.startswith("os.rename")) == 1
    assert sum(line.endswith(str(metrics_file)) for line in rank0 if line.startswith("os.rename")) == 1
    log = (run_dir / "train.log").read_text()
    assert log.count(" done: ") == 1 and log.count("saved 0000004_adapters.safetensors") == 1
    assert run_json["checkpoints"] == ["0000002_adapters.safetensors", "0000004_adapters.safetensors"]
    steps = [line.split(",")[0] for line in (run_dir / "history/train.csv").read_text().splitlines()[1:]]
    assert steps == ["2", "4"]

    # One process on the same data and params: the same tokens, batches and files.
    single = subprocess.run(
        [sys.executable, str(ROOT / "stages/train.py"), "--params", "params.yaml", "--train", "data/training/train.jsonl",
         "--valid", "data/training/valid.jsonl", "--num-processes", "1", "--output-dir", str(tmp_path / "single"),
         "--metrics", str(tmp_path / "single.json")],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    one, two = json.loads((tmp_path / "single.json").read_text()), json.loads(metrics_file.read_text())
    assert two["trained_tokens"] == one["trained_tokens"] > 0
    assert two["iterations"] == one["iterations"] == 4
    files = sorted(p.name for p in (run_dir / "adapter").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "single/adapter").iterdir())
    # Same batches: each rank's loss is its own rows' mean, so the average differs from one process's only slightly.
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], rel=0.02)


def _stage(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**QUICK, "model": str(ROOT / "models/base/tiny-qwen3")}))
    write_rows(tmp_path / "data/train.jsonl", chat_rows(8, seed=1))
    return subprocess.run(
        [sys.executable, str(ROOT / "stages/train.py"), "--params", str(params), "--train", str(tmp_path / "data"),
         "--no-valid", "--output-dir", str(tmp_path / "run"), "--metrics", str(tmp_path / "m.json"), *flags],
        capture_output=True, text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != LAUNCHED_ENV},
    )


@pytest.mark.parametrize("flags, message", [
    (["--num-processes", "2", "--batch-size", "3"],
     "error: batch_size=3 is the global batch and must be divisible by num_processes=2 "
     "(each process takes batch_size / num_processes rows)"),
    (["--num-processes", "0"], "error: num_processes must be >= 1, got 0"),
    (["--num-processes", "2", "--hostfile", "no-such-hosts.json"], "error: hostfile not found: no-such-hosts.json"),
    (["--distributed-backend", "tcp"], "'tcp' is not one of 'ring', 'mpi', 'nccl', 'jaccl', 'jaccl-ring'"),
])
def test_refusals_before_anything_is_launched(tmp_path, flags, message):
    proc = _stage(tmp_path, *flags)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "launching" not in proc.stdout
    assert message in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_hostfile_must_list_one_host_per_process(tmp_path):
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps([{"ssh": "mac1.local", "ips": ["10.0.0.1"]}, {"ssh": "mac2.local", "ips": ["10.0.0.2"]}]))
    proc = _stage(tmp_path, "--num-processes", "4", "--batch-size", "4", "--hostfile", str(hosts))
    assert proc.stderr.strip().endswith(
        f"error: hostfile {hosts} lists 2 hosts but num_processes is 4: one process per host entry")


def test_a_failing_rank_fails_the_stage_with_one_line(tmp_path):
    proc = _stage(tmp_path, "--num-processes", "2", "--lora-layers", "99")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: training with 2 processes failed: lora_layers is 99 but model "
        f"'{ROOT / 'models/base/tiny-qwen3'}' has only 4 layers")
    assert not (tmp_path / "run").exists() and (tmp_path / "run.failed/run.json").exists()


def test_launch_commands(tmp_path):
    script = [sys.executable, "stages/train.py", "--iters", "4"]
    local = launch_command(DistributedConfig(num_processes=2), script)
    assert local[:2] == [sys.executable, str(Path(sys.executable).parent / "mlx.launch")]
    assert local[local.index("-n") + 1] == "2" and "--starting-port" in local
    assert local[local.index("--env") + 1] == f"{LAUNCHED_ENV}=1"
    assert local[local.index("--") + 1 :] == script  # the command starts with the interpreter

    hosts = tmp_path / "hosts.json"
    hosts.write_text("[]")
    cluster = launch_command(DistributedConfig(num_processes=2, hostfile=str(hosts), distributed_backend="nccl"), script)
    assert cluster[cluster.index("--backend") + 1] == "nccl" and cluster[cluster.index("--hostfile") + 1] == str(hosts)
    assert "-n" not in cluster and "--starting-port" not in cluster
