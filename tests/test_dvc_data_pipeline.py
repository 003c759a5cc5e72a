"""The data half under DVC, in a temporary copy of the repository: `dvc repro` of the four data
stages makes every output, a second repro does nothing, and changing one NL threshold reruns
exactly preprocess_nl, split and sanitize (never preprocess_code). Also: each data stage's deps in
dvc.yaml are exactly the package modules its script imports.

    .venv/bin/python -m pytest tests/test_dvc_data_pipeline.py -q
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import data_corpus
from repo_utils import ROOT, copy_repo, git_commit, run

DATA_STAGES = ["preprocess_nl", "preprocess_code", "split", "sanitize"]
OUTPUTS = [
    "data/validated/nl_pairs.jsonl", "data/validated/rejected_nl_pairs.jsonl",
    "data/validated/code_pairs.jsonl", "data/validated/rejected_code_pairs.jsonl",
    "data/split/train.jsonl", "data/split/valid.jsonl", "data/split/test.jsonl",
    *(f"data/training/{p}{s}.jsonl" for s in ("train", "valid", "test") for p in ("", "unsanitized_")),
]
METRICS = ["metrics/preprocess_nl.json", "metrics/preprocess_code.json", "metrics/split.json", "metrics/sanitize.json"]


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def tracked(path: str) -> bool:
    return bool(subprocess.run(["git", "ls-files", path], cwd=ROOT, capture_output=True, text=True).stdout.strip())


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    dest = copy_repo(tmp_path_factory.mktemp("repo"))
    # The committed sample corpus when it is there; until then, a small generated one.
    if not (tracked("data/synthetic/nl_v2.jsonl") and tracked("data/synthetic/code_v2.jsonl")):
        data_corpus.write_raw(dest / "data/synthetic/nl_v2.jsonl", 240, "nl", seed=11)
        data_corpus.write_raw(dest / "data/synthetic/code_v2.jsonl", 200, "code", seed=11)
        git_commit(dest, "sample corpus")
    return dest


def test_repro_makes_every_output_and_a_second_repro_does_nothing(repo):
    first = run(["dvc", "repro", *DATA_STAGES], cwd=repo)
    assert ran(first.stdout) == set(DATA_STAGES), first.stdout
    for path in OUTPUTS + METRICS:
        assert (repo / path).is_file(), path
    for path in METRICS:
        stats = json.loads((repo / path).read_text())
        assert stats["rows_in"] == stats["kept"] + stats["rejected"] + stats.get("duplicates_collapsed", 0) > 0
    split = json.loads((repo / "metrics/split.json").read_text())
    validated = sum(json.loads((repo / m).read_text())["kept"] for m in METRICS[:2])
    assert split["rows_in"] == validated
    training = sum(len((repo / f"data/training/{s}.jsonl").read_text().splitlines()) for s in ("train", "valid", "test"))
    assert training == json.loads((repo / "metrics/sanitize.json").read_text())["kept"] > 0

    mtimes = {p: (repo / p).stat().st_mtime_ns for p in OUTPUTS}
    second = run(["dvc", "repro", *DATA_STAGES], cwd=repo)
    assert ran(second.stdout) == set(), second.stdout
    assert {p: (repo / p).stat().st_mtime_ns for p in OUTPUTS} == mtimes
    status = run(["dvc", "status", *DATA_STAGES], cwd=repo)
    assert "up to date" in status.stdout, status.stdout


def test_an_nl_threshold_change_reruns_only_what_depends_on_it(repo):
    run(["dvc", "repro", *DATA_STAGES], cwd=repo)
    params = repo / "params.yaml"
    text = params.read_text()
    new = re.sub(r"(preprocess_nl:\n  max_char_ratio:) [0-9.]+", r"\1 0.5", text)
    assert new != text
    params.write_text(new)
    before = json.loads((repo / "metrics/preprocess_nl.json").read_text())
    third = run(["dvc", "repro", *DATA_STAGES], cwd=repo)
    assert ran(third.stdout) == {"preprocess_nl", "split", "sanitize"}, third.stdout
    after = json.loads((repo / "metrics/preprocess_nl.json").read_text())
    assert after["thresholds"]["max_char_ratio"] == 0.5 and after["kept"] < before["kept"]
    diff = run(["dvc", "metrics", "diff", "--json"], cwd=repo)
    assert "metrics/preprocess_nl.json" in json.loads(diff.stdout)


def test_stage_deps_are_exactly_the_modules_each_script_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    probe = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='probe'); "
        "print('\\n'.join(sorted(m.__file__ for m in list(sys.modules.values()) "
        "if getattr(m, '__file__', None) and 'compression_layer' in m.__name__)))"
    )
    for name in DATA_STAGES:
        script = stages[name]["cmd"].split()[1]
        listed = subprocess.run([sys.executable, "-c", probe, script], cwd=ROOT, capture_output=True, text=True, check=True)
        imported = {str(Path(f).resolve().relative_to(ROOT)) for f in listed.stdout.split()}
        declared = {d for d in stages[name]["deps"] if d.startswith("src/")}
        assert declared == imported, name
        assert script in stages[name]["deps"]
