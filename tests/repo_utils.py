"""Helpers for tests that run DVC on a copy of this repository (never on the checkout itself)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def venv_env(**extra: str) -> dict[str, str]:
    """The environment a stage sees under `make`: the venv's bin first on PATH, no DVC analytics."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("DVC_EXP_NAME", None)
    env.update(extra)
    return env


def run(cmd: list[str] | str, cwd: Path, check: bool = True, timeout: float = 900, **env: str):
    """Run a command in ``cwd`` and return the CompletedProcess (stdout and stderr as text)."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=venv_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(cmd, str),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def copy_repo(dest: Path) -> Path:
    """Copy the files git knows of (tracked, or untracked but not ignored) into ``dest`` as a new git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if not src.is_file():  # deleted in the work tree but still in the index
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    git = ["git", "-c", "user.email=test@localhost", "-c", "user.name=test"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-qm", "copy"], cwd=dest, check=True)
    return dest


def git_commit(repo: Path, message: str) -> None:
    git = ["git", "-c", "user.email=test@localhost", "-c", "user.name=test"]
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", message, "--allow-empty"], cwd=repo, check=True)


def copy_repo_with_stages(dest: Path, stages: tuple[str, ...]) -> Path:
    """copy_repo, with dvc.yaml cut down to ``stages`` (and DVC's .gitignore entries of the others dropped)."""
    import yaml

    repo = copy_repo(dest)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {name: pipeline["stages"][name] for name in stages}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    for ignore in repo.rglob(".gitignore"):  # DVC's entries for the dropped stages' outputs
        if ignore.parent != repo:
            ignore.unlink()
    return repo
