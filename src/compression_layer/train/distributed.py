"""Data-parallel training with MLX's own launcher, `mlx.launch` (ring, MPI, NCCL or JACCL backends).

With ``num_processes > 1`` the train stage starts itself again through mlx.launch: one process per rank,
on this machine or on the hosts of a hostfile. Every rank holds the whole model and takes
``batch_size / num_processes`` rows of each global batch; the training loop averages the gradients over
the group (mlx's ``average_gradients``) and sums losses and token counts, so a run sees the same batches,
tokens and steps as one process would. Only rank 0 writes the run dir, metrics, checkpoints and logs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Literal, Optional

from compression_layer.params import ParamsError, field

BACKENDS = ("ring", "mpi", "nccl", "jaccl", "jaccl-ring")
LAUNCHED_ENV = "COMPRESSION_LAYER_LAUNCHED"  # set by the launch: the processes it starts must not launch again


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How many training processes, and where (top-level keys of params.yaml, read by the train stage)."""

    num_processes: int = field(
        1, "Data-parallel training processes; > 1 launches the train stage through mlx.launch. batch_size stays "
        "the global batch and must be divisible by it.",
    )
    hostfile: Optional[str] = field(
        None, "mlx.launch hostfile (JSON) with one entry per process, for several machines; null = this machine."
    )
    distributed_backend: Optional[Literal["ring", "mpi", "nccl", "jaccl", "jaccl-ring"]] = field(
        None, "mlx.launch backend: ring (TCP), mpi, nccl (NVIDIA GPUs), jaccl; null = the hostfile's, else nccl "
        "when CUDA is available, else ring.",
    )

    def validate(self) -> None:
        if self.num_processes < 1:
            raise ParamsError(f"num_processes must be >= 1, got {self.num_processes}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check(config: DistributedConfig, batch_size: int) -> None:
    """The launch is possible: batch_size divides, and a hostfile lists exactly num_processes hosts."""
    n = config.num_processes
    if batch_size % n:
        raise ParamsError(
            f"batch_size={batch_size} is the global batch and must be divisible by num_processes={n} "
            f"(each process takes batch_size / num_processes rows)"
        )
    if config.hostfile is not None:
        hosts = hostfile_hosts(config.hostfile)
        if hosts != n:
            raise ParamsError(
                f"hostfile {config.hostfile} lists {hosts} hosts but num_processes is {n}: one process per host entry"
            )


def hostfile_hosts(path: str | Path) -> int:
    """Entries of an mlx.launch hostfile (a list of hosts, or {"hosts": [...], "backend": ..., "envs": [...]})."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"hostfile not found: {path}") from None
    except (ValueError, UnicodeDecodeError):
        raise ParamsError(f"hostfile {path} is not valid JSON (see `mlx.distributed_config --help`)") from None
    hosts = data.get("hosts") if isinstance(data, dict) else data
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, dict) and "ssh" in h for h in hosts):
        raise ParamsError(f"hostfile {path}: expected a list of hosts like [{{\"ssh\": \"mac1.local\", \"ips\": [...]}}]")
    return len(hosts)


def is_launched() -> bool:
    """True inside a process that mlx.launch started for this stage."""
    return os.environ.get(LAUNCHED_ENV) == "1"


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    import mlx.core as mx

    return mx.distributed.init().rank()


def barrier() -> None:
    """Wait until every rank got here (a no-op for one process)."""
    import mlx.core as mx

    group = mx.distributed.init()
    if group.size() > 1:
        mx.eval(mx.distributed.all_sum(mx.array(1), stream=mx.cpu))


def launcher() -> str:
    """The mlx.launch script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "mlx.launch"
    found = str(beside) if beside.exists() else shutil.which("mlx.launch")
    if not found:
        raise ParamsError("num_processes > 1 needs mlx.launch (part of the mlx package), which was not found")
    return found


def free_port_range(count: int) -> int:
    """A first port such that it and the next ``count - 1`` are free on 127.0.0.1 (the local ring's ports)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            start = probe.getsockname()[1]
        if start + count > 65535:
            continue
        try:
            for port in range(start, start + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
    raise ParamsError(f"no {count} consecutive free local ports for the ring backend")


def launch_command(config: DistributedConfig, command: list[str]) -> list[str]:
    """mlx.launch ... -- <command>; ``command`` must start with the interpreter (mlx.launch runs it as is)."""
    cmd = [sys.executable, launcher()]
    if config.distributed_backend:
        cmd += ["--backend", config.distributed_backend]
    if config.hostfile is not None:
        cmd += ["--hostfile", str(config.hostfile)]
    else:
        cmd += ["-n", str(config.num_processes)]
        if config.distributed_backend in (None, "ring"):
            cmd += ["--starting-port", str(free_port_range(config.num_processes))]
    cmd += ["--env", f"{LAUNCHED_ENV}=1", "--"]
    return cmd + command


def launch_outcome(run_dir: str | Path, started: float, processes: int) -> str | None:
    """None when rank 0 completed the run dir after ``started``, else what went wrong (one line).

    mlx.launch exits 0 even when a process fails, so the run dir is the record: run.json says
    `completed`, or the failed run moved to ``<run>.failed/`` says why.
    """
    run_dir = Path(run_dir)

    def fresh(path: Path) -> dict | None:
        # started - 1: file times can be coarser than time.time()
        if not path.is_file() or path.stat().st_mtime < started - 1:
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return None

    done = fresh(run_dir / "run.json")
    if done is not None and done.get("status") == "completed":
        return None
    failed = fresh(run_dir.with_name(run_dir.name + ".failed") / "run.json")
    if failed is not None:
        return f"training with {processes} processes {failed.get('status', 'failed')}: {failed.get('error')}"
    return f"training with {processes} processes did not finish (see mlx.launch's messages above)"
