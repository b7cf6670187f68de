"""Lifecycle: rm (tombstones, aliases, latest), ttl, gc (what it frees, what it keeps, racing commits),
verify (every mismatch reported, exit 7) and cache verify."""

import json
import threading
import time

import pytest

from artifactfs import layout
from artifactfs.gc import gc
from artifactfs.ingest import LocalFile, walk_directory
from artifactfs.manifest import columnar
from artifactfs.packs import PACK_FILE_MAX
from tests.conftest import ALL_BACKENDS
from tests.fault_util import overwrite_stored, stored_key


def commit(cli, tmp_path, ref, files: dict, *args):
    d = tmp_path / f"src-{time.monotonic_ns()}"
    d.mkdir()
    for name, content in files.items():
        (d / name).write_text(content)
    res = cli("commit", ref, "--dir", d, *args)
    assert res.exit_code == 0, res.output + res.stderr
    return res


def test_rm_tombstones_and_never_reuses_numbers(cli, client, tmp_path):
    commit(cli, tmp_path, "acme/p/a", {"f": "zero"})
    commit(cli, tmp_path, "acme/p/a", {"f": "one"}, "--alias", "prod")
    commit(cli, tmp_path, "acme/p/a", {"f": "two"})

    res = cli("rm", "acme/p/a:v1")
    assert res.exit_code == 4 and "prod" in res.stderr  # an alias still points at it
    assert cli("rm", "acme/p/a:v1", "--force").output.strip() == "deleted acme/p/a:v1 and aliases prod"
    assert cli("show", "acme/p/a:v1").exit_code == 3
    assert cli("show", "acme/p/a:prod").exit_code == 3

    assert cli("rm", "acme/p/a:latest").exit_code == 0  # latest is not a custom alias: it moves back
    assert json.loads(cli("show", "acme/p/a", "--json").output)["version"] == 0
    assert [r["version"] for r in json.loads(cli("ls", "acme/p/a", "--json").output)] == [0]

    out = json.loads(commit(cli, tmp_path, "acme/p/a", {"f": "two"}, "--json").output)
    assert out["version"] == 3 and out["created"]  # the content of a deleted version is new again; v2 stays gone
    assert cli("rm", "acme/p/a:v7").exit_code == 3


def test_live_version_numbers_reads_records_within_a_budget(cli, client, tmp_path):
    for i in range(5):
        commit(cli, tmp_path, "acme/p/many", {"f": f"content {i} " * 20})
    assert cli("rm", "acme/p/many:v1").exit_code == 0 and cli("rm", "acme/p/many:v3").exit_code == 0
    name, known = client.artifact_name("acme/p/many"), {}
    assert client.repo.live_version_numbers(name, known, budget=1) in ([0, 2, 3, 4], [0, 1, 2, 4])
    assert len(known) == 1 and not any(known.values())  # the smallest record read first: a tombstone
    assert client.repo.live_version_numbers(name, known, budget=1) == [0, 2, 4]
    assert client.repo.live_version_numbers(name, known) == [0, 2, 4] and len(known) == 5
    assert cli("rm", "acme/p/many:v2").exit_code == 0  # a changed record (new etag) is read again
    assert client.repo.live_version_numbers(name, known, budget=1) == [0, 4]


def test_gc_frees_unreferenced_and_keeps_the_rest(cli, client, tmp_path):
    commit(cli, tmp_path, "acme/p/g", {"keep": "kept", "gone": "only in v0"})
    commit(cli, tmp_path, "acme/p/g", {"keep": "kept", "new": "in v1"})
    commit(cli, tmp_path, "acme/p/h", {"alone": "only in h:v0"})
    v0, h0 = client.resolve("acme/p/g:v0"), client.resolve("acme/p/h:v0")
    shared_pack = stored_key(client, "acme/p/g:v0", "gone")  # v1 still reads "kept" from it
    alone_pack = stored_key(client, "acme/p/h:v0", "alone")
    new_pack = stored_key(client, "acme/p/g:v1", "new")
    assert stored_key(client, "acme/p/g:v1", "keep") == shared_pack  # unchanged files are not uploaded again
    assert cli("rm", "acme/p/g:v0").exit_code == 0
    assert cli("rm", "acme/p/h:v0").exit_code == 0

    res = cli("gc", "--dry-run", "--grace", "0s", "--json")
    assert json.loads(res.output)["deleted"] == 5  # the two manifests (JSON and columnar forms) and h's pack
    assert client.store.exists(alone_pack)

    res = cli("gc", "--grace", "1h")  # everything is younger than the grace period
    assert "deleted 0 expired versions, 0 objects" in res.output
    res = cli("gc", "--grace", "0s", "--json")
    assert json.loads(res.output)["deleted"] == 5
    assert not client.store.exists(alone_pack)
    for gone in (v0.manifest, h0.manifest):
        assert not any(client.store.exists(key) for key in layout.manifest_keys(gone))
    assert all(client.store.exists(key) for key in layout.manifest_keys(client.resolve("acme/p/g:v1").manifest))
    assert client.store.exists(shared_pack) and client.store.exists(new_pack)
    assert cli("verify", "--all").exit_code == 0


