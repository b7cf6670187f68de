"""Faults of the environment: SeaweedFS stopped, restarted or frozen (SIGSTOP) during a commit and during
reads, and the cache on a tiny filesystem. Each ends with full recovery and every byte compared.

Uses its own SeaweedFS (module scope), so the shared one keeps running for the other tests."""

import errno
import json
import os
import random
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager, suppress

import pytest

from artifactfs.hashing import CHUNK_SIZE
from tests.fault_util import af, af_at, af_ok, make_src, tally, tree_digests, wait_for, write_files
from tests.fuse_util import Mount
from tests.seaweed import ADMIN, SeaweedServer

NAME = "acme/vision/outage"
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    server = SeaweedServer(str(tmp_path_factory.mktemp("weed-faults")))
    server.start()
    server.create_bucket("faults")
    yield server
    if server.proc is not None:  # a throwaway server: no need for a graceful shutdown
        with suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        server.proc = None


@pytest.fixture
def weed_env(weed, tmp_path):
    return dict(os.environ, ARTIFACTFS_STORE=f"s3://faults/{uuid.uuid4().hex}", AWS_ENDPOINT_URL=weed.endpoint,
                AWS_ACCESS_KEY_ID=ADMIN[0], AWS_SECRET_ACCESS_KEY=ADMIN[1], AWS_DEFAULT_REGION="us-east-1",
                ARTIFACTFS_CACHE_DIR=str(tmp_path / "cache"), ARTIFACTFS_CONFIG=str(tmp_path / "none.toml"),
                ARTIFACTFS_TIMEOUT=str(TIMEOUT))


@contextmanager
def frozen(server: SeaweedServer):
    """SeaweedFS stalled: its processes stopped with SIGSTOP (connections open, no answers)."""
    os.killpg(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.proc.pid, signal.SIGCONT)


def until_ok(fn, timeout=30):
    """The first calls after a restart may still meet SeaweedFS warming up."""
    deadline = time.monotonic() + timeout
    while True:
        res = fn()
        if res.returncode == 0 or time.monotonic() > deadline:
            return res
        time.sleep(0.5)


def check_recovered(env, src, out, versions) -> int:
    listed = json.loads(af_ok(env, "ls", NAME, "--json"))
    assert [v["version"] for v in listed] == versions
    report = json.loads(af_ok(env, "verify", "--all", "--json"))
    assert report["versions"] == len(versions) and not report["problems"]
    af_ok(env, "get", f"{NAME}:latest", "--root", out)
    assert tree_digests(out) == tree_digests(src)
    return sum(os.path.getsize(os.path.join(src, p)) for p in os.listdir(src))


def test_store_stopped_during_commit(weed, weed_env, tmp_path):
    """SeaweedFS stops before the 4th blob or pack upload: the commit fails with one clear line within the timeout
    and leaves no version; once it is back, the same commit completes and the store verifies."""
    src = tmp_path / "src"
    make_src(src, blobs=4)
    marker = str(tmp_path / "paused")
    proc = af_at(weed_env, "blob:4", f"pause:{marker}", "commit", "--dir", src, NAME, wait=False)
    try:
        wait_for(lambda: os.path.exists(marker))
        weed.stop()
        os.unlink(marker)
        start = time.monotonic()
        out, err = proc.communicate(timeout=120)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, (out, err)
    lines = err.strip().splitlines()  # "unreachable", or a 5xx while SeaweedFS shuts down
    assert len(lines) == 1 and lines[0].startswith("artifactfs: error: store s3://") and "Traceback" not in err, err
    assert elapsed < 10 * TIMEOUT, elapsed

    weed.start()
    res = until_ok(lambda: af(weed_env, "commit", "--dir", src, NAME))
    assert res.returncode == 0, res.stderr
    checked = check_recovered(weed_env, src, tmp_path / "out", [0])
    tally("store stopped during commit", faults=1, recoveries=1, bytes_checked=checked)


