"""Durability and commit of staging mounts: kill -9 while writing and while committing, concurrent
commits of two stages, a moved base, a full disk. Both backends."""

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from artifactfs import layout
from tests.fault_util import af_at
from tests.fuse_util import run_cli, wait_gone
from tests.staging_util import files_only, snapshot
from tests.test_staging_ops import NAME, base  # noqa: F401 (a fixture)

FROZEN = "user.artifactfs.frozen"


def write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def versions(env) -> list[str]:
    out = run_cli(["ls", NAME], env, check=True).stdout
    return [line.split("\t")[0] for line in out.splitlines()[1:]]  # below the header


def check_versions_complete(client):
    """Every visible version names only objects that exist: nothing partial is ever visible."""
    name = client.artifact_name(NAME)
    for v in client.repo.list_versions(name):
        record = client.repo.version(name, v)
        manifest = client.repo.manifest(record.manifest)
        for e in manifest:
            assert client.store.exists(layout.content_key(e)), (v, e.path)


def downloaded(env, ref: str, root) -> dict:
    """The files of `ref` as `artifactfs get` writes them, snapshotted."""
    run_cli(["get", ref, "--root", root], env, check=True)
    return files_only(snapshot(root))


def many_files(root, n=150, size=32 * 1024, tag=b"") -> None:
    for i in range(n):
        write(os.path.join(root, "many", f"f{i:04d}.bin"), tag + os.urandom(size))