def test_ttl_expires_through_gc(cli, client, tmp_path):
    commit(cli, tmp_path, "acme/p/t", {"f": "short-lived"}, "--alias", "tmp")
    commit(cli, tmp_path, "acme/p/t", {"f": "stays"})
    short_lived = stored_key(client, "acme/p/t:v0", "f")
    assert "expires at" in cli("ttl", "acme/p/t:v0", "30d").output
    assert "expires at" in cli("ttl", "acme/p/t:v0").output
    assert "  ttl:         expires at 20" in cli("show", "acme/p/t:v0").output  # show tells it too
    assert json.loads(cli("show", "acme/p/t:v0", "--json").output)["expires_at"] > time.time() + 29 * 86400
    assert cli("ttl", "acme/p/t:v0", "none").output.strip() == "acme/p/t:v0: no ttl"
    assert "ttl:" not in cli("show", "acme/p/t:v0").output
    assert json.loads(cli("show", "acme/p/t:v0", "--json").output)["expires_at"] is None
    assert cli("ttl", "acme/p/t:v0", "0.2s").exit_code == 0
    assert cli("ttl", "acme/p/t:v0", "soon").exit_code == 2
    time.sleep(0.4)
    res = cli("gc", "--grace", "0s")
    assert "expired: acme/p/t:v0" in res.output
    assert cli("show", "acme/p/t:v0").exit_code == 3 and cli("show", "acme/p/t:tmp").exit_code == 3
    assert not client.store.exists(short_lived)
    assert cli("show", "acme/p/t:v1").exit_code == 0


def test_verify_reports_every_problem(cli, client, tmp_path):
    commit(cli, tmp_path, "acme/p/v", {"a": "aaaa", "b": "bbbb", "c": "cccc"})
    assert cli("verify", "acme/p/v").exit_code == 0
    manifest = client.manifest(client.resolve("acme/p/v"))
    a, b = (manifest[manifest.find(p)] for p in ("a", "b"))
    overwrite_stored(client, a, b"AAAA")  # same size, other bytes
    overwrite_stored(client, b, b"b")  # truncated (the pack ends there)
    res = cli("verify", "acme/p/v")
    assert res.exit_code == 7
    assert "acme/p/v:v0 a: bytes" in res.output and "do not match its digest" in res.output
    assert "acme/p/v:v0 b: bytes" in res.output and "acme/p/v:v0 c: bytes" in res.output
    assert "verify found 3 problems" in res.stderr
    client.store.delete(layout.content_key(a))
    res = cli("verify", "acme/p/v")
    assert res.exit_code == 7 and "acme/p/v:v0 a: pack" in res.output and "is missing" in res.output

    commit(cli, tmp_path, "acme/p/big", {"big": "x" * (PACK_FILE_MAX + 1)})  # a file with its own blob
    key = stored_key(client, "acme/p/big", "big")
    client.store.put(key, b"x" * (PACK_FILE_MAX + 1) + b"!")
    res = cli("verify", "acme/p/big")
    assert res.exit_code == 7 and "acme/p/big:v0 big: blob" in res.output
    assert f"expected {PACK_FILE_MAX + 1}" in res.output
    client.store.delete(key)
    assert "missing" in cli("verify", "acme/p/big").output

    # the columnar form readers load instead of the JSON must hold exactly the manifest's entries
    v_digest, big_digest = client.resolve("acme/p/v").manifest, client.resolve("acme/p/big").manifest
    other = columnar.decode(client.store.get(layout.manifest_columns_key(big_digest))[0], big_digest)
    other._digest = v_digest  # sound, checksummed, named for acme/p/v, but big's entries
    client.store.put(layout.manifest_columns_key(v_digest), columnar.encode(other))
    res = cli("verify", "acme/p/v")
    assert res.exit_code == 7 and "does not hold the manifest's entries" in res.output
    client.store.put(layout.manifest_columns_key(v_digest), b"damaged")
    assert "checksum mismatch" in cli("verify", "acme/p/v").output

    record = client.resolve("acme/p/v")
    client.store.put(layout.manifest_key(record.manifest), b"not gzip")
    res = cli("verify", "--all")
    assert res.exit_code == 7 and "not valid gzip" in res.output


