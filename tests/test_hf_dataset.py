"""The HF dataset source (stage dataset): huggingface-hub's real code path against a dataset repo in the hub's
cache layout with HF_HUB_OFFLINE=1, row checks as in sanitize, revisions, clear errors; and the pipeline
dataset -> train -> evaluate on it (model given as a hub id, also from the cache), data/training/ untouched.

    .venv/bin/python -m pytest -q tests/test_hf_dataset.py      (about a minute)
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hf_support import BAD_ROWS, COMMIT, DATASET_ID, OTHER_COMMIT, SIZES, add_model, add_snapshot, good_rows, jsonl_files
from repo_utils import ROOT, copy_repo, git_commit, run
from train_support import QUICK

from compression_layer.data.hf import split_of
from compression_layer.data.source import split_path

STAGE = [sys.executable, str(ROOT / "stages/dataset.py")]


def write_params(path: Path, source: str = "hf", repo: str | None = DATASET_ID, revision: str | None = None) -> Path:
    path.write_text(yaml.safe_dump({"dataset": {"source": source, "hf_repo": repo, "hf_revision": revision}}))
    return path


def dataset_stage(tmp_path: Path, cache: Path | None, params: Path, **env: str) -> subprocess.CompletedProcess:
    """stages/dataset.py in a fresh process (huggingface_hub reads HF_* once, at import), as DVC runs it."""
    environ = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    environ.update({"HF_HUB_CACHE": str(cache or tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1", **env})
    environ = {k: v for k, v in environ.items() if v is not None}
    return subprocess.run(STAGE + ["--params", str(params), "--output-dir", str(tmp_path / "out/hf"),
                                   "--stats", str(tmp_path / "out/dataset.json")],
                          capture_output=True, text=True, timeout=120, env=environ)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_offline_download_checks_rows_and_records_the_commit(tmp_path):
    cache = tmp_path / "cache"
    add_snapshot(cache, {**jsonl_files(), "README.md": "# card\n"})
    proc = dataset_stage(tmp_path, cache, write_params(tmp_path / "params.yaml"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out/hf"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["source.json", *(f"{p}{s}.jsonl" for s in ("train", "valid", "test") for p in ("", "rejected_"))])
    # Kept rows are the repo's lines, unchanged and in order; valid comes from validation.jsonl.
    for split, name in (("train", "train"), ("valid", "validation"), ("test", "test")):
        repo_lines = lines(cache / f"datasets--test-org--compression-sft/snapshots/{COMMIT}/data/{name}.jsonl")
        assert lines(out / f"{split}.jsonl") == [l for l in repo_lines if l not in BAD_ROWS]
        assert len(lines(out / f"{split}.jsonl")) == SIZES[split]
    rejected = [json.loads(l) for l in lines(out / "rejected_train.jsonl")]
    assert [(r["file"], r["line"], r["reason"]) for r in rejected] == [
        ("data/train.jsonl", 4, "bad_format"), ("data/train.jsonl", 5, "rule_a_expansion")]
    assert rejected[0]["detail"] == "no 'messages' list" and rejected[1]["record"]["messages"]
    assert lines(out / "rejected_valid.jsonl") == [] and lines(out / "rejected_test.jsonl") == []

    source = json.loads((out / "source.json").read_text())
    assert source["source"] == "hf" and source["repo"] == DATASET_ID
    assert source["revision"] == COMMIT and source["requested_revision"] is None
    assert source["repo_files"]["valid"] == ["data/validation.jsonl"]
    stats = json.loads((tmp_path / "out/dataset.json").read_text())
    assert stats["revision"] == COMMIT
    assert stats["rows_in"] == sum(SIZES.values()) + 2 and stats["kept"] == sum(SIZES.values())
    assert stats["rejected_by_reason"]["bad_format"] == 1 and stats["rejected_by_reason"]["rule_a_expansion"] == 1
    assert stats["per_split"]["train"]["rejected"] == 2
    # train and evaluate find the hf splits through the record.
    assert split_path(out / "source.json", "valid", "data/training/valid.jsonl") == out / "valid.jsonl"
    assert split_path(out / "source.json", "test", "elsewhere.jsonl") == out / "test.jsonl"


def test_revision_branch_or_commit_resolves_to_its_snapshot(tmp_path):
    cache = tmp_path / "cache"
    add_snapshot(cache, jsonl_files())
    newer = {k: v for k, v in jsonl_files(bad_rows=False).items()}
    newer["data/test.jsonl"] = "".join(json.dumps(r) + "\n" for r in good_rows("test", 3))
    add_snapshot(cache, newer, commit=OTHER_COMMIT, refs=("v2",))
    for revision, commit, test_rows in (("v2", OTHER_COMMIT, 3), (COMMIT, COMMIT, SIZES["test"]), (None, COMMIT, 6)):
        proc = dataset_stage(tmp_path, cache, write_params(tmp_path / "params.yaml", revision=revision))
        assert proc.returncode == 0, proc.stderr
        source = json.loads((tmp_path / "out/hf/source.json").read_text())
        assert (source["requested_revision"], source["revision"]) == (revision, commit)
        assert len(lines(tmp_path / "out/hf/test.jsonl")) == test_rows
    proc = dataset_stage(tmp_path, cache, write_params(tmp_path / "params.yaml", revision="no-such-tag"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: dataset '{DATASET_ID}' at revision 'no-such-tag'")
    # A failed run leaves the previous output as it was.
    assert json.loads((tmp_path / "out/hf/source.json").read_text())["revision"] == COMMIT


def test_parquet_shards_as_push_to_hub_writes_them(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    files = {}
    for split, name in (("train", "train"), ("valid", "validation"), ("test", "test")):
        rows = good_rows(split)
        for shard, part in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2 :])):
            path = tmp_path / f"{name}-{shard}.parquet"
            pq.write_table(pa.Table.from_pylist(part), path)
            files[f"data/{name}-0000{shard}-of-00002.parquet"] = path.read_bytes()
    add_snapshot(tmp_path / "cache", files)
    proc = dataset_stage(tmp_path, tmp_path / "cache", write_params(tmp_path / "params.yaml"))
    assert proc.returncode == 0, proc.stderr
    kept = [json.loads(l) for l in lines(tmp_path / "out/hf/train.jsonl")]
    assert kept == good_rows("train")  # both shards, in order, rows as the repo holds them
    source = json.loads((tmp_path / "out/hf/source.json").read_text())
    assert source["repo_files"]["train"] == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]


@pytest.mark.parametrize("relpath, split", [
    ("train.jsonl", "train"), ("data/validation-00000-of-00001.parquet", "valid"), ("dev.jsonl", "valid"),
    ("test/part_1.jsonl", "test"), ("data/other.jsonl", None), ("trainer_notes.jsonl", None),
])
def test_split_names(relpath, split):
    assert split_of(relpath) == split


def test_not_in_cache_offline_is_one_clear_line(tmp_path):
    proc = dataset_stage(tmp_path, None, write_params(tmp_path / "params.yaml"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == (f"error: dataset '{DATASET_ID}' is not in the Hugging Face cache and the hub cannot be reached "
                    "(no network or HF_HUB_OFFLINE=1): download it once with network, or set dataset.source: local")
    assert not (tmp_path / "out/hf").exists()


def test_no_network_is_the_same_clear_line(tmp_path):
    """HF_HUB_OFFLINE unset: huggingface_hub tries the hub (here a closed local port) and falls back to the cache."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = dataset_stage(tmp_path, None, write_params(tmp_path / "params.yaml"),
                         HF_HUB_OFFLINE=None, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: dataset '{DATASET_ID}' is not in the Hugging Face cache")
    # With the repo cached, the same unreachable hub is no obstacle: the cached main is used.
    add_snapshot(tmp_path / "cache", jsonl_files())
    proc = dataset_stage(tmp_path, tmp_path / "cache", write_params(tmp_path / "params.yaml"),
                         HF_HUB_OFFLINE=None, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out/hf/source.json").read_text())["revision"] == COMMIT


@pytest.mark.parametrize("files, message", [
    ({"data/train.jsonl": "{}\n", "data/test.jsonl": "{}\n"}, "error: dataset has no valid split"),
    ({"README.md": "card"}, "error: dataset has no train / valid / test split"),
])
def test_missing_splits(tmp_path, files, message):
    add_snapshot(tmp_path / "cache", files)
    proc = dataset_stage(tmp_path, tmp_path / "cache", write_params(tmp_path / "params.yaml"))
    assert proc.returncode == 1 and proc.stderr.strip().startswith(message), proc.stderr


def test_params_are_checked(tmp_path):
    proc = dataset_stage(tmp_path, None, write_params(tmp_path / "params.yaml", repo=None))
    assert proc.stderr.strip() == "error: dataset.source is 'hf' but dataset.hf_repo is not set (e.g. owner/dataset-name)"
    (tmp_path / "bad.yaml").write_text("dataset:\n  source: hf\n  hf_rpo: a/b\n")
    proc = dataset_stage(tmp_path, None, tmp_path / "bad.yaml")
    assert proc.returncode == 1 and "unknown key 'hf_rpo' (did you mean 'hf_repo'?)" in proc.stderr


def test_local_source_writes_only_the_record(tmp_path):
    proc = dataset_stage(tmp_path, None, write_params(tmp_path / "params.yaml", source="local", repo=None))
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "out/hf").iterdir()] == ["source.json"]
    record = tmp_path / "out/hf/source.json"
    assert json.loads(record.read_text())["source"] == "local"
    assert json.loads((tmp_path / "out/dataset.json").read_text()) == {"source": "local"}
    assert split_path(record, "train", "data/training/train.jsonl") == Path("data/training/train.jsonl")


