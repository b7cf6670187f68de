"""Parallel writers: several processes add files to one named draft; one finish commits one version.
Concurrent additions never lose each other's files; the same path with different content is an error
at finish that names the path."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from artifactfs import Artifact, artifact, finish_draft
from tests.conftest import ALL_BACKENDS


def writer_dir(tmp_path, i, files):
    d = tmp_path / f"w{i}"
    d.mkdir()
    for name, content in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return d


def test_parallel_writers_in_processes(cli, env, client, tmp_path):
    n = 4
    procs = []
    for i in range(n):
        d = writer_dir(tmp_path, i, {f"part-{i}/data.txt": f"writer {i}", "shared/README": "same everywhere"})
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "artifactfs_cli.main", "draft", "add", "acme/ml/shards", "run42",
             "--dir", str(d), "--writer", f"w{i}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert f"run42\t{n} parts" in cli("draft", "ls", "acme/ml/shards").output

    res = cli("draft", "finish", "acme/ml/shards", "run42", "--alias", "full", "-m", "all shards", "--json")
    assert res.exit_code == 0, res.output + res.stderr
    out = json.loads(res.output)
    assert out["version"] == 0 and out["file_count"] == n + 1
    paths = [e["path"] for e in json.loads(cli("files", "acme/ml/shards:full", "--json").output)]
    assert paths == sorted([f"part-{i}/data.txt" for i in range(n)] + ["shared/README"])
    assert cli("draft", "ls", "acme/ml/shards").output == ""  # the draft is gone
    again = cli("draft", "finish", "acme/ml/shards", "run42")  # finished once: says what it became
    assert again.exit_code == 4 and "finished as acme/ml/shards:v0" in again.stderr, again.output
    # a late writer with the same draft id is refused (exit 4, the version named), not a new draft
    late = writer_dir(tmp_path, 9, {"late.txt": "late"})
    res = cli("draft", "add", "acme/ml/shards", "run42", "--dir", late, "--writer", "late")
    assert res.exit_code == 4, res.output
    assert res.stderr.count("\n") == 1 and "finished as acme/ml/shards:v0" in res.stderr, res.stderr
    assert cli("draft", "ls", "acme/ml/shards").output == ""


def test_conflicting_paths_fail_at_finish_naming_the_path(cli, tmp_path):
    a = writer_dir(tmp_path, 1, {"weights/a.bin": "one", "ok.txt": "x"})
    b = writer_dir(tmp_path, 2, {"weights/a.bin": "two"})
    assert cli("draft", "add", "acme/ml/m", "d1", "--dir", a, "--writer", "a").exit_code == 0
    assert cli("draft", "add", "acme/ml/m", "d1", "--dir", b, "--writer", "b").exit_code == 0
    res = cli("draft", "finish", "acme/ml/m", "d1")
    assert res.exit_code == 4 and "'weights/a.bin'" in res.stderr
    assert cli("ls", "acme/ml/m").output == ""  # nothing was committed
    assert cli("draft", "rm", "acme/ml/m", "d1").exit_code == 0
    assert cli("draft", "finish", "acme/ml/m", "d1").exit_code == 3


def test_draft_through_python_api_in_threads(client, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    def write(i):
        art = Artifact("acme/ml/emb", type="dataset", client=client)
        with art.new_file(f"emb/{i:03d}.txt") as f:
            f.write(f"vector {i}")
        return art.upsert("nightly", writer=f"t{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(16)))
    art = finish_draft("acme/ml/emb", "nightly", aliases=["nightly"], run="embed-1", client=client)
    assert art.version == "v0" and len(art.files()) == 16
    assert artifact("acme/ml/emb:nightly", client=client).get_entry("emb/007.txt").open("r").read() == "vector 7"
    assert art.logged_by() == "embed-1"
    from artifactfs.errors import Conflict

    with pytest.raises(Conflict, match="finished as acme/ml/emb:v0"):  # upsert after finish: refused
        write(99)
    assert len(artifact("acme/ml/emb:latest", client=client).files()) == 16


def test_draft_errors(cli, tmp_path):
    d = writer_dir(tmp_path, 1, {"x": "x"})
    assert cli("draft", "add", "acme/ml/t", "d", "--dir", d, "--type", "model").exit_code == 0
    res = cli("draft", "add", "acme/ml/t", "d", "--dir", d, "--type", "dataset")
    assert res.exit_code == 4
    assert cli("draft", "add", "acme/ml/t", "bad name", "--dir", d).exit_code == 2
    assert cli("draft", "add", "acme/ml/t", "d").exit_code == 2


def test_a_draft_begun_with_8_mib_chunks_finishes_with_them(cli, client, tmp_path):
    """A draft begun by an earlier release (draft.json without a chunk size: 8 MiB chunks) takes files
    from a current writer hashed the same way, so the version is one consistent manifest that reads
    back byte for byte; a draft.json naming a chunk size out of range is refused in one line."""
    import random

    from artifactfs import commit, drafts
    from artifactfs.hashing import OLD_CHUNK_SIZE
    from artifactfs.ingest import LocalFile

    rnd = random.Random(9)
    old = writer_dir(tmp_path, 1, {})
    (old / "old.bin").write_bytes(old_bytes := rnd.randbytes(OLD_CHUNK_SIZE + 1000))
    new = writer_dir(tmp_path, 2, {})
    (new / "new.bin").write_bytes(new_bytes := rnd.randbytes(OLD_CHUNK_SIZE + 2000))
    name = client.artifact_name("acme/ml/legacy")
    entries, _ = commit.upload_files(client.repo, [LocalFile("old.bin", str(old / "old.bin"))],
                                     chunk_size=OLD_CHUNK_SIZE)
    drafts.add_entries(client.repo, name, "d", "dataset", entries, "old-writer", OLD_CHUNK_SIZE)
    key = f"{name.prefix}drafts/d/draft.json"
    record = json.loads(client.store.get(key)[0])
    del record["chunk_size"]  # as an earlier release wrote it
    client.store.put(key, json.dumps(record).encode())
    assert cli("draft", "add", "acme/ml/legacy", "d", "--dir", new, "--writer", "new").exit_code == 0
    res = cli("draft", "finish", "acme/ml/legacy", "d")
    assert res.exit_code == 0, res.stderr
    manifest = client.manifest(client.resolve("acme/ml/legacy:v0"))
    assert manifest.chunk_size == OLD_CHUNK_SIZE
    assert [len(manifest[i].chunks or ()) for i in range(len(manifest))] == [2, 2]
    assert cli("get", "acme/ml/legacy:v0", "--root", tmp_path / "out").exit_code == 0
    assert (tmp_path / "out" / "old.bin").read_bytes() == old_bytes
    assert (tmp_path / "out" / "new.bin").read_bytes() == new_bytes

    assert cli("draft", "add", "acme/ml/legacy", "e", "--dir", new).exit_code == 0
    key = f"{name.prefix}drafts/e/draft.json"
    client.store.put(key, json.dumps({"type": "dataset", "chunk_size": 2**40}).encode())
    res = cli("draft", "add", "acme/ml/legacy", "e", "--dir", new)
    assert res.exit_code != 0 and res.stderr.count("\n") == 1 and "chunk_size" in res.stderr, res.stderr


FINISH_STEPS = ["after:/sealed.json", "version", "after:/versions/", "after:/digests/", "latest",
                "after:/aliases/latest.json", "after:/finished/", "after:/parts/"]


@pytest.mark.parametrize("point", FINISH_STEPS)
def test_a_finish_killed_at_any_step_is_completed_by_the_next(cli, env, tmp_path, point):
    """kill -9 of `draft finish` at each of its steps: `draft add` then says to finish it, and a second
    `draft finish` completes the same version, exactly once, with latest and the aliases on it."""
    from tests.fault_util import af_at
    from tests.fuse_util import run_cli

    for i in range(2):
        d = writer_dir(tmp_path, i, {f"part-{i}.txt": f"writer {i}", "shared/README": "same"})
        assert cli("draft", "add", "acme/ml/k", "d1", "--dir", d, "--writer", f"w{i}").exit_code == 0
    res = af_at(env, point, "kill", "draft", "finish", "acme/ml/k", "d1", "--alias", "full")
    assert res.returncode == -9, (res.stdout, res.stderr)
    late = writer_dir(tmp_path, 9, {"late.txt": "late"})
    res = run_cli(["draft", "add", "acme/ml/k", "d1", "--dir", late], env)
    assert res.returncode == 4 and res.stderr.count("\n") == 1, res.stderr
    assert "draft finish acme/ml/k d1" in res.stderr or "finished as acme/ml/k:v0" in res.stderr, res.stderr
    res = run_cli(["draft", "finish", "acme/ml/k", "d1", "--alias", "full", "--json"], env)
    if point in ("after:/finished/", "after:/parts/"):  # it was finished: it says what it became
        assert res.returncode == 4 and "finished as acme/ml/k:v0" in res.stderr, res.stderr
    else:
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["version"] == 0 and out["created"] is True and out["file_count"] == 3
    assert [line.split("\t")[0] for line in cli("ls", "acme/ml/k").output.splitlines()] == ["version", "v0"]
    for alias in ("latest", "full"):
        assert json.loads(cli("show", f"acme/ml/k:{alias}", "--json").output)["version"] == 0
    assert cli("draft", "ls", "acme/ml/k").output == ""


def test_an_empty_directory_yields_to_a_file_another_writer_adds_below_it(cli, tmp_path):
    a = writer_dir(tmp_path, 1, {"data.txt": "a"})
    (a / "logs").mkdir()
    b = writer_dir(tmp_path, 2, {"logs/b.txt": "b"})
    assert cli("draft", "add", "acme/ml/e", "d", "--dir", a, "--writer", "a").exit_code == 0
    assert cli("draft", "add", "acme/ml/e", "d", "--dir", b, "--writer", "b").exit_code == 0
    res = cli("draft", "finish", "acme/ml/e", "d", "--json")
    assert res.exit_code == 0, res.stderr
    files = json.loads(cli("files", "acme/ml/e:v0", "--json").output)
    assert [(f["path"], f.get("kind", "file")) for f in files] == [("data.txt", "file"), ("logs/b.txt", "file")]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend, moto's S3 beside SeaweedFS: what this module checks rests on the store's
    conditional writes and listings."""
    return request.param


