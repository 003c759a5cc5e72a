"""Shared pytest fixtures. Keep each group together and edit only your own group."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- base models: the embedded tiny model, its 8-bit copy, and a hub-cache layout --------------------

TINY_MODEL_DIR = REPO_ROOT / "models" / "base" / "tiny-qwen3"
HUB_REPO_ID = "tiny-org/tiny-qwen3"
HUB_SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """The shipped tiny Qwen3 (built by scripts/build_tiny_model.py); read-only, do not write into it."""
    if not (TINY_MODEL_DIR / "model.safetensors").is_file():
        pytest.fail(f"{TINY_MODEL_DIR} is missing: run python scripts/build_tiny_model.py")
    return TINY_MODEL_DIR


@pytest.fixture(scope="session")
def tiny_model_q8_path(tiny_model_path, tmp_path_factory) -> Path:
    """An 8-bit quantized copy (mlx_lm convert -q, group size 64), as the production model is (QLoRA)."""
    from mlx_lm import convert

    out = tmp_path_factory.mktemp("tiny-q8") / "tiny-qwen3-8bit"
    convert(str(tiny_model_path), mlx_path=str(out), quantize=True, q_bits=8, q_group_size=64)
    return out


@pytest.fixture(scope="session")
def hub_layout_model(tiny_model_path, tmp_path_factory) -> str:
    """The hub id "tiny-org/tiny-qwen3", resolvable offline: the tiny model in a Hugging Face cache
    layout (models--tiny-org--tiny-qwen3/snapshots/<hash>/, refs/main), HF_HUB_CACHE pointed at it and
    HF_HUB_OFFLINE=1 for this session (environment for subprocesses, huggingface_hub's constants,
    which it reads once at import, for this process)."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path_factory.mktemp("hf-hub-cache")
    repo = cache / ("models--" + HUB_REPO_ID.replace("/", "--"))
    shutil.copytree(tiny_model_path, repo / "snapshots" / HUB_SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_SNAPSHOT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        yield HUB_REPO_ID


# --- end of base models -------------------------------------------------------------------------------