def test_cache_verify(cli, client, tmp_path):
    commit(cli, tmp_path, "acme/p/c", {"a": "cached bytes"})
    assert cli("get", "acme/p/c", "--root", tmp_path / "out").exit_code == 0
    assert "checked 1 pieces: no damaged" in cli("cache", "verify").output
    piece = next(p for p in (tmp_path / "cache" / "runs").rglob("*") if p.is_file())  # "a" is packed
    piece.write_bytes(b"rotten")
    res = cli("cache", "verify")
    assert res.exit_code == 7 and "damaged piece removed" in res.output


def test_cache_info_and_clean_cover_pieces_and_manifests(cli, client, tmp_path):
    commit(cli, tmp_path, "acme/p/c", {"a": "cached bytes", "b": "more"})
    assert cli("get", "acme/p/c", "--root", tmp_path / "out").exit_code == 0
    info = json.loads(cli("cache", "info", "--json").output)
    assert info["pieces"] == 1 and info["bytes"] > 0  # one run of the pack holding both files
    assert info["manifests"] == 1 and info["manifest_bytes"] > 0  # the version's manifest, columnar form
    assert "1 manifests" in cli("cache", "info").output
    assert cli("cache", "clean").output.startswith("freed ")
    info = json.loads(cli("cache", "info", "--json").output)
    assert (info["pieces"], info["bytes"], info["manifests"], info["manifest_bytes"]) == (0, 0, 0, 0)
    assert cli("get", "acme/p/c", "--root", tmp_path / "again").exit_code == 0  # read again from the store
    assert (tmp_path / "again" / "a").read_text() == "cached bytes"


def test_gc_racing_commits_loses_nothing(cli, client, tmp_path):
    """Commits in threads reuse content whose only versions were deleted (so its blobs are garbage that
    gc is deleting at that moment) while gc runs again and again with no grace period at all."""
    from artifactfs.lifecycle import delete_version

    contents = [f"payload {i} " * 50 for i in range(8)]
    old = client.artifact_name("acme/p/old")
    for i, text in enumerate(contents):
        (tmp_path / f"old{i}").write_text(text)
        client.commit_files(old, "dataset", [LocalFile(f"f{i}", str(tmp_path / f"old{i}"))])
    for v in range(len(contents)):
        delete_version(client.repo, client.ref(f"acme/p/old:v{v}"))

    srcs = []
    for i, text in enumerate(contents):
        d = tmp_path / f"race{i}"
        d.mkdir()
        (d / f"f{i}").write_text(text)
        (d / "own").write_text(f"fresh {i}")
        srcs.append(d)

    stop = threading.Event()
    gc_runs = [0]
    errors = []

    def collector():
        while not stop.is_set():
            try:
                gc(client.repo, grace=0)
                gc_runs[0] += 1
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    def committer(i):
        try:
            from artifactfs.client import Client

            c = Client()
            try:
                c.commit_files(c.artifact_name(f"acme/p/new{i % 3}"), "dataset", walk_directory(str(srcs[i])))
            finally:
                c.close()
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    gc_thread = threading.Thread(target=collector)
    gc_thread.start()
    try:
        workers = [threading.Thread(target=committer, args=(i,)) for i in range(len(contents))]
        for w in workers:
            w.start()
            time.sleep(0.02)
        for w in workers:
            w.join(120)
    finally:
        stop.set()
        gc_thread.join(120)
    assert not errors, errors
    assert gc_runs[0] >= 1
    gc(client.repo, grace=0)  # and once more when everything is quiet
    res = cli("verify", "--all", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["versions"] == len(contents) and report["blobs"] == 2 * len(contents)


def test_the_cache_bound_covers_manifests(client, tmp_path):
    """--cache-size bounds pieces and the local manifest cache together; the least recently used go."""
    import os

    from artifactfs.cache import PieceCache

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(1000))
    client.commit_dir(str(src), "acme/p/m", "dataset")
    client.repo.manifest(client.resolve("acme/p/m").manifest)
    cache = PieceCache(client.settings.cache_dir, max_bytes=200_000)
    assert cache.info()["manifests"] == 1
    for name in os.listdir(cache.manifests_dir):
        for path in os.scandir(os.path.join(cache.manifests_dir, name)):
            os.utime(path.path, (1, 1))  # the oldest file of the cache
    for i in range(4):
        cache.put(f"{i:032x}", os.urandom(60_000))  # over the bound: eviction runs
    assert cache.info()["manifests"] == 0
    assert cache.info()["bytes"] <= 200_000


