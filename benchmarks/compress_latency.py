#!/usr/bin/env python
"""Compressor speed on this machine: latency per compression (one text at a time) and batch throughput.

    python benchmarks/compress_latency.py                        # embedded model + the pipeline's adapter
    python benchmarks/compress_latency.py --adapter DIR --texts 50 --max-tokens 96 --batch-size 16

Texts are the first verbose inputs of data/synthetic/*.jsonl, alternating prose and code. The adapter is
models/runs/mlx/latest/adapter when it exists, else a random LoRA adapter made for the embedded model
(the tests' make_adapter), so the figures measure the code path, not compression quality. Printed
beside the reference's stated target (under 50 ms per compression) and one-at-a-time vs batched.

A model that rarely emits its end-of-turn token generates up to --max-tokens for every text, so latency
here is mostly max_tokens x per-token time; the "cut at max-tokens" line says how often that happened.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from compression_layer.compress import Compressor  # noqa: E402
from compression_layer.compress.adapter import DEFAULT_ADAPTER  # noqa: E402

TARGET_MS = 50  # the reference project's stated target per compression
CORPORA = [ROOT / "data/synthetic/nl_v2.jsonl", ROOT / "data/synthetic/code_v2.jsonl"]
EMBEDDED_MODEL = ROOT / "models/base/tiny-qwen3"


def verbose_texts(path: Path) -> list[str]:
    """The usable verbose texts of a raw corpus file (the raw files hold bad rows on purpose: skipped)."""
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("verbose"), str) and row["verbose"].strip():
                texts.append(row["verbose"])
    return texts


def load_texts(n: int) -> list[str]:
    """Up to ``n`` verbose texts, alternating between the corpus files."""
    per_file = [verbose_texts(path)[:n] for path in CORPORA if path.is_file()]
    texts = [t for group in zip(*per_file) for t in group] if len(per_file) > 1 else (per_file or [[]])[0]
    if len(texts) < n:
        raise SystemExit(f"need {n} texts, found {len(texts)} in {', '.join(map(str, CORPORA))}")
    return texts[:n]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def adapter_for_benchmark(arg: Path | None, tmp: Path) -> Path:
    if arg is not None:
        return arg
    if (ROOT / DEFAULT_ADAPTER / "adapter_config.json").is_file():
        return ROOT / DEFAULT_ADAPTER
    sys.path.insert(0, str(ROOT / "tests"))
    from eval_support import make_adapter

    print(f"no trained adapter at {DEFAULT_ADAPTER}: using a random LoRA adapter for {EMBEDDED_MODEL.name}")
    return make_adapter(EMBEDDED_MODEL, tmp / "adapter")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", type=Path, help=f"Adapter folder (default: {DEFAULT_ADAPTER}, else a random one).")
    p.add_argument("--model", help="Base model (default: the adapter's).")
    p.add_argument("--texts", type=int, default=50, help="Texts to compress.")
    p.add_argument("--max-tokens", type=int, default=96, help="Generation cap per text (eval_max_tokens in params.yaml).")
    p.add_argument("--batch-size", type=int, default=16, help="Batch size of the batched run.")
    args = p.parse_args()

    from compression_layer.blas import loaded_blas

    texts = load_texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = adapter_for_benchmark(args.adapter, Path(tmp))
        started = time.perf_counter()
        compressor = Compressor.load(adapter, args.model, max_tokens=args.max_tokens)
        load_s = time.perf_counter() - started
    blas = loaded_blas()
    compressor.compress(texts[0])  # warm-up: first-call compilation and allocations

    latencies, single = [], []
    for text in texts:
        t = time.perf_counter()
        single.append(compressor.compress(text, stats=True))
        latencies.append(time.perf_counter() - t)
    sequential_s = sum(latencies)

    t = time.perf_counter()
    batched = compressor.compress_many(texts, batch_size=args.batch_size, stats=True)
    batch_s = time.perf_counter() - t
    same = sum(a.text == b.text for a, b in zip(single, batched))

    in_tokens = sum(r.input_tokens for r in single)
    model_tokens = sum(r.model_tokens for r in single)
    cut = sum(r.finish_reason == "length" for r in single)
    ms = [x * 1000 for x in latencies]
    print(f"model {compressor.model_name} + adapter {adapter} ({compressor.adapter.weights.name})")
    print(f"BLAS {blas['name']} ({blas.get('path')}), threads {blas.get('num_threads', '-')}; load {load_s:.2f} s; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other processes skew timings)")  # fmt: skip
    print(f"{len(texts)} texts, {in_tokens} cl100k input tokens (mean {in_tokens / len(texts):.0f}), "
          f"max-tokens {args.max_tokens}, cut at max-tokens {cut}/{len(texts)}, "
          f"mean generated {model_tokens / len(texts):.1f} model tokens")  # fmt: skip
    print()
    print(f"{'latency per compression (one at a time)':44s} {'measured':>12s}   compared with")
    print(f"{'  p50':44s} {percentile(ms, 50):9.1f} ms   target < {TARGET_MS} ms (reference)")
    print(f"{'  p95':44s} {percentile(ms, 95):9.1f} ms   target < {TARGET_MS} ms (reference)")
    print(f"{'  mean / min / max':44s} {statistics.mean(ms):9.1f} ms   {min(ms):.1f} / {max(ms):.1f} ms")
    print(f"{'  per generated token':44s} {sequential_s * 1000 / max(model_tokens, 1):9.2f} ms")
    print()
    batch_tokens = sum(r.model_tokens for r in batched)
    print(f"{'throughput':44s} {'batch ' + str(args.batch_size):>12s}   one at a time")
    print(f"{'  texts/s':44s} {len(texts) / batch_s:12.2f}   {len(texts) / sequential_s:.2f}"
          f"   ({sequential_s / batch_s:.1f}x)")  # fmt: skip
    print(f"{'  input tokens/s (cl100k)':44s} {in_tokens / batch_s:12.0f}   {in_tokens / sequential_s:.0f}")
    print(f"{'  generated tokens/s (model)':44s} {batch_tokens / batch_s:12.0f}   {model_tokens / sequential_s:.0f}")
    print(f"{'  wall time':44s} {batch_s:10.2f} s   {sequential_s:.2f} s")
    print(f"batched outputs identical to one-at-a-time: {same}/{len(texts)}")


if __name__ == "__main__":
    main()
