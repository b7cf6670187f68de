"""Mounting through the real CLI in tests, and making sure nothing stays mounted afterwards."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time


def run_cli(args, env, timeout=60, check=False) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "artifactfs_cli.main", *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"artifactfs {args} failed ({res.returncode}): {res.stdout}{res.stderr}")
    return res


def json_results(procs, timeout=120) -> list:
    """Wait for CLI processes started with `--json`; each must succeed. Their parsed outputs, in order."""
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    return results


def _exited(pid: int) -> bool:
    """Gone, or a zombie whose threads have all exited (so its files, /dev/fuse among them, are
    closed): whoever adopted the detached daemon reaps it when it gets to it. A zombie leader alone
    is not enough: its other threads may still be running."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        return zombie and os.listdir(f"/proc/{pid}/task") == [str(pid)]
    except (OSError, IndexError):
        return True


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # reap it if it is our child (it normally is not: the daemon is detached)
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        if _exited(pid):
            return True
        time.sleep(0.05)
    return False


def dead_mount(path: str) -> bool:
    """The daemon died but the kernel mount is still there (statfs, which always reaches the daemon,
    fails with ENOTCONN; a stat may be answered from cached attributes)."""
    try:
        os.statvfs(path)
        return False
    except OSError as exc:
        return exc.errno == 107


class Mount:
    """`artifactfs mount MOUNTPOINT ...` as a background daemon; `close()` always unmounts and stops it."""

    def __init__(self, mountpoint: str, env: dict, *extra):
        self._start(mountpoint, env, ["mount", str(mountpoint), *extra])
        m = re.search(r"\(pid (\d+), log ([^)]+)\)", self.output)
        self.pid, self.log = int(m.group(1)), m.group(2)
        assert os.path.ismount(self.mountpoint)

    def _start(self, mountpoint, env: dict, args: list) -> None:
        self.mountpoint = str(mountpoint)
        if not dead_mount(self.mountpoint):  # a stale mount there is the CLI's to clear
            os.makedirs(self.mountpoint, exist_ok=True)
        self.env = env
        self.pid = None
        res = run_cli(args, env)
        if res.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({res.returncode}): {res.stderr}")
        self.output = res.stdout

    def path(self, *parts) -> str:
        return os.path.join(self.mountpoint, *parts)

    def close(self) -> None:
        if os.path.ismount(self.mountpoint) or dead_mount(self.mountpoint):
            res = subprocess.run(["fusermount3", "-u", self.mountpoint], capture_output=True)
            if res.returncode != 0:
                subprocess.run(["fusermount3", "-uz", self.mountpoint], capture_output=True)
        if self.pid and not wait_gone(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            wait_gone(self.pid)

    def log_text(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()


@contextlib.contextmanager
def mount_factory(cls, env: dict, tmp_path, default_name: str):
    """Yields `make(*args, name=..., **kwargs)`, which starts a `cls` mount in a new directory under
    `tmp_path`; every mount made is unmounted and its daemon stopped at the end, and must be gone."""
    made = []

    def make(*args, name=default_name, **kwargs):
        m = cls(tmp_path / f"{name}{len(made)}", env, *args, **kwargs)
        made.append(m)
        return m

    try:
        yield make
    finally:
        for m in made:
            m.close()
    for m in made:
        assert not os.path.ismount(m.mountpoint)