def test_store_frozen_during_reads(weed, weed_env, tmp_path):
    """A stalled store (SIGSTOP) is a timeout, never a hang: reads of what is not cached fail with EIO
    within a bound, what is cached is still served (paths to a loaded version keep resolving), and the
    mount serves every byte once the store answers again."""
    src = tmp_path / "src"
    rnd = random.Random(8)
    files = {"a.bin": rnd.randbytes(40_000), "b.bin": rnd.randbytes(30_000), "big.bin": rnd.randbytes(2 * CHUNK_SIZE)}
    write_files(src, files)
    af_ok(weed_env, "commit", "--dir", src, NAME)
    m = Mount(tmp_path / "mp", weed_env)
    try:
        root = m.path(f"{NAME}:v0")
        assert open(os.path.join(root, "a.bin"), "rb").read() == files["a.bin"]  # manifest loaded, a.bin cached
        big = open(os.path.join(root, "big.bin"), "rb", buffering=0)
        with frozen(weed):
            start = time.monotonic()
            with pytest.raises(OSError) as exc:
                open(os.path.join(root, "b.bin"), "rb").read()
            assert exc.value.errno == errno.EIO
            with pytest.raises(OSError) as exc:
                os.pread(big.fileno(), 100, CHUNK_SIZE + 5)
            assert exc.value.errno == errno.EIO
            read_elapsed = time.monotonic() - start
            assert open(os.path.join(root, "a.bin"), "rb").read() == files["a.bin"]  # cached: still served
        assert read_elapsed < 2 * (TIMEOUT + 5), read_elapsed
        assert os.path.ismount(m.mountpoint)
        assert os.pread(big.fileno(), 100, CHUNK_SIZE + 5) == files["big.bin"][CHUNK_SIZE + 5:CHUNK_SIZE + 105]
        big.close()
        assert tree_digests(root) == tree_digests(src)
    finally:
        m.close()
    tally("store frozen during reads", faults=2, recoveries=2,
          bytes_checked=sum(map(len, files.values())))


@pytest.fixture
def tiny_fs(tmp_path):
    """A 4 MiB tmpfs, always unmounted."""
    path = tmp_path / "tiny"
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.parametrize("backend", ["local"])  # the cache does not depend on the store
@pytest.mark.parametrize("cache_size", ["10G", "2M"])
def test_cache_on_a_tiny_filesystem(env, tiny_fs, tmp_path, cache_size):
    """8 MB of small files and one 10 MB file through a cache on a 4 MiB disk: every read is right, by
    evicting (10G: the disk fills first, ENOSPC; 2M: the cache's own bound), and nothing is left over."""
    weed_env = env
    src = tmp_path / "src"
    rnd = random.Random(4)
    files = {f"s{i:02d}.bin": rnd.randbytes(400_000) for i in range(20)}
    files["huge.bin"] = rnd.randbytes(CHUNK_SIZE + 2_000_000)  # one chunk is bigger than the whole disk
    write_files(src, files)
    af_ok(weed_env, "commit", "--dir", src, NAME)
    env = dict(weed_env, ARTIFACTFS_CACHE_DIR=str(tiny_fs / "cache"), ARTIFACTFS_CACHE_SIZE=cache_size)
    checked = 0
    for _ in range(2):  # the second mount finds a cache full of the first one's pieces
        m = Mount(tmp_path / "mp", env)
        try:
            root = m.path(f"{NAME}:v0")
            for name in sorted(files):
                with open(os.path.join(root, name), "rb") as f:
                    assert f.read() == files[name], name
                checked += len(files[name])
        finally:
            m.close()
    res = af(env, "get", f"{NAME}:v0", "--root", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert tree_digests(tmp_path / "out") == tree_digests(src)
    checked += sum(map(len, files.values()))
    assert not os.listdir(tiny_fs / "cache" / "tmp")  # no half-written pieces left behind
    tally(f"cache on a 4 MiB disk ({cache_size})", faults=1, recoveries=1, bytes_checked=checked)


@pytest.mark.parametrize("backend", ["local"])
def test_cache_warm_on_a_full_disk_is_one_clear_error(env, tiny_fs, tmp_path):
    """`cache warm` of more than the cache's disk holds: exit 8 naming the cause, not a claim of success;
    what is cached is still whole (nothing half-written)."""
    src = tmp_path / "src"
    rnd = random.Random(5)
    write_files(src, {f"s{i:02d}.bin": rnd.randbytes(900_000) for i in range(10)})
    af_ok(env, "commit", "--dir", src, NAME)
    env = dict(env, ARTIFACTFS_CACHE_DIR=str(tiny_fs / "cache"), ARTIFACTFS_CACHE_SIZE="10G")
    res = af(env, "cache", "warm", NAME)
    assert res.returncode == 8, (res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and "could not be written to the cache" in res.stderr
    assert "No space left on device" in res.stderr and not res.stdout
    assert not os.listdir(tiny_fs / "cache" / "tmp")
    assert af(env, "cache", "verify").returncode == 0  # every piece that is there is whole
