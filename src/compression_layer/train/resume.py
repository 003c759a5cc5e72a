"""Resume state: what a killed run needs to continue exactly where its last checkpoint left it.

It lives beside the run dir, in ``<run dir>.resume/`` (models/runs/mlx/latest.resume/), outside every DVC
output: DVC deletes a stage's outputs before rerunning it, and a `persist` output would turn off the
run-cache for the stage. A finished run deletes it, so the run dir stays the only result.

    latest.resume/
      checkpoints/NNNNNNN_adapters.safetensors   numbered adapters saved so far (each written atomically)
      state-NNNNNNN/                             the newest complete state (a folder renamed into place)
        adapters.safetensors  optimizer.safetensors  [best_adapters.safetensors]  train.log
        ranks.safetensors   per rank: MLX RNG key, accumulated gradient, report-window loss and tokens
        state.json          iteration, progress, validation watch, history rows, params fingerprint

A state folder is written under a temporary name and renamed when complete, so a kill during a save
leaves the previous state as it was. The data order needs no saved generator: it is a function of the
seed and the number of batches consumed (train.data.train_batches replays it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map_with_path

from compression_layer.io import write_json
from compression_layer.train.checkpoint import BEST_ADAPTER_FILE, adapter_weights, checkpoint_name, save_weights
from compression_layer.train.config import TrainConfig

STATE_VERSION = 1
# Params that change no number training computes: reports and allocator housekeeping.
NOT_FINGERPRINTED = ("steps_per_report", "clear_cache_threshold")
# Test hook: "<iteration>:partial" or "<iteration>:published" makes the process SIGKILL itself during
# (temp folder half written) or right after (new state renamed, older not yet removed) that save.
KILL_HOOK_ENV = "COMPRESSION_LAYER_TEST_KILL_IN_SAVE"
_STATE_RE = re.compile(r"^state-(\d{7})$")


def default_resume_dir(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".resume")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _model_identity(model_path: Path) -> dict[str, Any]:
    """Config and tokenizer hashes plus weight file sizes: cheap for a multi-GB model, still catches a swap."""
    small = ("config.json", "tokenizer.json", "tokenizer_config.json")
    return {
        "files": {name: _sha256(model_path / name) for name in small if (model_path / name).is_file()},
        "weights": {p.name: p.stat().st_size for p in sorted(model_path.glob("*.safetensors"))},
    }


def fingerprint(config: TrainConfig, model_path: Path, train_path: Path, valid_path: Path | None,
                world_size: int) -> dict[str, Any]:
    """Everything that decides the numbers a run computes; a state is resumed only when this is equal."""
    return {
        "version": STATE_VERSION,
        "params": {k: v for k, v in config.to_dict().items() if k not in NOT_FINGERPRINTED},
        "model_files": _model_identity(Path(model_path)),
        "train_data": _sha256(train_path),
        "valid_data": _sha256(valid_path) if valid_path is not None else None,
        "processes": world_size,
    }


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What changed between two fingerprints, in words (e.g. ``lora_rank 8 -> 16``)."""
    if saved.get("version") != current["version"]:
        return [f"state format {saved.get('version')} -> {current['version']}"]
    changes = []
    old, new = saved.get("params", {}), current["params"]
    for key in list(new) + [k for k in old if k not in new]:
        if old.get(key) != new.get(key):
            changes.append(f"{key} {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}")
    for key, what in (("model_files", "base model files"), ("train_data", "training data"),
                      ("valid_data", "validation data")):
        if saved.get(key) != current[key]:
            changes.append(f"{what} changed")
    if saved.get("processes") != current["processes"]:
        changes.append(f"processes {saved.get('processes')} -> {current['processes']}")
    return changes


@dataclass
class SavedState:
    """One complete state folder, read back."""

    path: Path
    info: dict[str, Any]

    @property
    def iteration(self) -> int:
        return int(self.info["iteration"])

    def arrays(self, name: str) -> dict[str, mx.array]:
        return mx.load(str(self.path / name))

    def log_text(self) -> str:
        path = self.path / "train.log"
        return path.read_text(encoding="utf-8") if path.is_file() else ""


def _states(resume_dir: Path) -> list[tuple[int, Path]]:
    if not resume_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in resume_dir.iterdir() if p.is_dir() and (m := _STATE_RE.match(p.name))]
    return sorted(found, reverse=True)


def find_latest(resume_dir: Path) -> tuple[SavedState | None, list[str]]:
    """The newest readable state, and a note for each newer one that could not be read."""
    notes = []
    for iteration, path in _states(Path(resume_dir)):
        try:
            info = json.loads((path / "state.json").read_text(encoding="utf-8"))
            missing = [n for n in info["files"] if not (path / n).is_file()]
            if missing or int(info["iteration"]) != iteration:
                raise ValueError(f"missing {', '.join(missing)}" if missing else "iteration does not match its name")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            notes.append(f"{path.name} is unreadable ({exc})")
            continue
        return SavedState(path, info), notes
    return None, notes


