"""The BLAS under MLX: what blas.py reports, and what scripts/setup_blas.sh arranged (Linux CPU).

    .venv/bin/python -m pytest -q tests/test_blas.py      (a few seconds)
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from compression_layer.blas import configure_threads, loaded_blas

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup_blas.sh"
KNOWN = {"openblas", "reference", "mkl", "blis", "accelerate"}


def _bundled_blas() -> Path | None:
    """mlx-cpu's own libblas file (a symlink to OpenBLAS after setup), or None without mlx-cpu."""
    try:
        files = md.distribution("mlx-cpu").files or []
    except md.PackageNotFoundError:
        return None
    return next((Path(f.locate()) for f in files if f.parts[0] == "mlx_cpu.libs" and f.name.startswith("libblas")),
                None)


def _openblas_installed() -> Path | None:
    out = subprocess.run(["dpkg", "-L", "libopenblas0-pthread"], capture_output=True, text=True, check=False)
    return next((Path(p) for p in out.stdout.split() if p.endswith("/openblas-pthread/libblas.so.3")), None)


linux_cpu = pytest.mark.skipif(
    platform.system() != "Linux" or _bundled_blas() is None,
    reason="the bundled-BLAS swap concerns Linux with the mlx-cpu wheel only (macOS uses Accelerate; "
    "the CUDA wheel has no mlx_cpu.libs)",
)

CHILD = """
import json, sys
import mlx.core as mx, mlx.nn as nn
from mlx_lm import load
from compression_layer.blas import loaded_blas
model, tok = load(sys.argv[1])
x = mx.array([tok.encode("Compress: the quarterly report is due on Friday, room B.")])
loss = nn.losses.cross_entropy(model(x[:, :-1]), x[:, 1:]).mean()
print(json.dumps({"blas": loaded_blas()["name"], "loss": loss.item()}))
"""


def _child(env_extra: dict[str, str], model: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **env_extra)
    out = subprocess.run([sys.executable, "-c", CHILD, str(model)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_reports_the_blas_this_process_loaded():
    info = loaded_blas()
    assert info["name"] in KNOWN, info
    if platform.system() == "Linux":
        assert Path(info["path"]).is_file()
        maps = Path("/proc/self/maps").read_text()
        assert info["path"] in maps  # a library this very process has mapped, not a guess
    if info["name"] == "openblas":
        assert info["config"].startswith("OpenBLAS") and info["num_threads"] >= 1


def test_openblas_threads_follow_the_environment_else_the_default(monkeypatch):
    if loaded_blas()["name"] != "openblas":
        pytest.skip("this process does not run OpenBLAS")
    before = loaded_blas()["num_threads"]
    try:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
        assert configure_threads() == 2 and loaded_blas()["num_threads"] == 2
        monkeypatch.delenv("OPENBLAS_NUM_THREADS")
        assert configure_threads(default=1) == 1 and loaded_blas()["num_threads"] == 1
    finally:
        configure_threads(default=before)


@linux_cpu
def test_venv_mlx_uses_openblas_after_setup():
    if _openblas_installed() is None:
        pytest.skip("libopenblas0-pthread is not installed (setup_blas.sh needs root + apt to install it)")
    bundled = _bundled_blas()
    assert bundled.is_symlink() and bundled.resolve() == _openblas_installed().resolve(), (
        f"{bundled} is not linked to OpenBLAS: run bash scripts/setup_blas.sh {sys.executable}"
    )
    assert Path(str(bundled) + ".reference").is_file()  # the wheel's own file, kept for the benchmark
    assert _child({}, ROOT / "models/base/tiny-qwen3")["blas"] == "openblas"


@linux_cpu
def test_openblas_gives_the_same_loss_as_the_bundled_blas(tiny_model_path):
    reference = Path(str(_bundled_blas()) + ".reference")
    if not reference.is_file():
        pytest.skip("setup_blas.sh has not swapped the BLAS (no .reference backup)")
    with_reference = _child({"LD_PRELOAD": str(reference)}, tiny_model_path)
    with_default = _child({}, tiny_model_path)
    assert with_reference["blas"] == "reference" and with_default["blas"] == "openblas"
    assert with_default["loss"] == pytest.approx(with_reference["loss"], rel=1e-5)


@linux_cpu
def test_setup_script_links_keeps_a_backup_and_is_idempotent(tmp_path):
    """Run setup_blas.sh against a stand-in mlx-cpu distribution that shadows the real one."""
    target = _openblas_installed()
    if target is None:
        pytest.skip("libopenblas0-pthread is not installed")
    site = tmp_path / "site"
    libs = site / "mlx_cpu.libs"
    libs.mkdir(parents=True)
    fake = libs / "libblas-0000.so.3"
    fake.write_bytes(b"bundled reference blas")
    dist = site / "mlx_cpu-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlx-cpu\nVersion: 0.0.0\n")
    (dist / "RECORD").write_text("mlx_cpu.libs/libblas-0000.so.3,,\nmlx_cpu-0.0.0.dist-info/METADATA,,\n")
    env = dict(os.environ, PYTHONPATH=str(site))

    def setup() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SETUP), sys.executable], env=env, capture_output=True, text=True,
                              check=True)

    first = setup()
    assert "now uses OpenBLAS" in first.stdout, first.stdout + first.stderr
    assert fake.is_symlink() and fake.resolve() == target.resolve()
    assert Path(str(fake) + ".reference").read_bytes() == b"bundled reference blas"
    second = setup()
    assert second.stdout == "" and second.stderr == ""  # already linked: nothing to do, nothing said
    assert Path(str(fake) + ".reference").read_bytes() == b"bundled reference blas"


def test_setup_script_is_a_no_op_without_mlx_cpu(tmp_path):
    """The CUDA wheel (or no MLX at all): nothing to link, no output, success."""
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")  # -S: no site-packages, so no mlx-cpu
    python.chmod(0o755)
    out = subprocess.run(["bash", str(SETUP), str(python)], capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr == ""
