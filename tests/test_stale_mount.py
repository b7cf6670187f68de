"""After kill -9 of a daemon its mount stays behind (every access: ENOTCONN). `mount` and `stage mount`
at the same path clear it and mount again, `umount` clears it, `commit` of a dead stage says what to run."""

import os
import signal

from tests.fault_util import af, af_ok, one_clear_line, write_files
from tests.fuse_util import Mount, dead_mount, wait_gone
from tests.staging_util import StageMount

NAME = "acme/vision/stale"


def _kill(m) -> None:
    os.kill(m.pid, signal.SIGKILL)
    assert wait_gone(m.pid)
    assert dead_mount(m.mountpoint)


def test_stale_readonly_mount_is_cleared_by_mount_and_umount(env, tmp_path):
    write_files(tmp_path / "src", {"a.txt": b"alpha\n"})
    af_ok(env, "commit", "--dir", tmp_path / "src", NAME)
    m = Mount(tmp_path / "mp", env)
    try:
        _kill(m)
        again = Mount(tmp_path / "mp", env)  # the same path: the stale mount is cleared first
        try:
            with open(again.path(f"{NAME}:v0", "a.txt"), "rb") as f:
                assert f.read() == b"alpha\n"
            _kill(again)
            res = af(env, "umount", again.mountpoint)
            assert res.returncode == 0 and "unmounted" in res.stdout, res.stderr
            assert not dead_mount(again.mountpoint) and not os.path.ismount(again.mountpoint)
            assert os.listdir(again.mountpoint) == []
        finally:
            again.close()
    finally:
        m.close()


def test_stale_stage_mount_is_remounted_and_commit_says_what_to_run(env, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTFS_STAGE_DIR", str(tmp_path / "stages"))
    env = dict(os.environ)
    st = StageMount(tmp_path / "st", env, NAME, "--empty")
    try:
        write_files(st.mountpoint, {"kept.txt": b"kept\n"})
        _kill(st)
        res = af(env, "commit", st.mountpoint)
        one_clear_line(res, 2, "is not running", f"artifactfs stage mount {st.id}")
        again = StageMount(tmp_path / "st", env, remount_id=st.id)
        try:
            assert open(again.path("kept.txt"), "rb").read() == b"kept\n"
            af_ok(env, "commit", again.mountpoint)
        finally:
            again.close()
    finally:
        st.close()
    af_ok(env, "get", f"{NAME}:v0", "--root", tmp_path / "out")
    assert (tmp_path / "out" / "kept.txt").read_bytes() == b"kept\n"
