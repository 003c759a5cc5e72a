"""The DagsHub remote workflow against a real S3 API: moto's server on 127.0.0.1, started by the test.

Push from one clone, pull into a fresh clone (byte-identical, `dvc status` clean); wrong credentials and
an unreachable endpoint fail fast with DVC's error and change nothing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from repo_utils import copy_repo, git_commit, run

PUSHED = ["data/training/train.jsonl", "data/training/valid.jsonl", "data/training/test.jsonl"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto in server mode with IAM auth on: returns (endpoint, access key id, secret)."""
    import boto3

    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    # Auth is enforced after the first 4 requests: the setup below (user, policy, key, bucket).
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": "4", "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto server did not start")
        creds = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", "region_name": "us-east-1"}
        iam = boto3.client("iam", endpoint_url=endpoint, **creds)
        iam.create_user(UserName="dvc")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="dvc", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="dvc")["AccessKey"]
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key["AccessKeyId"],
                     aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1").create_bucket(Bucket="dvc")
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _remote_objects(endpoint: str, key_id: str, secret: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                      aws_secret_access_key=secret, region_name="us-east-1")
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="dvc").get("Contents", []))


def _configure(repo: Path, endpoint: str, key_id: str, secret: str) -> None:
    # As README says for DagsHub: endpoint and credentials in .dvc/config.local, never in git.
    run(["dvc", "remote", "modify", "--local", "origin", "endpointurl", endpoint], repo)
    run(["dvc", "remote", "modify", "--local", "origin", "access_key_id", key_id], repo)
    run(["dvc", "remote", "modify", "--local", "origin", "secret_access_key", secret], repo)


@pytest.fixture(scope="module")
def pushed_repo(tmp_path_factory, s3_server):
    """A copy of the project whose data stages ran and whose outputs were pushed."""
    endpoint, key_id, secret = s3_server
    origin = copy_repo(tmp_path_factory.mktemp("origin"))
    _configure(origin, endpoint, key_id, secret)
    run(["dvc", "repro", "sanitize"], origin)
    git_commit(origin, "data stages")
    run(["dvc", "push"], origin)
    return origin


def test_push_then_pull_into_fresh_clone(tmp_path, s3_server, pushed_repo):
    endpoint, key_id, secret = s3_server
    assert _remote_objects(*s3_server), "push wrote nothing to the bucket"
    assert "secret_access_key" not in (pushed_repo / ".dvc" / "config").read_text()

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(pushed_repo), str(clone)], check=True)
    _configure(clone, endpoint, key_id, secret)
    run(["dvc", "pull", "--allow-missing", "sanitize"], clone)
    for rel in PUSHED:
        assert (clone / rel).read_bytes() == (pushed_repo / rel).read_bytes(), rel
    # data/validated and data/split are push: false: repro rebuilds them, and nothing pulled reruns.
    repro = run(["dvc", "repro", "sanitize"], clone).stdout
    assert "Running stage 'split'" in repro and "Running stage 'sanitize'" not in repro, repro
    status = run(["dvc", "status", "sanitize"], clone).stdout
    assert "up to date" in status, status
    for rel in PUSHED:
        assert (clone / rel).read_bytes() == (pushed_repo / rel).read_bytes(), rel


def test_wrong_credentials_fail_and_change_nothing(tmp_path, s3_server, pushed_repo):
    endpoint, _, _ = s3_server
    before = _remote_objects(*s3_server)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(pushed_repo), str(clone)], check=True)
    _configure(clone, endpoint, "AKIAWRONGWRONGWRONG", "not-the-secret")
    proc = run(["dvc", "pull", "--allow-missing", "sanitize"], clone, check=False, timeout=120)
    assert proc.returncode != 0
    assert "InvalidAccessKeyId" in proc.stderr + proc.stdout or "403" in proc.stderr + proc.stdout, proc.stderr
    assert not any((clone / rel).exists() for rel in PUSHED)
    assert _remote_objects(*s3_server) == before


def test_unreachable_endpoint_fails_and_changes_nothing(tmp_path, s3_server, pushed_repo):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(pushed_repo), str(clone)], check=True)
    _configure(clone, f"http://127.0.0.1:{_free_port()}", "AKIAANY", "any")
    proc = run(["dvc", "pull", "--allow-missing", "sanitize"], clone, check=False, timeout=120)
    assert proc.returncode != 0
    assert "Could not connect to the endpoint URL" in proc.stderr + proc.stdout, proc.stderr
    assert not any((clone / rel).exists() for rel in PUSHED)
