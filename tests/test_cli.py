"""The CLI as a user runs it, on both backends: commands, JSON output, errors and concurrency."""

import json
import os
import subprocess
import time

import pytest

from tests.conftest import ALL_BACKENDS
from tests.fuse_util import json_results
from tests.seaweed import free_port_pair


def run(env, *args, timeout=120):
    """Run the real `artifactfs` executable; returns CompletedProcess."""
    return subprocess.run(["artifactfs", *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout)


def assert_clean_error(proc, code, fragment):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("artifactfs: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    (d / "images").mkdir(parents=True)
    (d / "images" / "cat.png").write_bytes(b"\x89PNG" + os.urandom(5000))
    (d / "labels.csv").write_text("file,label\ncat.png,cat\n")
    (d / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(d / "run.sh", 0o755)
    return d


def test_commit_list_show_files_get(cli, data, tmp_path):
    r = cli("commit", "--dir", data, "acme/vision/bikes", "--type", "dataset", "-m", "first",
            "--alias", "best", "--metadata", "acc=0.91", "--metadata", "note=hello")
    assert r.exit_code == 0, r.output
    assert "acme/vision/bikes:v0 committed: 3 files" in r.output
    assert cli("ls").output.split() == ["acme"]
    assert cli("ls", "acme").output.split() == ["acme/vision"]  # each level's names as ls takes them
    assert json.loads(cli("ls", "acme", "--json").output) == ["acme/vision"]
    assert cli("ls", "acme/vision").output.split() == ["acme/vision/bikes"]
    versions = json.loads(cli("ls", "acme/vision/bikes", "--json").output)
    assert [v["version"] for v in versions] == [0] and sorted(versions[0]["aliases"]) == ["best", "latest"]
    assert versions[0]["expires_at"] is None
    for d in (data, data / "images"):
        assert cli("commit", "--dir", d, "acme/vision/ttl", *(["--alias", "best"] if d == data else [])).exit_code == 0
    assert cli("ttl", "acme/vision/ttl:v0", "30d").exit_code == 0
    table = [line.split("\t") for line in cli("ls", "acme/vision/ttl").output.splitlines()]
    assert table[0] == ["version", "aliases", "files", "size", "created", "ttl", "description"]
    assert [row[:3] for row in table[1:]] == [["v0", "best", "3"], ["v1", "latest", "1"]]
    assert table[1][5].startswith("expires at ") and table[2][5] == "-" and table[2][6] == "-"
    assert json.loads(cli("ls", "acme/vision/ttl", "--json").output)[0]["expires_at"] > 0
    shown = json.loads(cli("show", "acme/vision/bikes:best", "--json").output)
    assert shown["metadata"] == {"acc": 0.91, "note": "hello"} and shown["description"] == "first"
    assert shown["file_count"] == 3 and shown["type"] == "dataset"
    listed = json.loads(cli("files", "acme/vision/bikes:v0", "--json").output)
    assert [e["path"] for e in listed] == ["images/cat.png", "labels.csv", "run.sh"]
    listed = json.loads(cli("files", "acme/vision/bikes:v0", "--prefix", "images", "--json").output)
    assert [e["path"] for e in listed] == ["images/cat.png"]
    out = tmp_path / "out"
    r = cli("get", "acme/vision/bikes:latest", "--root", out)
    assert r.exit_code == 0, r.output
    for rel in ("images/cat.png", "labels.csv", "run.sh"):
        assert (out / rel).read_bytes() == (data / rel).read_bytes()
    assert os.access(out / "run.sh", os.X_OK) and not os.access(out / "labels.csv", os.X_OK)
    r = cli("get", "acme/vision/bikes:latest", "--root", out)
    assert "0 files written, 3 already there" in r.output
    one = tmp_path / "one"
    cli("get", "acme/vision/bikes:v0", "--root", one, "--prefix", "labels.csv")
    assert [p.name for p in one.iterdir()] == ["labels.csv"]


def test_unchanged_commit_aliases_update_diff(cli, data):
    cli("commit", "--dir", data, "acme/vision/bikes")
    r = cli("commit", "--dir", data, "acme/vision/bikes", "--alias", "prod")
    assert r.exit_code == 0 and "content equals v0: latest stays v0, prod -> v0; no new version" in r.output
    assert json.loads(cli("show", "acme/vision/bikes:prod", "--json").output)["version"] == 0
    (data / "labels.csv").write_text("changed\n")
    (data / "new.txt").write_text("new\n")
    (data / "run.sh").unlink()
    assert "v1 committed" in cli("commit", "--dir", data, "acme/vision/bikes").output
    assert cli("diff", "acme/vision/bikes:v0", "acme/vision/bikes:v1").output.splitlines() == [
        "+ new.txt", "- run.sh", "M labels.csv"]
    assert cli("alias", "set", "acme/vision/bikes:v1", "prod").exit_code == 0
    assert json.loads(cli("show", "acme/vision/bikes:prod", "--json").output)["version"] == 1
    assert cli("alias", "rm", "acme/vision/bikes", "prod").exit_code == 0
    r = cli("update", "acme/vision/bikes:v0", "-m", "edited", "--metadata", "k=[1,2]")
    assert r.exit_code == 0
    shown = json.loads(cli("show", "acme/vision/bikes:v0", "--json").output)
    assert shown["description"] == "edited" and shown["metadata"] == {"k": [1, 2]}


def test_default_entity_and_project(cli, data, monkeypatch):
    monkeypatch.setenv("ARTIFACTFS_ENTITY", "acme")
    monkeypatch.setenv("ARTIFACTFS_PROJECT", "vision")
    assert cli("commit", "--dir", data, "bikes").exit_code == 0
    assert json.loads(cli("show", "vision/bikes:latest", "--json").output)["artifact"] == "acme/vision/bikes"
    assert json.loads(cli("show", "bikes:v0", "--json").output)["artifact"] == "acme/vision/bikes"


def test_bad_input_is_one_line_and_an_exit_code(env, data, tmp_path):
    assert_clean_error(run(env, "commit", "--dir", data, "acme/vi$ion/bikes"), 2, "invalid project")
    assert_clean_error(run(env, "show", "acme/vision/bikes:v1"), 3, "does not exist")
    assert run(env, "commit", "--dir", data, "acme/vision/bikes").returncode == 0
    assert_clean_error(run(env, "show", "acme/vision/bikes:v7"), 3, "v7 does not exist")
    assert_clean_error(run(env, "show", "acme/vision/bikes:nope"), 3, "no alias 'nope'")
    assert_clean_error(run(env, "show", "acme/vision/bikes:bad alias"), 2, "invalid alias")
    assert_clean_error(run(env, "commit", "--dir", data, "acme/vision/bikes", "--type", "model"), 4,
                       "is a dataset, not a model")
    assert_clean_error(run(env, "commit", "--dir", data, "acme/vision/bikes", "--prefix", "../up"), 2,
                       "'..' is not allowed")
    assert_clean_error(run(env, "commit", "--dir", data, "acme/vision/bikes", "--prefix", "/abs"), 2, "absolute")
    assert_clean_error(run(env, "commit", "--dir", tmp_path / "missing", "acme/vision/bikes"), 8, "not a directory")
    assert_clean_error(run(env, "commit", "--dir", data, "acme/vision/bikes", "--metadata", "novalue"), 2, "KEY=VALUE")
    assert_clean_error(run(env, "alias", "rm", "acme/vision/bikes", "latest"), 2, "managed automatically")
    assert_clean_error(run(env, "show", "a/b/c/d"), 2, "invalid artifact name")


def test_unreadable_file_and_outside_symlink(env, data, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    os.symlink(secret, data / "escape")  # stored as the link it is, never followed
    assert run(env, "commit", "--dir", data, "acme/vision/links").returncode == 0
    listed = run(env, "files", "acme/vision/links").stdout
    assert f"escape -> {secret}" in listed and "outside" not in listed.replace(str(secret), "")
    os.unlink(data / "escape")
    os.mkfifo(data / "pipe")
    assert_clean_error(run(env, "commit", "--dir", data, "acme/vision/bikes"), 8, "not a regular file")
    os.unlink(data / "pipe")
    bad = data / "unreadable"
    bad.write_text("x")
    os.chmod(bad, 0)
    if os.geteuid() == 0:  # root reads anything: simulate with a name that is not UTF-8 instead
        os.unlink(bad)
        (data / os.fsdecode(b"bad\xffname")).write_text("x")
        assert_clean_error(run(env, "commit", "--dir", data, "acme/vision/bikes"), 2, "not valid UTF-8")
    else:
        assert_clean_error(run(env, "commit", "--dir", data, "acme/vision/bikes"), 8, "cannot read")


def test_unreachable_store_fails_within_timeout(env, data):
    env = dict(env, ARTIFACTFS_STORE="s3://artifactfs-test/x", AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port_pair()}",
               AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", ARTIFACTFS_TIMEOUT="2")
    start = time.monotonic()
    assert_clean_error(run(env, "ls"), 5, "unreachable")
    assert time.monotonic() - start < 30


def test_wrong_credentials(env, data, seaweed):
    env = dict(env, ARTIFACTFS_STORE="s3://artifactfs-test/creds", AWS_ENDPOINT_URL=seaweed.endpoint,
               AWS_ACCESS_KEY_ID="testadmin", AWS_SECRET_ACCESS_KEY="not-the-secret")
    proc = run(env, "commit", "--dir", data, "acme/vision/bikes")
    assert_clean_error(proc, 6, "refused")
    assert "not-the-secret" not in proc.stderr


@pytest.mark.parametrize("backend", ["local"])  # its own server
def test_an_s3_server_without_conditional_writes_is_refused(env, data, tmp_path):
    """A server that ignores If-None-Match and If-Match (here moto with those headers dropped) would
    let two committers take one version number: nothing is written there at all, with one clear line."""
    from tests.moto_s3 import MotoServer

    server = MotoServer(str(tmp_path), conditional_writes=False)
    server.start()
    try:
        server.create_bucket("plain")
        env = dict(env, ARTIFACTFS_STORE="s3://plain/team", AWS_ENDPOINT_URL=server.endpoint,
                   AWS_ACCESS_KEY_ID="moto", AWS_SECRET_ACCESS_KEY="moto", AWS_DEFAULT_REGION="us-east-1")
        proc = run(env, "commit", "--dir", data, "acme/vision/bikes")
        assert_clean_error(proc, 2, "does not honour conditional writes")
        assert server.client().list_objects_v2(Bucket="plain").get("KeyCount") == 0  # not even a blob
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_eight_concurrent_committers_get_dense_versions(env, tmp_path):
    dirs = []
    for i in range(8):
        d = tmp_path / f"d{i}"
        d.mkdir()
        (d / "worker.txt").write_text(f"worker {i}\n")
        dirs.append(d)
    procs = [subprocess.Popen(["artifactfs", "commit", "--dir", str(d), "acme/vision/race", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for d in dirs]
    results = json_results(procs)
    assert sorted(r["version"] for r in results) == list(range(8))
    versions = json.loads(run(env, "ls", "acme/vision/race", "--json").stdout)
    assert [v["version"] for v in versions] == list(range(8))
    assert json.loads(run(env, "show", "acme/vision/race:latest", "--json").stdout)["version"] == 7
    contents = set()
    for r in results:  # every worker's content is in the version it was told about
        out = tmp_path / f"get{r['version']}"
        assert run(env, "get", r["ref"], "--root", out).returncode == 0
        contents.add((out / "worker.txt").read_text())
    assert contents == {f"worker {i}\n" for i in range(8)}