def discard(resume_dir: Path) -> None:
    shutil.rmtree(resume_dir, ignore_errors=True)


def _fill(template: Any, flat: dict[str, mx.array], what: str) -> Any:
    """``template``'s tree with every leaf replaced by the saved array of the same path."""
    expected = {k for k, _ in tree_flatten(template)}
    if expected != set(flat):
        raise ValueError(f"{what}: saved arrays do not match the model ({len(set(flat) ^ expected)} names differ)")
    return tree_map_with_path(lambda path, _: flat[path], template)


def gather_ranks(grad_accum: Any, window_loss: Any, window_tokens: Any) -> dict[str, mx.array]:
    """What differs between the ranks of a data-parallel run (each has its own rows), stacked by rank so
    that rank 0 can save it: the MLX RNG key, the gradient accumulated since the last update and the
    report-window sums. A collective: every rank calls it at every checkpoint."""
    world = mx.distributed.init()
    local = {"random_key": mx.random.state[0], "window_loss": mx.array(window_loss, mx.float32),
             "window_tokens": mx.array(window_tokens, mx.int32)}
    if grad_accum is not None:
        local.update((f"grad.{k}", v) for k, v in tree_flatten(grad_accum))
    if world.size() == 1:
        return {k: v[None] for k, v in local.items()}
    # all_sum of arrays that are zero except in this rank's slot: an exact gather. Evaluated here, on
    # every rank: a collective that only rank 0 evaluates (when it saves) would wait forever.
    gathered = {k: mx.distributed.all_sum(mx.zeros((world.size(), *v.shape), v.dtype).at[world.rank()].add(v),
                                          stream=mx.cpu) for k, v in local.items()}
    mx.eval(gathered)
    return gathered


@dataclass
class RankState:
    grad_accum: Any  # None unless the checkpoint fell between two updates of gradient accumulation
    window_loss: float
    window_tokens: int


def restore_training(state: SavedState, model: nn.Module, optimizer: Any, rank: int = 0) -> RankState:
    """Put the adapter weights, optimizer state and this rank's MLX RNG key back; returns this rank's
    accumulated gradient and report-window sums."""
    weights = state.arrays("adapters.safetensors")
    trainable = model.trainable_parameters()
    model.update(_fill(trainable, weights, "adapter"))
    optimizer.init(trainable)
    optimizer.state = _fill(optimizer.state, state.arrays("optimizer.safetensors"), "optimizer state")
    optimizer.init(model.trainable_parameters())  # marks it initialised; the loaded entries are kept
    ranks = state.arrays("ranks.safetensors")
    grads = {k[len("grad."):]: v[rank] for k, v in ranks.items() if k.startswith("grad.")}
    grad = _fill(model.trainable_parameters(), grads, "accumulated gradient") if grads else None
    high, low = ranks["random_key"][rank].tolist()
    mx.random.seed((int(high) << 32) | int(low))  # a key is two uint32 words; seed(n) sets [n >> 32, n & mask]
    mx.eval(model.parameters(), optimizer.state, grad)
    return RankState(grad, ranks["window_loss"][rank].item(), int(ranks["window_tokens"][rank].item()))


def restore_run_dir(state: SavedState, resume_dir: Path, adapter_dir: Path) -> None:
    """The adapter files of the run dir as they were at the checkpoint (numbered ones, best, latest)."""
    adapter_dir.mkdir(parents=True, exist_ok=True)
    for name in state.info["checkpoints"]:
        _copy(Path(resume_dir) / "checkpoints" / name, adapter_dir / name)
    if BEST_ADAPTER_FILE in state.info["files"]:
        _copy(state.path / BEST_ADAPTER_FILE, adapter_dir / BEST_ADAPTER_FILE)
    _copy(state.path / "adapters.safetensors", adapter_dir / "adapters.safetensors")
    # Numbered files saved after this state (a kill between the two) are redone by the resumed run.
    for path in (Path(resume_dir) / "checkpoints").glob("*_adapters.safetensors"):
        if path.name not in state.info["checkpoints"]:
            path.unlink()