def _versions_for_alias_races(client, ref: str, count: int) -> list[int]:
    """`count` versions of `ref` (records only: the race is about aliases, not bytes)."""
    from artifactfs.hashing import digest_bytes
    from artifactfs.manifest import Entry, Manifest

    name = client.artifact_name(ref)
    return [client.repo.commit(name, "dataset", Manifest.from_entries(
        [Entry(path="f", size=len(str(i)), digest=digest_bytes(str(i).encode()))])).record.version
            for i in range(count)]


def _assert_every_alias_resolves(client, ref: str) -> dict:
    name = client.artifact_name(ref)
    aliases = client.repo.aliases(name)
    dead = {a: v for a, v in aliases.items() if not client.repo.is_live(name, v)}
    assert not dead, f"aliases on deleted versions: {dead}"
    return aliases


def test_alias_set_racing_rm_from_threads_leaves_no_alias_on_a_deleted_version(client):
    from artifactfs.errors import ArtifactfsError
    from artifactfs.lifecycle import delete_version
    from artifactfs.names import parse_ref

    name = client.artifact_name("acme/p/race")
    versions = _versions_for_alias_races(client, "acme/p/race", 50)
    outcomes = []

    def one(version: int) -> None:
        start = threading.Barrier(2)

        def set_alias():
            start.wait()
            try:
                client.repo.set_alias(name, f"a{version}", version)
                outcomes.append("set")
            except ArtifactfsError:
                outcomes.append("set refused")

        def rm():
            start.wait()
            try:
                delete_version(client.repo, parse_ref(f"acme/p/race:v{version}"))
                outcomes.append("deleted")
            except ArtifactfsError:
                outcomes.append("rm refused")

        pair = [threading.Thread(target=set_alias), threading.Thread(target=rm)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()

    rounds = [threading.Thread(target=one, args=(v,)) for v in versions]
    for t in rounds:
        t.start()
    for t in rounds:
        t.join()
    assert len(outcomes) == 100
    aliases = _assert_every_alias_resolves(client, "acme/p/race")
    live = [v for v in versions if client.repo.is_live(name, v)]
    assert aliases.get("latest") == (live[-1] if live else None)
    assert "deleted" in outcomes  # the race was run, not avoided


def test_alias_set_racing_rm_from_the_cli_leaves_no_alias_on_a_deleted_version(client, env):
    from tests.fault_util import af_many

    versions = _versions_for_alias_races(client, "acme/p/clirace", 20)
    calls = [call for v in versions for call in ((env, ("alias", "set", f"acme/p/clirace:v{v}", f"a{v}")),
                                                  (env, ("rm", f"acme/p/clirace:v{v}")))]
    results = af_many(calls)
    for res in results:
        assert res.returncode in (0, 3, 4), (res.args, res.returncode, res.stderr)
        assert "Traceback" not in res.stderr
    _assert_every_alias_resolves(client, "acme/p/clirace")


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend, moto's S3 beside SeaweedFS: what this module checks rests on the store's
    conditional writes and listings."""
    return request.param