# --- the pipeline on a hub-layout dataset, offline ---------------------------------------------------------

MODEL_ID = "tiny-org/tiny-qwen3"


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_pipeline_trains_and_evaluates_on_the_hf_dataset_offline(tmp_path, tiny_model_path):
    cache = tmp_path / "hf-cache"
    add_snapshot(cache, jsonl_files())
    add_model(cache, tiny_model_path, MODEL_ID)
    offline = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}

    repo = copy_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update({k: v for k, v in QUICK.items() if k != "learning_rate"}, model=MODEL_ID, eval_limit=4,
                  eval_max_tokens=16, eval_batch_size=4)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git_commit(repo, "small params")
    run(["dvc", "repro", "sanitize"], repo, **offline)  # the local splits, as a user would have them
    before = digest(repo / "data/training")

    params["dataset"] = {"source": "hf", "hf_repo": DATASET_ID, "hf_revision": None}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "evaluate"], repo, **offline).stdout
    assert ran(out) == {"dataset", "train", "evaluate"}, out[-3000:]
    assert digest(repo / "data/training") == before  # never written over

    run_json = json.loads((repo / "models/runs/mlx/latest/run.json").read_text())
    assert run_json["status"] == "completed" and run_json["params"]["model"] == MODEL_ID
    assert "snapshots" in run_json["model_path"]  # the hub id resolved to the cached model snapshot
    assert run_json["data"]["train"] == "data/hf/train.jsonl" and run_json["data"]["valid"] == "data/hf/valid.jsonl"
    assert run_json["data"]["train_rows"] == SIZES["train"] and run_json["data"]["valid_rows"] == SIZES["valid"]
    eval_metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert "data/hf/test.jsonl" in json.dumps(eval_metrics)
    assert len(lines(repo / "models/eval/predictions.jsonl")) == 4
    assert json.loads((repo / "metrics/dataset.json").read_text())["revision"] == COMMIT
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert lock["dataset"]["params"]["params.yaml"] == {"dataset.source": "hf", "dataset.hf_repo": DATASET_ID,
                                                         "dataset.hf_revision": None}
    assert "data/hf" in [d["path"] for d in lock["train"]["deps"]]

    # Reproducible without the hub: nothing reruns, nothing is fetched again.
    again = run(["dvc", "repro", "evaluate"], repo, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "no-cache"))
    assert ran(again.stdout) == set(), again.stdout
