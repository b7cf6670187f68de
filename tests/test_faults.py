"""Faults, and what a user sees after each: processes killed with SIGKILL at exact points of a commit,
mount daemons killed mid-read and mid-write, a corrupt or truncated store and cache, concurrent
committers with separate caches, gc beside commits and reads. After every fault the store passes
`verify`, and every byte that was committed (or written and closed) is read back and compared.

SeaweedFS outages and a tiny cache disk are in test_faults_env.py. Covered elsewhere, not repeated:
kill -9 of the staging daemon while writing and ENOSPC on the stage disk (test_staging_commit.py), a
store outage mid-read (test_mount_outage.py), gc racing commits without reads (test_lifecycle.py)."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from artifactfs import layout
from artifactfs.cache import PieceCache
from artifactfs.hashing import CHUNK_SIZE
from tests.fault_util import (
    af,
    af_at,
    af_ok,
    cached_bytes,
    damage_cached,
    make_src,
    one_clear_line,
    overwrite_stored,
    tally,
    tree_digests,
    wait_for,
    write_files,
)
from tests.fuse_util import Mount, json_results, wait_gone
from tests.staging_util import StageMount

NAME = "acme/vision/faults"


def verify_all(cli) -> dict:
    res = cli("verify", "--all", "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def versions_of(cli, name=NAME) -> list[int]:
    res = cli("ls", name, "--json")
    if res.exit_code == 3:
        return []
    assert res.exit_code == 0, res.output
    return [v["version"] for v in json.loads(res.stdout)]


def show(cli, ref) -> dict:
    res = cli("show", ref, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def get_and_compare(cli, ref, expected_root, out) -> int:
    res = cli("get", ref, "--root", out)
    assert res.exit_code == 0, res.output
    got, want = tree_digests(out), tree_digests(expected_root)
    assert got == want
    return sum(os.path.getsize(os.path.join(expected_root, p)) for p in want)


# ---- kill -9 of `commit` --------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["blob:3", "manifest", "version", "latest"])
def test_commit_killed_then_committed_again(env, cli, tmp_path, point):
    """SIGKILL during the upload, between manifest and version record, and between the version record
    and `latest`: never a partial version; the same commit again completes; verify and gc agree."""
    src = tmp_path / "src"
    make_src(src, blobs=3)  # 1 pack + 3 blobs: blob:3 kills the commit with two objects uploaded
    res = af_at(env, point, "kill", "commit", "--dir", src, NAME)
    assert res.returncode == -signal.SIGKILL, (res.stdout, res.stderr)
    if point == "latest":  # the version record was written: v0 is whole, whatever latest says
        assert versions_of(cli) == [0]
        get_and_compare(cli, f"{NAME}:v0", src, tmp_path / "v0")
    else:
        assert versions_of(cli) == []

    res = af_ok(env, "commit", "--dir", src, NAME, "--json")
    assert json.loads(res)["version"] == 0
    assert cli("gc", "--grace", "0").exit_code == 0  # reclaims what the killed commit left; keeps everything live
    report = verify_all(cli)
    assert report["versions"] == 1 and report["blobs"] == 27
    checked = get_and_compare(cli, f"{NAME}:latest", src, tmp_path / "out")
    tally(f"commit killed at {point}", faults=1, recoveries=1, bytes_checked=checked)


def test_stage_commit_killed_between_manifest_and_version(env, cli, tmp_path, monkeypatch):
    """`commit MOUNTPOINT` killed mid-way: the mount thaws, nothing is half-committed, the stage keeps
    every file, and committing again gives one whole version."""
    monkeypatch.setenv("ARTIFACTFS_STAGE_DIR", str(tmp_path / "stages"))
    env = dict(os.environ)
    src = tmp_path / "src"
    make_src(src, count=12)
    st = StageMount(tmp_path / "mp", env, NAME, "--empty")
    try:
        make_src(st.mountpoint, count=12)
        res = af_at(env, "version", "kill", "commit", st.mountpoint)
        assert res.returncode == -signal.SIGKILL, res.stderr
        assert versions_of(cli) == []
        # the daemon notices the committer is gone and accepts writes again
        t0 = time.monotonic()
        with open(st.path("after.txt"), "wb") as f:
            f.write(b"written after the killed commit\n")
        assert time.monotonic() - t0 < 15
        (src / "after.txt").write_bytes(b"written after the killed commit\n")
        assert tree_digests(st.mountpoint) == tree_digests(src)
        out = af_ok(env, "commit", st.mountpoint)
        assert f"{NAME}:v0 committed: 13 files" in out
    finally:
        st.close()
    checked = get_and_compare(cli, f"{NAME}:v0", src, tmp_path / "out")
    verify_all(cli)
    tally("stage commit killed", faults=1, recoveries=1, bytes_checked=checked)


# ---- kill -9 of the mount daemons -----------------------------------------------------------------
def test_readonly_daemon_killed_during_reads(env, cli, tmp_path):
    """Readers see an error (not wrong bytes) when the daemon dies; a new mount serves every byte and the
    shared cache holds no damaged piece."""
    src = tmp_path / "src"
    rnd = random.Random(11)
    files = {f"f{i:02d}.bin": rnd.randbytes(rnd.randint(10_000, 200_000)) for i in range(30)}
    files["big.bin"] = rnd.randbytes(2 * CHUNK_SIZE + 5)
    write_files(src, files)
    af_ok(env, "commit", "--dir", src, NAME)
    m = Mount(tmp_path / "mp", env)
    stop, wrong, failures, reads = threading.Event(), [], [], [0]

    def reader(seed):
        r = random.Random(seed)
        while not stop.is_set():
            name = r.choice(sorted(files))
            try:
                with open(m.path(f"{NAME}:v0", name), "rb") as f:
                    f.seek(r.randrange(len(files[name])))
                    pos = f.tell()
                    data = f.read(65536)
                if data != files[name][pos:pos + 65536]:
                    wrong.append(name)
                reads[0] += 1
            except OSError as exc:
                failures.append(exc.errno)
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: reads[0] >= 20)
        os.kill(m.pid, signal.SIGKILL)
        assert wait_gone(m.pid)
        subprocess.run(["fusermount3", "-uz", m.mountpoint], capture_output=True)  # the dead mount
        for t in threads:
            t.join(30)
        assert not wrong
        assert failures and set(failures) <= {errno.ENOTCONN, errno.ECONNABORTED, errno.EIO}, failures
    finally:
        stop.set()
        m.close()
    m = Mount(tmp_path / "mp", env)  # the same mountpoint, the same cache
    try:
        assert tree_digests(m.path(f"{NAME}:v0")) == tree_digests(src)
    finally:
        m.close()
    res = cli("cache", "verify")
    assert res.exit_code == 0 and "no damaged" in res.stdout, res.output
    tally("read-only daemon killed", faults=1, recoveries=1, bytes_checked=sum(map(len, files.values())))


# ---- corruption -----------------------------------------------------------------------------------
def test_corrupt_and_truncated_store_and_cache(env, cli, tmp_path, client):
    """A truncated blob in the store (and a pack cut short in the last file it holds) is EIO through the
    mount and exit 7 from get and verify. A damaged cache piece is never served: the next reader fetches
    it from the store and the cache heals."""
    rnd = random.Random(3)
    files = {"small.txt": rnd.randbytes(3000), "tail-cut.bin": rnd.randbytes(50_000),
             "bigcut.bin": rnd.randbytes(CHUNK_SIZE + 1000), "healme.bin": rnd.randbytes(70_000),
             "cutme.bin": rnd.randbytes(20_000)}
    src = tmp_path / "src"
    write_files(src, files)
    af_ok(env, "commit", "--dir", src, NAME)
    assert cli("get", f"{NAME}:v0", "--root", tmp_path / "warm").exit_code == 0  # fills the cache
    manifest = client.manifest(client.resolve(f"{NAME}:v0"))
    entry = {e.path: e for e in manifest}

    # the cache: just the three files, each as its own run of the pack (as a mount caches a file read
    # alone); then one flipped, one truncated, one emptied
    cache_root = tmp_path / "cache"
    shutil.rmtree(cache_root / "runs")
    cache = PieceCache(str(cache_root), 1 << 30)
    for name in ("healme.bin", "cutme.bin", "small.txt"):
        cache.put_run(entry[name].pack, entry[name].offset, files[name])
    for name, damage in (("healme.bin", "flip"), ("cutme.bin", "cut"), ("small.txt", "empty")):
        damage_cached(cache_root, entry[name], damage)
    # the store: truncated blobs (whole small file; the second chunk of a big one)
    for piece in entry["bigcut.bin"].chunks:  # not cached: its reads must reach the damaged store
        (cache_root / "pieces" / piece[:2] / piece).unlink(missing_ok=True)
    overwrite_stored(client, entry["tail-cut.bin"], files["tail-cut.bin"][:-10])
    client.store.put(layout.blob_key(entry["bigcut.bin"].digest), files["bigcut.bin"][:CHUNK_SIZE + 10])
    faults = 5

    m = Mount(tmp_path / "mp", env)
    try:
        root = m.path(f"{NAME}:v0")
        for name in ("healme.bin", "cutme.bin", "small.txt"):
            with open(os.path.join(root, name), "rb") as f:
                assert f.read() == files[name]
        with pytest.raises(OSError) as exc:
            open(os.path.join(root, "tail-cut.bin"), "rb").read()
        assert exc.value.errno == errno.EIO
        with open(os.path.join(root, "bigcut.bin"), "rb") as f:
            assert f.read(CHUNK_SIZE) == files["bigcut.bin"][:CHUNK_SIZE]
            with pytest.raises(OSError) as exc:
                f.read()
            assert exc.value.errno == errno.EIO
    finally:
        m.close()
    for name in ("healme.bin", "cutme.bin", "small.txt"):  # healed from the store
        assert cached_bytes(cache_root, entry[name]) == files[name]
    res = af(env, "get", f"{NAME}:v0", "--root", tmp_path / "out")
    one_clear_line(res, 7, "corrupt")
    assert not os.path.exists(tmp_path / "out" / "tail-cut.bin")  # never a wrong file on disk
    res = cli("verify", f"{NAME}:v0")
    assert res.exit_code == 7, res.output
    assert "tail-cut.bin" in res.stdout and "bigcut.bin" in res.stdout, res.stdout
    # a damaged piece whose blob is damaged too: EIO, never the damaged bytes
    damage_cached(cache_root, entry["healme.bin"], "overwrite")
    overwrite_stored(client, entry["healme.bin"], b"y" * len(files["healme.bin"]))
    m = Mount(tmp_path / "mp", env)
    try:
        with pytest.raises(OSError) as exc:
            open(m.path(f"{NAME}:v0", "healme.bin"), "rb").read()
        assert exc.value.errno == errno.EIO
    finally:
        m.close()
    tally("corrupt store and cache", faults=faults + 2, recoveries=3,
          bytes_checked=sum(len(files[n]) for n in ("healme.bin", "cutme.bin", "small.txt")) + CHUNK_SIZE)


# ---- concurrency ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["s3"])  # separate machines share a bucket
def test_eight_committers_separate_caches_one_alias(env, cli, tmp_path):
    """8 processes, each with its own cache (as 8 machines), commit to one artifact and move `prod`."""
    procs = []
    for i in range(8):
        d = tmp_path / f"d{i}"
        write_files(d, {"worker.txt": f"worker {i}\n".encode(), f"own/{i}.bin": random.Random(i).randbytes(30_000),
                        "shared.bin": b"same in every commit" * 100})
        penv = dict(env, ARTIFACTFS_CACHE_DIR=str(tmp_path / f"cache{i}"))
        procs.append(subprocess.Popen(["artifactfs", "commit", "--dir", str(d), NAME, "--alias", "prod", "--json"],
                                      env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = json_results(procs)
    assert sorted(r["version"] for r in results) == list(range(8))
    assert versions_of(cli) == list(range(8))
    prod = show(cli, f"{NAME}:prod")["version"]
    assert prod in range(8)
    assert show(cli, f"{NAME}:latest")["version"] == 7
    checked = 0
    for r in results:
        out = tmp_path / f"get{r['version']}"
        assert cli("get", r["ref"], "--root", out).exit_code == 0
        worker = int((out / "worker.txt").read_text().split()[1])
        assert tree_digests(out) == tree_digests(tmp_path / f"d{worker}")
        checked += sum(os.path.getsize(p) for p in out.rglob("*") if p.is_file())
    report = verify_all(cli)
    assert report["versions"] == 8 and report["blobs"] == 8 * 2 + 1
    tally("8 committers, separate caches", recoveries=0, bytes_checked=checked)


@pytest.mark.parametrize("backend", ["s3"])
def test_gc_beside_commits_and_reads(env, cli, tmp_path):
    """gc (no grace period) in a loop while processes commit and a mount is read: no error, every read
    correct, versions dense, nothing live lost."""
    src = tmp_path / "src"
    rnd = random.Random(9)
    files = {f"f{i:02d}.bin": rnd.randbytes(rnd.randint(1000, 60_000)) for i in range(20)}
    write_files(src, files)
    af_ok(env, "commit", "--dir", src, NAME)
    m = Mount(tmp_path / "mp", env)
    stop, problems, reads = threading.Event(), [], [0]

    def reader(seed):
        r = random.Random(seed)
        while not stop.is_set():
            name = r.choice(sorted(files))
            try:
                if open(m.path(f"{NAME}:v0", name), "rb").read() != files[name]:
                    problems.append(f"wrong bytes in {name}")
                reads[0] += 1
            except OSError as exc:
                problems.append(f"{name}: {exc}")

    def collector():
        runs = 0
        while not stop.is_set() or runs == 0:
            res = af(env, "gc", "--grace", "0")
            if res.returncode != 0:
                problems.append(f"gc: {res.stderr}")
            runs += 1

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)] + [threading.Thread(target=collector)]
    try:
        for t in threads:
            t.start()
        committers = []
        for i in range(6):
            d = tmp_path / f"c{i}"
            write_files(d, {"n.txt": f"{i}\n".encode(), "reuse.bin": files[f"f{i:02d}.bin"]})
            committers.append(subprocess.Popen(["artifactfs", "commit", "--dir", str(d), f"{NAME}-{i % 2}"], env=env,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for p in committers:
            out, err = p.communicate(timeout=120)
            if p.returncode != 0:
                problems.append(f"commit: {err}")
    finally:
        stop.set()
        for t in threads:
            t.join(120)
        m.close()
    assert not problems, problems[:5]
    assert reads[0] > 0
    assert versions_of(cli, f"{NAME}-0") == [0, 1, 2] and versions_of(cli, f"{NAME}-1") == [0, 1, 2]
    assert cli("gc", "--grace", "0").exit_code == 0
    report = verify_all(cli)
    assert report["versions"] == 7
    checked = get_and_compare(cli, f"{NAME}:v0", src, tmp_path / "out")
    tally("gc beside commits and reads", bytes_checked=checked)
