"""References: s3:// objects in the SeaweedFS bucket, a local HTTP server (with and without ETag), and
local files; what is recorded, reading through the verified fetch path, and detecting a changed source."""

import json
import uuid

import pytest

from artifactfs import Artifact, artifact
from artifactfs.client import Client
from artifactfs.errors import CorruptData, UsageError
from artifactfs.fetch import pieces_of
from tests.conftest import BUCKET
from tests.refserver import RefServer
from tests.seaweed import ADMIN


def read_entry(client, art, path) -> bytes:
    art.get_entry(path)  # the API knows the entry
    m = client.manifest(client.resolve(art.qualified_name))
    return b"".join(client.fetcher.piece(p) for p in pieces_of(m[m.find(path)], m.chunk_size))


@pytest.fixture
def s3env(env, seaweed, monkeypatch):
    """S3 settings for references on either store backend, and a fresh prefix of objects."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ADMIN[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN[1])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    prefix = f"refs-{uuid.uuid4().hex[:8]}"
    return seaweed.client(), prefix


def test_file_reference_records_size_and_digest_and_detects_change(client, tmp_path, cli):
    src = tmp_path / "data.bin"
    src.write_bytes(b"committed bytes")
    art = Artifact("acme/proj/files", type="dataset", client=client)
    assert art.add_reference(f"file://{src}") == ["data.bin"]
    art.save()
    e = art.get_entry("data.bin")
    assert e.ref == f"file://{src}" and e.size == 15 and e.digest
    assert e.open().read() == b"committed bytes"
    assert not client.store.exists(f"blobs/{e.digest[:2]}/{e.digest}")  # the bytes stayed where they are

    src.write_bytes(b"different bytes")  # same size, other content
    client.cache.clean()
    with pytest.raises(CorruptData, match="changed since it was committed"):
        read_entry(client, art, "data.bin")
    res = cli("verify", "acme/proj/files:latest")
    assert res.exit_code == 7 and "data.bin" in res.output and "no longer matches" in res.output


def test_cache_warm_caches_references_with_a_digest_and_counts_the_others(client, tmp_path):
    """A reference recorded with its digest is cached like any file (read once from its source); one
    recorded with checksum=False is read from its source every time, so warming skips it and says so."""
    checked, unchecked = tmp_path / "checked.bin", tmp_path / "unchecked.bin"
    checked.write_bytes(b"c" * 5000)
    unchecked.write_bytes(b"u" * 7000)
    art = Artifact("acme/proj/mixed", type="dataset", client=client)
    art.add_reference(f"file://{checked}")
    art.add_reference(f"file://{unchecked}", checksum=False)
    with art.new_file("own.txt") as f:
        f.write("stored in the store\n")
    art.save()
    _, result = client.warm("acme/proj/mixed:latest")
    assert (result.files, result.uncacheable, result.fetched, result.cached) == (2, 1, 5020, 0)
    checked.unlink()  # its bytes now come from the cache
    assert artifact("acme/proj/mixed:latest", client=client).get_entry("checked.bin").open().read() == b"c" * 5000
    _, again = client.warm("acme/proj/mixed:latest")
    assert (again.fetched, again.cached) == (0, 5020)


def test_file_reference_directory_expands(client, tmp_path):
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("bb")
    art = Artifact("acme/proj/tree", type="dataset", client=client)
    assert sorted(art.add_reference(f"file://{d}", name="data")) == ["data/a.txt", "data/sub/b.txt"]
    art.save()
    assert artifact("acme/proj/tree:v0", client=client).get_entry("data/sub/b.txt").open().read() == b"bb"


@pytest.mark.parametrize("etags", [True, False], ids=["etag", "no-etag"])
def test_http_reference(client, tmp_path, cli, etags):
    with RefServer(etags=etags) as server:
        server.files["/models/w.bin"] = b"w" * 1000
        art = Artifact("acme/proj/web", type="model", client=client)
        art.add_reference(server.url + "/models/w.bin")
        art.save()
        e = art.get_entry("w.bin")
        assert e.size == 1000
        if etags:
            assert e.etag and e.digest is None  # ETag and Content-Length are what is recorded
        else:
            assert e.etag is None and e.digest  # no ETag: the content was hashed at commit
        server.requests.clear()
        assert read_entry(client, art, "w.bin") == b"w" * 1000
        assert all(r[2] and r[2].startswith("bytes=") for r in server.requests if r[0] == "GET")  # ranged reads
        assert cli("verify", "acme/proj/web").exit_code == 0

        server.files["/models/w.bin"] = b"v" * 1000  # changed at the source, same size
        client.cache.clean()
        with pytest.raises(CorruptData, match="changed since it was committed"):
            read_entry(client, art, "w.bin")
        res = cli("get", "acme/proj/web", "--root", tmp_path / "out")
        assert res.exit_code == 7 and "changed since it was committed" in res.stderr
        res = cli("verify", "acme/proj/web")
        assert res.exit_code == 7 and "w.bin" in res.output


def test_http_reference_missing_is_not_found(client):
    with RefServer() as server:
        art = Artifact("acme/proj/web", type="model", client=client)
        with pytest.raises(Exception, match="404"):
            art.add_reference(server.url + "/nothing")


def test_s3_object_and_prefix_references(s3env, tmp_path, cli):
    s3, prefix = s3env
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/shards/{i}.bin", Body=bytes([i]) * (100 + i))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/config.json", Body=b'{"lr": 0.1}')
    client = Client()
    try:
        art = Artifact("acme/proj/s3data", type="dataset", client=client)
        assert art.add_reference(f"s3://{BUCKET}/{prefix}/config.json") == ["config.json"]
        assert sorted(art.add_reference(f"s3://{BUCKET}/{prefix}/shards", name="shards")) == [
            "shards/0.bin", "shards/1.bin", "shards/2.bin"]
        art.save()
        e = art.get_entry("shards/2.bin")
        assert e.size == 102 and e.etag and e.ref == f"s3://{BUCKET}/{prefix}/shards/2.bin"
        assert read_entry(client, art, "shards/2.bin") == bytes([2]) * 102
        with pytest.raises(UsageError, match="more than 2 objects"):
            Artifact("acme/proj/x", type="dataset", client=client).add_reference(
                f"s3://{BUCKET}/{prefix}/shards/", max_objects=2)

        res = cli("get", "acme/proj/s3data", "--root", tmp_path / "out")
        assert res.exit_code == 0, res.output
        assert json.loads((tmp_path / "out" / "config.json").read_text()) == {"lr": 0.1}

        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/shards/1.bin", Body=b"X" * 101)  # changed in place
        client.cache.clean()
        with pytest.raises(CorruptData, match="changed since it was committed"):
            read_entry(client, art, "shards/1.bin")
        res = cli("verify", "acme/proj/s3data")
        assert res.exit_code == 7 and "shards/1.bin" in res.output and "shards/0.bin" not in res.output
    finally:
        client.close()


def test_cli_commit_reference_and_unchecked(s3env, tmp_path, cli):
    s3, prefix = s3env
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/obj", Body=b"abc")
    local = tmp_path / "local.txt"
    local.write_text("local")
    res = cli("commit", "acme/proj/mixed", "--reference", f"s3://{BUCKET}/{prefix}/obj=remote/obj.bin",
              "--reference", f"file://{local}", "--json")
    assert res.exit_code == 0, res.output
    res = cli("files", "acme/proj/mixed", "--json")
    entries = {e["path"]: e for e in json.loads(res.output)}
    assert set(entries) == {"local.txt", "remote/obj.bin"}
    assert entries["remote/obj.bin"]["etag"] and entries["remote/obj.bin"]["size"] == 3

    client = Client()
    try:
        art = Artifact("acme/proj/loose", type="dataset", client=client)
        art.add_reference(f"s3://{BUCKET}/{prefix}/obj", checksum=False)
        art.save()
        e = art.get_entry("obj")
        assert (e.ref, e.size, e.digest, e.etag) == (f"s3://{BUCKET}/{prefix}/obj", 0, None, None)
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/obj", Body=b"now different")
        assert e.open().read() == b"now different"  # unchecked: whatever is there now
        assert cli("verify", "acme/proj/loose").exit_code == 0
    finally:
        client.close()
    res = cli("commit", "acme/proj/mixed", "--reference", "ftp://x/y")
    assert res.exit_code == 2 and "unsupported reference" in res.stderr


def test_references_through_the_mount(client, env, tmp_path):
    import errno
    import os

    from tests.fuse_util import Mount

    local = tmp_path / "local.bin"
    local.write_bytes(b"L" * 5000)
    with RefServer(etags=True) as server:
        server.files["/a.bin"] = b"a" * 3000
        server.files["/b.bin"] = b"b" * 3000
        art = Artifact("acme/proj/mounted", type="dataset", client=client)
        art.add_reference(server.url + "/a.bin")
        art.add_reference(server.url + "/b.bin")
        art.add_reference(f"file://{local}")
        art.save()
        m = Mount(tmp_path / "mnt", env)
        try:
            root = m.path("acme/proj/mounted:v0")
            assert sorted(os.listdir(root)) == ["a.bin", "b.bin", "local.bin"]
            assert os.path.getsize(os.path.join(root, "b.bin")) == 3000
            assert open(os.path.join(root, "a.bin"), "rb").read() == b"a" * 3000
            assert open(os.path.join(root, "local.bin"), "rb").read() == b"L" * 5000
            server.files["/b.bin"] = b"B" * 3000  # changed at the source after the commit
            with pytest.raises(OSError) as exc:
                open(os.path.join(root, "b.bin"), "rb").read()
            assert exc.value.errno == errno.EIO
            assert "changed since it was committed" in m.log_text()
        finally:
            m.close()
        assert not os.path.ismount(m.mountpoint)


def test_unchecked_references_through_the_mount(s3env, env, client, tmp_path):
    """checksum=False records the URI alone: the mount shows the source's size and bytes as they are
    now, and a change at the source shows after the alias TTL (direct I/O: no stale page cache)."""
    import os
    import time

    from tests.fuse_util import Mount

    s3, prefix = s3env
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/live.txt", Body=b"s3 first")
    local = tmp_path / "local.txt"
    local.write_bytes(b"local first")
    with RefServer(etags=False) as server:
        server.files["/w.bin"] = bytes(range(256)) * 40
        art = Artifact("acme/proj/live", type="dataset", client=client)
        art.add_reference(f"s3://{BUCKET}/{prefix}/live.txt", checksum=False)
        art.add_reference(f"file://{local}", checksum=False)
        art.add_reference(server.url + "/w.bin", checksum=False)
        art.save()
        m = Mount(tmp_path / "mnt", dict(os.environ), "--alias-ttl", "0.5")  # with s3env's AWS settings
        try:
            root = m.path("acme/proj/live:v0")
            sizes = {name: os.stat(os.path.join(root, name)).st_size for name in os.listdir(root)}
            assert sizes == {"live.txt": 8, "local.txt": 11, "w.bin": 10240}
            assert open(os.path.join(root, "live.txt"), "rb").read() == b"s3 first"
            assert open(os.path.join(root, "local.txt"), "rb").read() == b"local first"
            with open(os.path.join(root, "w.bin"), "rb") as f:
                f.seek(5000)
                assert f.read(300) == (bytes(range(256)) * 40)[5000:5300]
            assert os.getxattr(os.path.join(root, "live.txt"), "user.artifactfs.ref").decode() == \
                f"s3://{BUCKET}/{prefix}/live.txt"
            assert "user.artifactfs.size" not in os.listxattr(os.path.join(root, "live.txt"))  # none recorded

            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/live.txt", Body=b"s3 second, longer")
            local.write_bytes(b"local 2")
            time.sleep(0.8)
            assert open(os.path.join(root, "live.txt"), "rb").read() == b"s3 second, longer"
            assert open(os.path.join(root, "local.txt"), "rb").read() == b"local 2"
            assert os.stat(os.path.join(root, "local.txt")).st_size == 7

            local.unlink()  # gone at the source: an error, never stale or empty bytes
            time.sleep(0.8)
            with pytest.raises(OSError):
                open(os.path.join(root, "local.txt"), "rb").read()
        finally:
            m.close()
        assert not os.path.ismount(m.mountpoint)


def test_diff_sees_a_changed_reference(s3env, cli):
    """An S3 reference is recorded by size and ETag: a changed object, committed again, is a change."""
    s3, prefix = s3env
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/obj", Body=b"abc")
    ref = f"s3://{BUCKET}/{prefix}/obj"
    assert cli("commit", "acme/proj/refd", "--reference", ref).exit_code == 0
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/obj", Body=b"now longer!")
    res = cli("commit", "acme/proj/refd", "--reference", ref, "--json")
    assert json.loads(res.output)["version"] == 1, res.output
    assert cli("diff", "acme/proj/refd:v0", "acme/proj/refd:v1").output.splitlines() == ["M obj"]
