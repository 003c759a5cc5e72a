#!/usr/bin/env python
"""Train stage vs `python -m mlx_lm lora`: the same LoRA configuration, data and BLAS, tokens/s side by side.

    python benchmarks/train_vs_cli.py                     # embedded model, data/training (or generated rows)
    python benchmarks/train_vs_cli.py --iters 60 --repeats 2 --model DIR --data DIR
    python benchmarks/train_vs_cli.py --no-blas           # skip the bundled-reference-BLAS run

Each side runs in a fresh process with the same environment: the stage through stages/train.py (which
calls compression_layer.train.run.train), the CLI with a `-c` YAML holding the same lora_parameters,
learning rate, batch size, iterations, max_seq_length, mask_prompt and seed. Both report tokens/s per
report window (trained = unmasked target tokens over the time spent in training steps); the figure
compared is the mean over the windows after the first (the first one includes compilation). The target
is stage >= 0.95x CLI. Runs alternate (stage, CLI, stage, CLI...) so that load from other processes
hits both sides alike; process CPU time is printed too, as it hardly depends on that load.

The stage cuts batches from rows sorted by token length (mlx-lm means to, but its CacheDataset sorts by
the number of JSON keys, so its batches are in file order): less padding per trained token, which is
most of the stage's lead. With identical batches the two loops cost the same CPU time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from compression_layer.data.chat import to_chat  # noqa: E402

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A train row of mlx-lm's table: "  20    6.082 ▼    450    2.1k"
CLI_ROW = re.compile(r"^\s*(\d+)\s+([0-9.]+)\s*\S?\s+([0-9,]+)\s+([0-9.]+)k\s*$")


def generated_data(out: Path, rows: int = 240) -> Path:
    """Chat rows of the project's format when data/training is not built yet."""
    import random

    rng = random.Random(0)
    words = "server cache request payload user record queue retry deploy config token batch error".split()
    out.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", rows), ("valid", rows // 5)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for _ in range(n):
                sentences = [f"The {rng.choice(words)} basically handles every {rng.choice(words)} "
                             f"when the {rng.choice(words)} is ready, which you should keep in mind."
                             for _ in range(rng.randint(2, 6))]
                compressed = " | ".join(f"{rng.choice(words)}→{rng.choice(words)}" for _ in sentences)
                fh.write(json.dumps(to_chat(" ".join(sentences), compressed)) + "\n")
    return out


def settings(args: argparse.Namespace) -> dict:
    return {
        "lora_rank": 8, "lora_alpha": 16.0, "lora_dropout": 0.0, "lora_layers": args.layers, "iters": args.iters,
        "batch_size": 4, "learning_rate": 2e-4, "max_seq_length": 512, "mask_prompt": True,
        "steps_per_report": 10, "steps_per_eval": args.iters, "save_every": args.iters, "val_batches": 5, "seed": 0,
    }


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(s: dict, model: str, data: Path, work: Path, env: dict) -> dict:
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump({"model": model, **s}))
    out = work / "stage"
    cmd = [sys.executable, str(ROOT / "stages/train.py"), "--params", str(params), "--train", str(data / "train.jsonl"),
           "--valid", str(data / "valid.jsonl"), "--output-dir", str(out / "run"), "--metrics", str(out / "train.json")]
    tic, cpu = time.perf_counter(), child_cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall, cpu = time.perf_counter() - tic, child_cpu() - cpu
    if proc.returncode != 0:
        sys.exit(f"stage failed:\n{proc.stderr[-2000:]}")
    with open(out / "run/history/train.csv") as fh:
        rows = list(csv.DictReader(fh))
    metrics = json.loads((out / "train.json").read_text())
    return {"windows": [float(r["tokens_per_sec"]) for r in rows], "losses": [float(r["train_loss"]) for r in rows],
            "wall": wall, "cpu": cpu, "tokens": metrics["trained_tokens"]}


def run_cli(s: dict, model: str, data: Path, work: Path, env: dict) -> dict:
    config = work / "cli.yaml"
    config.write_text(yaml.safe_dump({
        "lora_parameters": {"rank": s["lora_rank"], "scale": s["lora_alpha"] / s["lora_rank"], "dropout": s["lora_dropout"]},
        "mask_prompt": s["mask_prompt"], "seed": s["seed"],
    }))
    cmd = [sys.executable, "-m", "mlx_lm", "lora", "--model", model, "--train", "--data", str(data),
           "-c", str(config), "--iters", str(s["iters"]), "--batch-size", str(s["batch_size"]),
           "--num-layers", str(s["lora_layers"]), "--learning-rate", str(s["learning_rate"]),
           "--max-seq-length", str(s["max_seq_length"]), "--steps-per-report", str(s["steps_per_report"]),
           "--steps-per-eval", str(s["steps_per_eval"]), "--save-every", str(s["save_every"]),
           "--val-batches", str(s["val_batches"]), "--adapter-path", str(work / "cli_adapter")]
    tic, cpu = time.perf_counter(), child_cpu()
    proc = subprocess.run(cmd, env={**env, "NO_COLOR": "1", "COLUMNS": "120"}, capture_output=True, text=True, cwd=work)
    wall, cpu = time.perf_counter() - tic, child_cpu() - cpu
    if proc.returncode != 0:
        sys.exit(f"mlx_lm lora failed:\n{proc.stderr[-2000:]}")
    rows = [CLI_ROW.match(ANSI.sub("", line)) for line in proc.stdout.splitlines()]
    rows = [m for m in rows if m]
    if not rows:
        sys.exit(f"could not read mlx_lm lora's table:\n{proc.stdout[-2000:]}")
    return {"windows": [float(m.group(3).replace(",", "")) for m in rows], "losses": [float(m.group(2)) for m in rows],
            "wall": wall, "cpu": cpu, "tokens": round(float(rows[-1].group(4)) * 1000)}