def start_commit(env, mountpoint) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "artifactfs_cli.main", "commit", str(mountpoint)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_frozen(mountpoint, proc, want=b"1", timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.getxattr(mountpoint, FROZEN) == want:
            return True
        if proc is not None and proc.poll() is not None:
            return False
    return False


def test_kill9_while_writing_loses_nothing_closed(stage_env, base, stages, tmp_path, client):  # noqa: F811
    st = stages(NAME)
    closed = {}
    for i in range(50):
        closed[f"w/file{i}.bin"] = os.urandom(10_000 + i)
        write(st.path(f"w/file{i}.bin"), closed[f"w/file{i}.bin"])
    for i in range(50):  # rewritten: the journal grows past the tree, so the remount compacts it
        closed[f"w/file{i}.bin"] = closed[f"w/file{i}.bin"][::-1]
        write(st.path(f"w/file{i}.bin"), closed[f"w/file{i}.bin"])
    os.rename(st.path("images"), st.path("pics"))
    os.unlink(st.path("a.txt"))
    with open(st.path("big.bin"), "r+b") as f:
        f.seek(123)
        f.write(b"Q" * 1000)
    expected = snapshot(st.mountpoint)
    pending = open(st.path("w/unclosed.bin"), "wb")  # being written when the daemon dies
    pending.write(os.urandom(100_000))
    pending.flush()
    st.kill9()
    with contextlib.suppress(OSError):
        pending.close()

    res = run_cli(["commit", st.mountpoint], stage_env)
    assert res.returncode == 2 and "is not running" in res.stderr and f"stage mount {st.id}" in res.stderr
    again = stages(remount_id=st.id)
    got = snapshot(again.mountpoint)
    got.pop("w/unclosed.bin", None)  # never closed: may or may not be there
    assert got == expected
    assert "compacted" in again.log_text()
    res = run_cli(["commit", again.mountpoint], stage_env)
    assert res.returncode == 0, res.stderr
    check_versions_complete(client)


def test_commit_from_the_journal_when_the_daemon_died(stage_env, base, stages, tmp_path, client):  # noqa: F811
    st = stages(NAME)
    write(st.path("new/x.txt"), b"x" * 5000)
    expected = files_only(snapshot(st.mountpoint))
    st.kill9()
    res = run_cli(["commit", "--stage", st.id, "-m", "recovered"], stage_env)
    assert res.returncode == 0, res.stderr
    assert f"{NAME}:v1 committed" in res.stdout
    assert downloaded(stage_env, f"{NAME}:v1", tmp_path / "out") == expected


def test_kill9_of_the_daemon_during_a_commit(stage_env, base, stages, tmp_path, client):  # noqa: F811
    st = stages(NAME)
    many_files(st.mountpoint)
    expected = files_only(snapshot(st.mountpoint))
    proc = start_commit(stage_env, st.mountpoint)
    try:
        assert wait_frozen(st.mountpoint, proc), proc.communicate()
        os.kill(st.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(st.pid)
    assert proc.returncode in (0, 2), err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1
    check_versions_complete(client)
    subprocess.run(["fusermount3", "-uz", st.mountpoint], capture_output=True)
    again = stages(remount_id=st.id)
    assert files_only(snapshot(again.mountpoint)) == expected
    res = run_cli(["commit", again.mountpoint], stage_env)
    assert res.returncode == 0, res.stderr
    assert versions(stage_env) == ["v0", "v1"]  # the interrupted commit made v1 or nothing, never a torn one
    assert downloaded(stage_env, f"{NAME}:v1", tmp_path / "out") == expected


def test_kill9_of_the_commit_process_thaws_the_stage(stage_env, base, stages, tmp_path, client):  # noqa: F811
    st = stages(NAME)
    many_files(st.mountpoint)
    expected = files_only(snapshot(st.mountpoint))
    proc = start_commit(stage_env, st.mountpoint)
    try:
        assert wait_frozen(st.mountpoint, proc), proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_frozen(st.mountpoint, None, want=b"0", timeout=10)  # the daemon noticed and thawed
    write(st.path("after.txt"), b"writes work again")
    check_versions_complete(client)
    assert versions(stage_env) in (["v0"], ["v0", "v1"])
    res = run_cli(["commit", st.mountpoint], stage_env)
    assert res.returncode == 0, res.stderr
    expected["after.txt"] = files_only(snapshot(st.mountpoint))["after.txt"]
    final = versions(stage_env)[-1]
    assert downloaded(stage_env, f"{NAME}:{final}", tmp_path / "out") == expected
    check_versions_complete(client)


def test_two_stages_committing_at_once_give_two_versions(stage_env, base, stages, tmp_path):  # noqa: F811
    a, b = stages(NAME, name="a"), stages(NAME, name="b")
    write(a.path("from-a.txt"), b"a" * 3000)
    write(b.path("from-b.txt"), b"b" * 3000)
    os.unlink(b.path("a.txt"))
    expect = {"a": files_only(snapshot(a.mountpoint)), "b": files_only(snapshot(b.mountpoint))}
    procs = [start_commit(stage_env, m.mountpoint) for m in (a, b)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert versions(stage_env) == ["v0", "v1", "v2"]
    got = {}
    for v in ("v1", "v2"):
        out = tmp_path / f"out-{v}"
        run_cli(["get", f"{NAME}:{v}", "--root", out], stage_env, check=True)
        snap = files_only(snapshot(out))
        got["a" if "from-a.txt" in snap else "b"] = snap
    assert got == expect


def test_latest_moved_since_the_base(stage_env, base, stages):  # noqa: F811
    a, b = stages(NAME, name="a"), stages(NAME, name="b")
    write(a.path("a2.txt"), b"a2")
    write(b.path("b2.txt"), b"b2")
    assert run_cli(["commit", a.mountpoint], stage_env).returncode == 0
    res = run_cli(["commit", b.mountpoint, "--require-base"], stage_env)
    assert res.returncode == 4 and "latest is v1" in res.stderr and "started from v0" in res.stderr
    assert versions(stage_env) == ["v0", "v1"]
    assert os.getxattr(b.mountpoint, FROZEN) == b"0"
    write(b.path("b3.txt"), b"b3")  # the failed commit left the stage writable
    res = run_cli(["commit", b.mountpoint], stage_env)
    assert res.returncode == 0, res.stderr
    assert "v2 supersedes v1, whose changes are not in it" in res.stdout and f"{NAME}:v2 committed" in res.stdout
    assert "a2.txt" not in os.listdir(b.mountpoint)  # the stage's content, not a merge


@pytest.mark.parametrize("require_base", [True, False])
def test_require_base_holds_when_another_commit_lands_during_the_upload(stage_env, base, stages, tmp_path,  # noqa: F811
                                                                        require_base):
    """A's commit is paused in its upload while B commits v1: with --require-base A then fails (exit 4)
    and records nothing; without it A's version says which version it supersedes."""
    a, b = stages(NAME, name="a"), stages(NAME, name="b")
    write(a.path("big.bin"), os.urandom(3 * 1024 * 1024))  # a blob upload: the pause point
    write(b.path("b.txt"), b"from b")
    marker = tmp_path / "paused"
    args = ["commit", a.mountpoint, *(["--require-base"] if require_base else [])]
    proc = af_at(stage_env, "blob:1", f"pause:{marker}", *args, wait=False)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        res = run_cli(["commit", b.mountpoint], stage_env)
        assert res.returncode == 0 and f"{NAME}:v1 committed" in res.stdout, res.stderr
    finally:
        marker.unlink(missing_ok=True)
    out, err = proc.communicate(timeout=120)
    if require_base:
        assert proc.returncode == 4, out + err
        assert err.count("\n") == 1 and "started from v0 (--require-base); nothing was committed" in err, err
        assert versions(stage_env) == ["v0", "v1"]
        assert os.getxattr(a.mountpoint, FROZEN) == b"0"
    else:
        assert proc.returncode == 0, err
        assert f"{NAME}:v2 committed" in out and "v2 supersedes v1, whose changes are not in it" in out, out
        assert "b.txt" not in run_cli(["files", f"{NAME}:v2"], stage_env, check=True).stdout


@pytest.fixture
def small_stage(stage_env, base, tmp_path):  # noqa: F811
    """A staging mount whose stage directory is a 2 MiB tmpfs, and its environment."""
    from tests.staging_util import StageMount

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    st = None
    try:
        env = {**stage_env, "ARTIFACTFS_STAGE_DIR": str(small / "stages")}
        st = StageMount(tmp_path / "mp", env, NAME)
        yield st, env
    finally:
        if st is not None:
            st.close()
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.parametrize("backend", ["local"])
def test_full_disk_is_enospc_and_the_stage_survives(small_stage):
    st, env = small_stage
    write(st.path("ok.txt"), b"fits")
    with pytest.raises(OSError) as info:
        write(st.path("huge.bin"), os.urandom(4 * 1024 * 1024))
    assert info.value.errno == errno.ENOSPC
    assert open(st.path("ok.txt"), "rb").read() == b"fits"
    if os.path.exists(st.path("huge.bin")):
        os.unlink(st.path("huge.bin"))
    deadline = time.monotonic() + 5  # the removed file's space returns at the next grouped sync
    while True:
        try:
            write(st.path("after.txt"), b"space again")
            break
        except OSError as exc:
            if exc.errno != errno.ENOSPC or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    res = run_cli(["commit", st.mountpoint], env)
    assert res.returncode == 0, res.stderr
    assert "ok.txt" in run_cli(["files", f"{NAME}:v1"], env, check=True).stdout


@pytest.mark.parametrize("backend", ["local"])
def test_a_stage_full_after_enospc_commits_what_it_shows(small_stage, tmp_path):
    """The writer gets ENOSPC on a full stage directory; the commit that follows, with no remount and
    nothing removed, takes the files as the stage shows them (the partly written one at the size a
    stat gives, its bytes as a read gives them)."""
    st, env = small_stage
    with pytest.raises(OSError) as info, open(st.path("huge.bin"), "wb") as f:
        for _ in range(64):
            f.write(os.urandom(64 * 1024))
            f.flush()
    assert info.value.errno == errno.ENOSPC
    shown = open(st.path("huge.bin"), "rb").read()
    assert len(shown) == os.stat(st.path("huge.bin")).st_size
    res = run_cli(["commit", st.mountpoint], env)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    run_cli(["get", f"{NAME}:v1", "--root", out, "--prefix", "huge.bin"], env, check=True)
    assert (out / "huge.bin").read_bytes() == shown


def test_stage_commit_records_lineage(stage_env, base, stages):  # noqa: F811
    stage = stages(NAME)
    write(stage.path("model.bin"), b"weights")
    res = run_cli(["commit", stage.mountpoint, "--run", "train-7", "--input", f"{NAME}:v0"], stage_env)
    assert res.returncode == 0, res.stderr
    out = run_cli(["lineage", f"{NAME}:v1", "--json"], stage_env, check=True).stdout
    assert "train-7" in out and f"{NAME}:v0" in out


@pytest.mark.parametrize("backend", ["local"])
def test_every_daemon_exit_says_why_and_a_dead_daemon_is_named(stage_env, base, stages):  # noqa: F811
    """A clean unmount and SIGTERM are logged with their cause; a daemon killed outright is named in one
    line by `stage list` and by `commit`, with its log."""
    quiet, termed, killed = stages(NAME, name="q"), stages(NAME, name="t"), stages(NAME, name="k")
    subprocess.run(["fusermount3", "-u", quiet.mountpoint], check=True)
    assert wait_gone(quiet.pid)
    assert "daemon exiting: unmounted from outside" in quiet.log_text()
    os.kill(termed.pid, signal.SIGTERM)
    assert wait_gone(termed.pid)
    assert "daemon exiting: received SIGTERM" in termed.log_text()
    killed.kill9()
    listed = run_cli(["stage", "list"], stage_env, check=True).stdout.splitlines()
    row = [line for line in listed if line.startswith(killed.id)]
    assert len(row) == 1 and f"daemon died (see {killed.log})" in row[0], listed
    assert all("died" not in line for line in listed if not line.startswith(killed.id))
    res = run_cli(["commit", killed.mountpoint], stage_env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"pid {killed.pid}) is not running: it died without saving the stage" in res.stderr
    assert killed.log in res.stderr
    assert f"commit --stage {killed.id}" in res.stderr