def _copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kill_hook(iteration: int, point: str) -> None:
    if os.environ.get(KILL_HOOK_ENV) == f"{iteration}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class Checkpointer:
    """Writes a state folder at every adapter checkpoint (rank 0 only)."""

    def __init__(self, resume_dir: Path, run_dir: Path, fingerprint: dict[str, Any], recorder: Any,
                 first_started_at: str):
        self.resume_dir = Path(resume_dir)
        self.run_dir = Path(run_dir)
        self.fingerprint = fingerprint
        self.recorder = recorder
        self.first_started_at = first_started_at

    def save(self, iteration: int, model: nn.Module, optimizer: Any, ranks: dict[str, mx.array],
             progress: dict[str, Any], watch: dict[str, Any]) -> Path:
        """``ranks``: gather_ranks' arrays; ``progress`` and ``watch``: the loop's Progress and ValidationWatch."""
        from compression_layer.train.report import now

        adapter_dir = self.run_dir / "adapter"
        (self.resume_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        numbered = checkpoint_name(iteration)
        if (adapter_dir / numbered).is_file():
            _copy(adapter_dir / numbered, self.resume_dir / "checkpoints" / numbered)
            _fsync(self.resume_dir / "checkpoints" / numbered)

        final = self.resume_dir / f"state-{iteration:07d}"
        tmp = self.resume_dir / f".state-{iteration:07d}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        files = ["adapters.safetensors", "optimizer.safetensors", "ranks.safetensors"]
        save_weights(tmp / "adapters.safetensors", adapter_weights(model))
        save_weights(tmp / "optimizer.safetensors", dict(tree_flatten(optimizer.state)))
        _kill_hook(iteration, "partial")
        save_weights(tmp / "ranks.safetensors", ranks)
        if (adapter_dir / BEST_ADAPTER_FILE).is_file():
            shutil.copyfile(adapter_dir / BEST_ADAPTER_FILE, tmp / BEST_ADAPTER_FILE)
            files.append(BEST_ADAPTER_FILE)
        if (self.run_dir / "train.log").is_file():
            shutil.copyfile(self.run_dir / "train.log", tmp / "train.log")
        checkpoints = sorted(p.name for p in (self.resume_dir / "checkpoints").glob("*_adapters.safetensors")
                             if int(p.name.split("_", 1)[0]) <= iteration)
        write_json(tmp / "state.json", {
            "version": STATE_VERSION,
            "iteration": iteration,
            "saved_at": now(),
            "first_started_at": self.first_started_at,
            "fingerprint": self.fingerprint,
            "progress": progress,
            "watch": watch,
            "recorder": self.recorder.snapshot(),
            "checkpoints": checkpoints,
            "files": files,
        })
        for path in tmp.iterdir():
            _fsync(path)
        if final.exists():  # only after resuming from an older state; this one replaces it
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync(self.resume_dir)
        _kill_hook(iteration, "published")
        for older, path in _states(self.resume_dir):
            if older < iteration:
                shutil.rmtree(path, ignore_errors=True)
        for stale in self.resume_dir.glob(".state-*.partial"):
            with contextlib.suppress(OSError):
                shutil.rmtree(stale)
        return final


def check_ranks_agree(state: SavedState | None, resume_dir: Path, world: Any) -> None:
    """Every rank of a data-parallel run must resume from the same iteration (or none): ranks on other
    machines see their own copy of the resume dir, which only a shared filesystem keeps in step."""
    from compression_layer.train.errors import TrainError

    if world.size() == 1:
        return
    mine = state.iteration if state is not None else -1
    slots = mx.zeros(world.size(), mx.int32).at[world.rank()].add(mine + 1)
    seen = [int(v) - 1 for v in mx.distributed.all_sum(slots, stream=mx.cpu).tolist()]
    if len(set(seen)) > 1:
        raise TrainError(f"resume: the ranks found different checkpoints in {resume_dir} (iterations by rank, -1 = "
                         f"none: {seen}); put the project on a filesystem all hosts share, or delete {resume_dir} "
                         "on every host to start fresh")


def choose(resume_dir: Path, current: dict[str, Any], fresh: bool = False) -> tuple[SavedState | None, str | None]:
    """The state to resume from (or None) and, when an existing state is not used, one line saying why.
    Pure: the caller discards the unused state (rank 0 only)."""
    state, notes = find_latest(Path(resume_dir))
    if state is None:
        return None, (f"resume: no usable checkpoint in {resume_dir} ({'; '.join(notes)}); starting fresh"
                      if notes else None)
    where = f"the checkpoint at iteration {state.iteration} in {resume_dir}"
    if fresh:
        return None, f"resume: --fresh given: discarding {where}; starting fresh"
    changes = differences(state.info.get("fingerprint", {}), current)
    if changes:
        return None, (f"resume: not resuming from {where}: it was made with other settings "
                      f"({', '.join(changes)}); starting fresh")
    return state, (f"resume: skipped {'; '.join(notes)}" if notes else None)