def reference_blas() -> str | None:
    """The mlx-cpu wheel's own reference BLAS (kept as *.reference once setup links OpenBLAS)."""
    libs = ROOT / ".venv/lib"
    found = sorted(libs.glob("python*/site-packages/mlx_cpu.libs/libblas-*.reference"))
    if found:
        return str(found[0])
    plain = [p for p in libs.glob("python*/site-packages/mlx_cpu.libs/libblas-*.so*") if not p.is_symlink()]
    return str(plain[0]) if plain else None


def openblas_linked() -> bool:
    libs = list((ROOT / ".venv/lib").glob("python*/site-packages/mlx_cpu.libs/libblas-*.so*"))
    return any(p.is_symlink() and "openblas" in os.path.realpath(p) for p in libs)


def steady(windows: list[float]) -> float:
    return statistics.mean(windows[1:] if len(windows) > 1 else windows)


def compare(s: dict, model: str, data: Path, env: dict, repeats: int, label: str) -> tuple[float, float]:
    stage, cli = [], []
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            stage.append(run_stage(s, model, data, Path(tmp), env))
        with tempfile.TemporaryDirectory() as tmp:
            cli.append(run_cli(s, model, data, Path(tmp), env))
    st = statistics.median(steady(r["windows"]) for r in stage)
    cl = statistics.median(steady(r["windows"]) for r in cli)
    print(f"\n== {label}: {s['iters']} iters, batch {s['batch_size']}, rank {s['lora_rank']}, "
          f"{s['lora_layers']} layers, max_seq_length {s['max_seq_length']}, {repeats} run(s) each ==")
    print(f"{'':28}{'stage':>12}{'mlx_lm lora':>14}{'ratio':>9}")
    print(f"{'tokens/s (steady windows)':28}{st:>12.1f}{cl:>14.1f}{st / cl:>8.2f}x")
    sw = statistics.median(r["wall"] for r in stage)
    cw = statistics.median(r["wall"] for r in cli)
    print(f"{'process wall time (s)':28}{sw:>12.1f}{cw:>14.1f}{cw / sw:>8.2f}x")
    # CPU seconds of the whole process (load, tokenize, train, validate, save) hardly move with load
    # from other processes, unlike wall time; ratio = CLI / stage, so > 1 means the stage needs less.
    sc = statistics.median(r["cpu"] for r in stage)
    cc = statistics.median(r["cpu"] for r in cli)
    print(f"{'process CPU time (s)':28}{sc:>12.1f}{cc:>14.1f}{cc / sc:>8.2f}x")
    print(f"{'trained tokens':28}{stage[0]['tokens']:>12,}{cli[0]['tokens']:>14,}")
    print(f"{'first-window train loss':28}{stage[0]['losses'][0]:>12.3f}{cli[0]['losses'][0]:>14.3f}")
    print(f"{'last-window train loss':28}{stage[0]['losses'][-1]:>12.3f}{cli[0]['losses'][-1]:>14.3f}")
    return st, cl


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models/base/tiny-qwen3"))
    p.add_argument("--data", type=Path, help="directory with train.jsonl and valid.jsonl (default: data/training)")
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="OPENBLAS_NUM_THREADS for both sides (default 1)")
    p.add_argument("--no-blas", dest="blas", action="store_false",
                   help="skip the stage run with the bundled reference BLAS (about 1 minute)")
    args = p.parse_args()

    data = args.data or ROOT / "data/training"
    tmpdata = None
    if not (data / "train.jsonl").exists():
        tmpdata = tempfile.TemporaryDirectory()
        data = generated_data(Path(tmpdata.name))
        print(f"data/training not built: using {len(open(data / 'train.jsonl').readlines())} generated rows")
    s = settings(args)
    threads = str(args.threads)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OPENBLAS_NUM_THREADS=threads)
    env.pop("LD_PRELOAD", None)
    reference = reference_blas()
    if openblas_linked() or not Path(OPENBLAS).exists():
        blas_env, label = env, "same BLAS (what `make setup` linked)"
    else:  # setup has not linked OpenBLAS yet: preload it for both sides
        blas_env, label = dict(env, LD_PRELOAD=OPENBLAS), "same BLAS (OpenBLAS preloaded)"
    st, cl = compare(s, args.model, data, blas_env, args.repeats, f"{label}, OPENBLAS_NUM_THREADS={threads}")
    verdict = "OK" if st >= 0.95 * cl else "BELOW TARGET"
    print(f"stage / CLI tokens/s = {st / cl:.3f} (target >= 0.95): {verdict}")
    if args.blas and reference:
        # The wheel's reference BLAS, preloaded over whatever mlx_cpu.libs links to.
        ref = dict(env, LD_PRELOAD=reference)
        with tempfile.TemporaryDirectory() as tmp:
            slow = steady(run_stage(s, args.model, data, Path(tmp), ref)["windows"])
        print(f"\nstage tokens/s with the bundled reference BLAS: {slow:.1f}; with OpenBLAS: {st:.1f} "
              f"(OpenBLAS {st / slow:.1f}x faster)")
    if tmpdata is not None:
        tmpdata.cleanup()


if __name__ == "__main__":
    main()
