"""Row decisions in worker processes (data/chunks.py): the same bytes, line numbers and stats as
one process, whatever the chunk size and number of workers; failures reach the caller.

    .venv/bin/python -m pytest tests/test_chunks.py -q
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import data_corpus
from compression_layer.data import chunks, preprocess, sanitize
from compression_layer.data.chunks import Job, cut, run_jobs
from compression_layer.data.jsonl import iter_lines
from compression_layer.params import PreprocessParams

ROOT = Path(__file__).resolve().parents[1]

# Mixed line ends (\n, \r\n, lone \r, \r\r\n), blank lines, invalid UTF-8 and a missing final newline.
AWKWARD = (b'{"a": 1}\n\n{"b": 2}\r\n{"c": 3}\r{"d": 4}\r\r\n   \n\xff\xfe bad\n{"e": "\xc3\xa9"}\n'
           b'\r\n{"f": 6}\n{"g": 7}')


@pytest.mark.parametrize("chunk_bytes", [1, 2, 5, 9, 17, 40, 1000])
def test_chunks_cover_the_file_and_number_lines_as_the_whole_file(tmp_path, chunk_bytes):
    path = tmp_path / "awkward.jsonl"
    path.write_bytes(AWKWARD)
    chunks = cut(path, chunk_bytes)
    assert chunks[0].start == 0 and chunks[-1].end == len(AWKWARD)
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:]))
    pieces = [line for c in chunks for line in iter_lines(path, c.start, c.end, c.first_line)]
    assert pieces == list(iter_lines(path))


def test_an_empty_file_has_no_chunks(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert cut(path, 10) == []


def _memory_file() -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="\n")


def _run(kind: str, sources: list[Path], workers: int, chunk_bytes: int) -> tuple[list[bytes], list[dict]]:
    """The kept and rejected bytes of each source and each source's stats."""
    if kind == "preprocess":
        work, new_stats = functools.partial(preprocess.write_decisions, params=PreprocessParams(0.95, 0.95)), preprocess.new_stats
    else:
        work, new_stats = sanitize.write_decisions, sanitize.new_stats
    jobs = [Job(source, _memory_file(), _memory_file(), new_stats()) for source in sources]
    run_jobs(jobs, work, new_stats, workers=workers, chunk_bytes=chunk_bytes)
    outputs, stats = [], []
    for job in jobs:
        for fh in (job.kept, job.rejected):
            fh.flush()
            outputs.append(fh.buffer.getvalue())
        job.stats.check()
        stats.append(job.stats.as_dict())
    return outputs, stats


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("chunk-corpora")
    raw = data_corpus.write_raw(root / "nl.jsonl", 400, "nl", seed=3)
    with open(raw, "ab") as fh:
        fh.write(b"\r\nnot json\r\xff\n\n" + AWKWARD)  # odd line ends and bad rows inside the chunks too
    chats = [data_corpus.write_chat(root / f"{name}.jsonl", n, seed=3) for name, n in (("train", 300), ("valid", 40),
                                                                                        ("test", 1))]
    return {"preprocess": [raw], "sanitize": chats}


@pytest.mark.parametrize("kind", ["preprocess", "sanitize"])
@pytest.mark.parametrize("workers, chunk_bytes", [(2, 4096), (2, 50_000), (3, 777)])
def test_workers_write_what_one_process_writes(corpora, kind, workers, chunk_bytes):
    expected_out, expected_stats = _run(kind, corpora[kind], workers=1, chunk_bytes=chunk_bytes)
    assert len(cut(corpora[kind][0], chunk_bytes)) > 2  # really in chunks
    out, stats = _run(kind, corpora[kind], workers=workers, chunk_bytes=chunk_bytes)
    assert out == expected_out
    assert stats == expected_stats
    rejected_lines = [json.loads(line)["line"] for line in out[1].decode().splitlines()]
    assert rejected_lines == sorted(rejected_lines) and rejected_lines  # whole-file line numbers, in order


def test_spawned_workers_write_what_one_process_writes(corpora, monkeypatch):
    # macOS runs the stages with spawned workers (a fresh interpreter each, not a fork).
    expected = _run("sanitize", corpora["sanitize"], workers=1, chunk_bytes=8192)
    monkeypatch.setattr(chunks, "START_METHOD", "spawn")
    assert _run("sanitize", corpora["sanitize"], workers=2, chunk_bytes=8192) == expected


def explode(lines, kept, rejected, stats):
    for number, _, _ in lines:
        if number == 150:
            raise ValueError("row 150 broke the worker")
        stats.rows_in += 1
        stats.keep("nl")
        kept.write("x\n")


def test_a_failing_worker_fails_the_run(corpora):
    source = corpora["preprocess"][0]
    job = Job(source, _memory_file(), _memory_file(), preprocess.new_stats())
    with pytest.raises(ValueError, match="row 150 broke the worker"):
        run_jobs([job], explode, preprocess.new_stats, workers=2, chunk_bytes=4096)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.json*"))}


def test_stage_outputs_do_not_depend_on_the_number_of_workers(tmp_path):
    # Larger than one default chunk (2 MiB), so that --workers 2 really splits the files.
    raw = data_corpus.write_raw(tmp_path / "code.jsonl", 4000, "code", seed=5)
    chats = tmp_path / "split"
    data_corpus.write_chat(chats / "train.jsonl", 3000, seed=5)
    data_corpus.write_chat(chats / "valid.jsonl", 200, seed=5)
    data_corpus.write_chat(chats / "test.jsonl", 200, seed=5)
    assert raw.stat().st_size > 2 << 20 and (chats / "train.jsonl").stat().st_size > 2 << 20
    digests = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        for cmd in (
            ["stages/preprocess.py", "--input", str(raw), "--output", f"{out}/pairs.jsonl", "--rejected",
             f"{out}/rejected.jsonl", "--max-char-ratio", "1.0", "--max-token-ratio", "1.0", "--stats", f"{out}/p.json"],
            ["stages/sanitize.py", "--input-dir", str(chats), "--output-dir", str(out), "--stats", f"{out}/s.json"],
        ):
            subprocess.run([sys.executable, *cmd, "--workers", workers], cwd=ROOT, check=True, capture_output=True)
        digests.append(_digest(out))
    assert digests[0] == digests[1] and len(digests[0]) == 10


def test_workers_exit_when_the_stage_is_killed(tmp_path):
    psutil = pytest.importorskip("psutil")
    chats = tmp_path / "split"
    for name, rows in (("train", 30_000), ("valid", 10), ("test", 10)):
        data_corpus.write_chat(chats / f"{name}.jsonl", rows, seed=6)
    stage = subprocess.Popen([sys.executable, "stages/sanitize.py", "--input-dir", str(chats), "--output-dir",
                              str(tmp_path / "out"), "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        workers = []
        for _ in range(200):  # up to 10 s for the pool to start
            workers = psutil.Process(stage.pid).children()
            if len(workers) == 2 or stage.poll() is not None:
                break
            time.sleep(0.05)
        assert len(workers) == 2, "the stage finished before its workers could be seen"
    finally:
        stage.kill()
        stage.wait()

    def alive(p) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    for _ in range(100):  # they look for their parent every 0.5 s
        if not any(alive(p) for p in workers):
            break
        time.sleep(0.1)
    leftover = [p for p in workers if alive(p)]
    for p in leftover:
        p.kill()
    assert not leftover
