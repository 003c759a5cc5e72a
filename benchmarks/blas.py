"""MLX CPU matrix-multiply speed: the mlx-cpu wheel's bundled reference BLAS vs Debian's OpenBLAS.

    .venv/bin/python benchmarks/blas.py

Each variant runs in its own subprocess with the library forced by LD_PRELOAD (the bundled file is
kept as mlx_cpu.libs/libblas-*.so*.reference by scripts/setup_blas.sh), and reports what it actually
loaded. Figures: float32 sgemm GFLOP/s (median of 5 timings) and a fwd+bwd step of models/base/tiny-qwen3.
Linux only.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPENBLAS_CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3",
]

CHILD = r"""
import json, statistics, sys, time
import mlx.core as mx
from compression_layer.blas import loaded_blas

out = {"blas": loaded_blas()}
for n in (512, 1024):
    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(a, b, a @ b)
    reps = max(1, int(2e8 / (2 * n**3)))  # at least ~0.2 GFLOP per timing
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            mx.eval(a @ b)
        times.append((time.perf_counter() - t) / reps)
    out[f"sgemm{n}"] = 2 * n**3 / statistics.median(times) / 1e9

model_dir = sys.argv[1]
try:
    import mlx.nn as nn
    from mlx_lm import load
    model, _ = load(model_dir)
    x = mx.random.randint(0, 1000, (8, 129))
    loss = lambda m: nn.losses.cross_entropy(m(x[:, :-1]), x[:, 1:]).mean()
    step = nn.value_and_grad(model, loss)
    mx.eval(step(model))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        mx.eval(step(model))
        times.append(time.perf_counter() - t)
    out["tiny_step_tok_s"] = 8 * 128 / statistics.median(times)
except Exception as exc:  # the model may not be built yet: sgemm figures still stand
    out["tiny_step_error"] = str(exc)
print(json.dumps(out))
"""


def reference_blas() -> str | None:
    """The wheel's bundled libblas: the backup setup_blas.sh keeps, else the file itself."""
    import importlib.metadata as md

    try:
        files = md.distribution("mlx-cpu").files or []
    except md.PackageNotFoundError:
        return None
    for f in files:
        if f.parts[0] == "mlx_cpu.libs" and f.name.startswith("libblas"):
            path = str(f.locate())
            if os.path.exists(path + ".reference"):
                return path + ".reference"
            return path if not os.path.islink(path) else None
    return None


def run(preload: str, threads: str | None) -> dict:
    env = dict(os.environ, LD_PRELOAD=preload, PYTHONPATH=str(ROOT / "src"))
    env.pop("OPENBLAS_NUM_THREADS", None)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = threads
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "models/base/tiny-qwen3")],
        env=env, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    if platform.system() != "Linux":
        print("benchmarks/blas.py: Linux only (macOS MLX uses Accelerate)")
        return 0
    reference = reference_blas()
    openblas = next((p for p in OPENBLAS_CANDIDATES if os.path.exists(p)), None)
    variants = []
    if reference:
        variants.append(("bundled reference BLAS", reference, None))
    if openblas:
        variants += [(f"OpenBLAS, {t} thread{'s' * (t != '1')}", openblas, t) for t in ("1", "2")]
    if not variants:
        print("no mlx-cpu reference BLAS and no OpenBLAS found: nothing to compare")
        return 0
    cores = len(os.sched_getaffinity(0))
    print(f"MLX {platform.machine()} CPU, {cores} cores; median of 5 timings per figure\n")
    header = f"{'BLAS':<24} {'loaded':<10} {'sgemm 512':>12} {'sgemm 1024':>12} {'tiny-qwen3 fwd+bwd':>20}"
    print(header)
    print("-" * len(header))
    results = {}
    for label, lib, threads in variants:
        r = run(lib, threads)
        results[label] = r
        if "error" in r:
            print(f"{label:<24} error: {r['error']}")
            continue
        step = f"{r['tiny_step_tok_s']:.0f} tok/s" if "tiny_step_tok_s" in r else "n/a"
        print(
            f"{label:<24} {r['blas']['name']:<10} {r['sgemm512']:>7.1f} GF/s {r['sgemm1024']:>7.1f} GF/s {step:>20}"
        )
    ref = results.get("bundled reference BLAS", {})
    others = [r for label, r in results.items() if r is not ref and "sgemm512" in r]
    if "sgemm512" in ref and others:
        best = max(r["sgemm512"] for r in others)
        line = f"\nbest OpenBLAS over the bundled BLAS: sgemm 512 x{best / ref['sgemm512']:.0f}"
        steps = [r["tiny_step_tok_s"] for r in others if "tiny_step_tok_s" in r]
        if steps and "tiny_step_tok_s" in ref:
            line += f", tiny-qwen3 fwd+bwd x{max(steps) / ref['tiny_step_tok_s']:.1f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
