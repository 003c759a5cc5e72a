"""Helpers for the compress tests: the `compression-layer` command, an 8-bit model with its adapter, and
adapter copies with an edited config. Models and the float adapter are eval_support's fixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from eval_support import CODE_TEXTS, NL_TEXTS, eval_base_model, make_adapter  # noqa: F401
from repo_utils import BIN, venv_env

TEXTS = NL_TEXTS + CODE_TEXTS
COMMAND = str(BIN / "compression-layer")


def cli(*args: str, cwd: Path, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed console command; with ``check``, fail the test with its stderr on a non-zero exit."""
    proc = subprocess.run([COMMAND, *map(str, args)], cwd=cwd, env=venv_env(), input=stdin,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"compression-layer {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single `error:` line of a failed command (and nothing like a traceback)."""
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def adapter_copy(adapter: Path, dest: Path, **config) -> Path:
    """A copy of ``adapter`` whose adapter_config.json has ``config`` merged in."""
    shutil.copytree(adapter, dest)
    path = dest / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}), encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def q8_model(request, eval_base_model, tmp_path_factory) -> Path:
    """The 8-bit copy of the test base model (conftest's for the embedded model, else converted here)."""
    if eval_base_model.name == "tiny-qwen3" and eval_base_model.parent.name == "base":
        return Path(request.getfixturevalue("tiny_model_q8_path"))
    from mlx_lm import convert

    out = tmp_path_factory.mktemp("compress-q8") / "model-8bit"
    convert(str(eval_base_model), mlx_path=str(out), quantize=True, q_bits=8, q_group_size=64)
    return out


@pytest.fixture(scope="session")
def q8_adapter(q8_model, tmp_path_factory) -> Path:
    return make_adapter(q8_model, tmp_path_factory.mktemp("compress-q8-adapter") / "adapter")
