#!/usr/bin/env python
"""Evaluate-stage generation: batched (batch 16) vs one prompt at a time, same adapter and test rows.

    python benchmarks/eval_batching.py                       # embedded model, 48 rows, 128 new tokens
    python benchmarks/eval_batching.py --rows 64 --max-tokens 256 --batch-size 16 --model DIR --adapter DIR

Adapter: --adapter, else the train stage's models/runs/mlx/latest/adapter when it exists, else a LoRA
adapter made here (rank 8, small random B). Rows: --test (default data/training/test.jsonl) when it
exists, else the verbose texts of data/synthetic/*.jsonl. Both modes run the stage's own code
(compression_layer.evaluate.generate); every row's greedy output must be identical in both. Throughput is
generated model tokens (and rows) per second, prompt processing included, of wall time and of this
process's CPU time (the latter is steadier on a machine shared with other work). Target: >= 4x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from compression_layer.blas import configure_threads, loaded_blas  # noqa: E402
from compression_layer.evaluate import generate as g  # noqa: E402
from compression_layer.evaluate.testset import read_test_rows  # noqa: E402


def test_texts(n: int, test: Path) -> tuple[list[str], str]:
    if test.is_file():
        return [row.input_text for row in read_test_rows(test, n)], str(test)
    texts = []
    for path in sorted((ROOT / "data/synthetic").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # raw files hold rows that preprocess rejects
                continue
            if isinstance(row, dict) and isinstance(row.get("verbose"), str) and row["verbose"].strip():
                texts.append(row["verbose"].strip())
    if not texts:
        raise SystemExit("no test rows: build data/training/test.jsonl (dvc repro sanitize) or data/synthetic")
    return texts[:n], "data/synthetic/*.jsonl (verbose texts)"


def make_adapter(model_path: str, out: Path) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(model_path)
    model.freeze()
    params = {"rank": 8, "scale": 20.0, "dropout": 0.0}
    mx.random.seed(0)
    linear_to_lora_layers(model, 4, params)
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.01
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    (out / "adapter_config.json").write_text(json.dumps({"fine_tune_type": "lora", "num_layers": 4, "lora_parameters": params}))
    return out


def timed(model, tokenizer, prompts, max_tokens, batch_size):
    """Outputs, wall seconds and CPU seconds (all threads of this process) of one generation pass."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = dict(g.generate(model, tokenizer, prompts, max_tokens, batch_size))
    return out, time.perf_counter() - wall, time.process_time() - cpu


def set_threads(threads: int) -> int | None:
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    return configure_threads()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models/base/tiny-qwen3"))
    p.add_argument("--adapter", type=Path)
    p.add_argument("--test", type=Path, default=ROOT / "data/training/test.jsonl", help="Chat JSONL test split.")
    p.add_argument("--rows", type=int, default=48)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2, help="Runs of each mode (alternating); the fastest counts.")
    p.add_argument("--threads", default="1,2", help="OpenBLAS thread counts to try each mode with (the stage uses 1).")
    args = p.parse_args()
    thread_counts = [int(x) for x in args.threads.split(",")]

    texts, source = test_texts(args.rows, args.test)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = args.adapter
        if adapter is None:
            latest = ROOT / "models/runs/mlx/latest/adapter"
            adapter = latest if (latest / "adapters.safetensors").is_file() else make_adapter(args.model, Path(tmp) / "adapter")
        model, tokenizer, weights = g.load(args.model, adapter, "best")
        prompts = [g.prompt_tokens(tokenizer, t) for t in texts]
        dict(g.generate(model, tokenizer, prompts[:2], 8, 2))  # warm-up (first-call allocations), not timed

        # Every (mode, threads) runs once per round, in turn, and its fastest round counts: load from
        # other processes on the machine then hits all of them alike.
        modes = [(bs, th) for bs in (1, args.batch_size) for th in thread_counts]
        best: dict[tuple[int, int], float] = {}
        best_cpu: dict[tuple[int, int], float] = {}
        outputs: dict[tuple[int, int], dict] = {}
        for _ in range(args.repeats):
            for bs, th in modes:
                set_threads(th)
                outputs[bs, th], seconds, cpu = timed(model, tokenizer, prompts, args.max_tokens, bs)
                best[bs, th] = min(best.get((bs, th), float("inf")), seconds)
                best_cpu[bs, th] = min(best_cpu.get((bs, th), float("inf")), cpu)

    reference = outputs[1, thread_counts[0]]
    different = sorted({i for out in outputs.values() for i in range(len(prompts)) if out[i] != reference[i]})
    prompt_tokens = sum(len(x) for x in prompts)
    print(f"model {args.model}, adapter {weights}, BLAS {loaded_blas()['name']}, best of {args.repeats} rounds")
    print(f"{len(prompts)} rows from {source}: {prompt_tokens} prompt tokens (mean {prompt_tokens / len(prompts):.0f}), "
          f"max_tokens {args.max_tokens}, greedy")  # fmt: skip
    print(f"{'':<28}{'wall s':>8}{'gen tokens':>12}{'tokens/s':>10}{'rows/s':>9}{'unfinished':>12}"
          f"{'CPU s':>8}{'tokens/CPU s':>14}")  # fmt: skip
    for bs, th in modes:
        out, seconds, cpu = outputs[bs, th], best[bs, th], best_cpu[bs, th]
        tokens = sum(gen.tokens for gen in out.values())
        name = f"{'one at a time' if bs == 1 else f'batch {bs}'}, {th} thread{'s' if th > 1 else ''}"
        unfinished = sum(gen.unfinished for gen in out.values())
        print(f"{name:<28}{seconds:>8.2f}{tokens:>12}{tokens / seconds:>10.1f}{len(out) / seconds:>9.2f}{unfinished:>12}"
              f"{cpu:>8.2f}{tokens / cpu:>14.1f}")  # fmt: skip
    for label, table in (("wall", best), ("CPU", best_cpu)):
        single = min(table[1, th] for th in thread_counts)
        batched = min(table[args.batch_size, th] for th in thread_counts)
        stage = thread_counts[0]
        print(f"speed-up ({label} time), fastest batch {args.batch_size} / fastest one at a time: {single / batched:.2f}x "
              f"(target >= 4x); both at {stage} thread(s), the stage's default: "
              f"{table[1, stage] / table[args.batch_size, stage]:.2f}x")  # fmt: skip
    print(f"identical greedy outputs: {len(prompts) - len(different)}/{len(prompts)} rows in every mode"
          + (f"; differing rows: {different}" if different else ""))  # fmt: skip
    if different:
        sys.exit(1)


if __name__ == "__main__":
    main()
