"""Speed and memory of the data stages on a generated corpus (issue 2, "Done when").

    python benchmarks/data_stages.py [--rows 35000] [--no-baseline] [--no-scaling]

Generates N raw pairs (half NL, half code) and N chat rows (train/valid/test 80/10/10) in a
temporary directory with tests/data_corpus.py, then runs each stage as its own process, exactly as
dvc.yaml runs it, and reports wall seconds (interpreter start included), rows/s and peak resident
memory (the child's ru_maxrss), and CPU seconds (all threads; steadier than wall time on a shared
machine: wall time on idle cores is about the CPU time divided by the cores used). Compared with: the issue's target (all stages < 4 s for 35k rows)
and a straightforward row-at-a-time implementation of the same rules (tests/data_oracle.py,
timed in this process). Memory: the run is repeated with 2N rows; flat memory means equal peaks.
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


def stage_commands(root: Path) -> list[tuple[str, list[str], Path]]:
    py = sys.executable
    v = root / "validated"
    return [
        ("preprocess_nl", [py, "stages/preprocess.py", "--input", f"{root}/synthetic/nl_v2.jsonl",
                           "--output", f"{v}/nl_pairs.jsonl", "--rejected", f"{v}/rejected_nl_pairs.jsonl",
                           "--max-char-ratio", "0.95", "--max-token-ratio", "0.95", "--stats", f"{root}/m/p_nl.json"],
         root / "synthetic/nl_v2.jsonl"),
        ("preprocess_code", [py, "stages/preprocess.py", "--input", f"{root}/synthetic/code_v2.jsonl",
                             "--output", f"{v}/code_pairs.jsonl", "--rejected", f"{v}/rejected_code_pairs.jsonl",
                             "--max-char-ratio", "1.0", "--max-token-ratio", "1.0", "--stats", f"{root}/m/p_code.json"],
         root / "synthetic/code_v2.jsonl"),
        ("split", [py, "stages/split.py", "--input", str(v), "--output", f"{root}/split", "--train-ratio", "0.8",
                   "--valid-ratio", "0.1", "--test-ratio", "0.1", "--seed", "42", "--stats", f"{root}/m/split.json"],
         v),
        ("sanitize", [py, "stages/sanitize.py", "--input-dir", f"{root}/chat", "--output-dir", f"{root}/training",
                      "--stats", f"{root}/m/sanitize.json"],
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


def run_pipeline(rows: int, repeats: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root = Path(tmp)
        sizes = make_corpus(root, rows)
        print(f"\ncorpus: {rows} raw pairs ({sizes['raw_bytes'] / 1e6:.1f} MB), {rows} chat rows "
              f"({sizes['chat_bytes'] / 1e6:.1f} MB)")
        results: dict[str, dict[str, float]] = {}
        for name, cmd, source in stage_commands(root):
            runs = [run_stage(cmd) for _ in range(repeats)]
            results[name] = {"rows": count_rows(source), "seconds": statistics.median(r[0] for r in runs),
                             "cpu": statistics.median(r[1] for r in runs), "peak_mb": max(r[2] for r in runs)}
        return results


def print_results(results: dict[str, dict[str, float]]) -> float:
    print(f"{'stage':<16}{'rows in':>9}{'wall s':>9}{'cpu s':>8}{'rows/s':>10}{'peak MB':>9}")
    for name, r in results.items():
        print(f"{name:<16}{r['rows']:>9}{r['seconds']:>9.2f}{r['cpu']:>8.2f}{r['rows'] / r['seconds']:>10.0f}"
              f"{r['peak_mb']:>9.1f}")
    total = sum(r["seconds"] for r in results.values())
    cpu = sum(r["cpu"] for r in results.values())
    print(f"{'total':<16}{'':>9}{total:>9.2f}{cpu:>8.2f}   (target: wall < {TARGET_SECONDS:.0f} s for 35k rows; "
          f"load average now {os.getloadavg()[0]:.2f})")
    return total


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
    small = run_pipeline(args.rows, args.repeats)
    print_results(small)
    if not args.no_scaling:
        large = run_pipeline(2 * args.rows, 1)
        print_results(large)
        print("\npeak memory, " + f"{args.rows} vs {2 * args.rows} rows (flat = streaming):")
        for name in small:
            print(f"  {name:<16}{small[name]['peak_mb']:>7.1f} MB {large[name]['peak_mb']:>7.1f} MB")
    if not args.no_baseline:
        baseline(args.rows)


if __name__ == "__main__":
    main()
