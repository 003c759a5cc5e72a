"""What a run leaves for people and tools: run.json (environment, params, results), metrics, loss curve."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("mlx", "mlx-cpu", "mlx-metal", "mlx-cuda", "mlx-lm", "numpy", "transformers", "tokenizers",
            "huggingface-hub", "compression-layer")


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def git_sha(cwd: Path | None = None) -> str | None:
    """The commit of the checkout this package runs from, with '-dirty' when tracked files differ."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def blas_info() -> dict[str, Any]:
    """Which BLAS this process's MLX multiplies matrices with (name, path, OpenBLAS threads)."""
    from compression_layer.blas import loaded_blas

    try:
        return loaded_blas()
    except OSError as exc:  # a report must not fail the run
        return {"name": "unknown", "error": str(exc)}


def device_info() -> dict[str, Any]:
    import mlx.core as mx

    info: dict[str, Any] = {"default_device": str(mx.default_device()), "platform": platform.platform(),
                            "machine": platform.machine(), "python": platform.python_version()}
    for backend in ("metal", "cuda"):
        module = getattr(mx, backend, None)
        try:
            info[f"{backend}_available"] = bool(module.is_available()) if module is not None else False
        except Exception:
            info[f"{backend}_available"] = False
    info["backend"] = "metal" if info["metal_available"] else "cuda" if info["cuda_available"] else "cpu"
    return info


def plot_loss_curve(train_rows: list[dict], val_rows: list[dict], path: Path, title: str) -> None:
    """Train and validation loss against step, as a PNG that works offline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compression_layer.io import atomic_open

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train_rows:
        ax.plot([r["step"] for r in train_rows], [r["train_loss"] for r in train_rows], label="train loss", marker=".")
    if val_rows:
        ax.plot([r["step"] for r in val_rows], [r["val_loss"] for r in val_rows], label="val loss", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per target token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def train_metrics(summary: dict[str, Any], trained_tokens: int, train_seconds: float, duration: float,
                  iterations: int) -> dict[str, Any]:
    """metrics/train.json: the numbers `dvc metrics diff` and `dvc exp show` compare."""
    return {
        "final_train_loss": summary["final_train_loss"],
        "final_val_loss": summary["final_val_loss"],
        "best_val_loss": summary["best_val_loss"],
        "best_val_iteration": summary["best_val_iteration"],
        "tokens_per_sec": round(trained_tokens / train_seconds, 2) if train_seconds > 0 else None,
        "peak_memory_gb": summary["peak_memory_gb"],
        "trained_tokens": trained_tokens,
        "iterations": iterations,
        "train_seconds": round(train_seconds, 3),
        "duration_seconds": round(duration, 3),
    }