@pytest.mark.parametrize("backend", ["s3"])  # machines sharing a bucket
def test_ray_tasks_build_one_version_through_a_draft(env, client, tmp_path, monkeypatch):
    """The seed workflow on a real engine: Ray tasks (a local Ray on 127.0.0.1) each add a shard to
    one draft, one task's worker dies right after its upsert and Ray runs it again; the driver
    finishes the draft: every shard lands once, byte for byte, in one version."""
    ray = pytest.importorskip("ray")
    import tempfile

    import artifactfs

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster: no token file in ~/.ray
    marker = tmp_path / "crashed-once"
    shards = {i: os.urandom(3000 + i) for i in range(6)}

    @ray.remote(max_retries=2)
    def embed(shard: int, data: bytes, marker: str) -> int:
        part = artifactfs.Artifact("acme/ml/embeddings", type="dataset")
        with part.new_file(f"shard-{shard:03}.bin", mode="wb") as f:
            f.write(data)
        part.upsert(draft="nightly", writer=f"task-{shard}")
        if shard == 3 and not os.path.exists(marker):  # the worker dies after its part landed
            open(marker, "w").close()
            os._exit(1)
        return shard

    temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=temp,
             log_to_driver=False)
    try:
        assert sorted(ray.get([embed.remote(i, data, str(marker)) for i, data in shards.items()])) == list(shards)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert marker.exists()  # shard 3 did run twice
    emb = artifactfs.finish_draft("acme/ml/embeddings", "nightly", aliases=["nightly"])
    assert [e.path for e in emb.files()] == [f"shard-{i:03}.bin" for i in shards]
    for i, data in shards.items():
        assert emb.get_entry(f"shard-{i:03}.bin").open().read() == data
    assert client.resolve("acme/ml/embeddings:nightly").file_count == len(shards)
