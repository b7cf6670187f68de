"""The mount daemons seen from the CLI: checking a mountpoint, starting a daemon in the background and
waiting until its mount is ready, unmounting, and the daemon's logging. Imports neither pyfuse3 nor
trio, so commands that never mount (`ls`, `show`, `get`...) do not pay for loading them.
"""

import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from ..errors import StoreUnavailable, UsageError

log = logging.getLogger(__name__)


# ---- checks ---------------------------------------------------------------------------------------
def check_mountpoint(mountpoint: str) -> str:
    """Return the absolute mountpoint; UsageError (one line) if it cannot be mounted on. A mount of
    ours left behind by a daemon that died (kill -9) is cleared first."""
    path = os.path.abspath(mountpoint)
    clear_stale_mount(path, mountpoint)
    if os.path.ismount(path):
        raise UsageError(f"mountpoint {mountpoint} is already a mount point (artifactfs umount {mountpoint}?)")
    if not os.path.exists(path):
        raise UsageError(f"mountpoint {mountpoint} does not exist (create an empty directory first)")
    if not os.path.isdir(path):
        raise UsageError(f"mountpoint {mountpoint} is not a directory")
    try:
        if os.listdir(path):
            raise UsageError(f"mountpoint {mountpoint} is not empty")
    except PermissionError:
        raise UsageError(f"mountpoint {mountpoint} is not readable") from None
    if not os.path.exists("/dev/fuse"):
        raise UsageError("/dev/fuse is missing: FUSE is not available on this machine")
    return path


def is_stale_mount(path: str) -> bool:
    """A FUSE mount whose daemon is gone: every request fails with ENOTCONN (`ismount` and `exists`
    say False, which is why it needs asking). statfs, because the kernel answers a stat from cached
    attributes for a while without asking the daemon."""
    try:
        os.statvfs(path)
        return False
    except OSError as exc:
        return exc.errno == errno.ENOTCONN


def clear_stale_mount(path: str, mountpoint: str) -> bool:
    """Unmount `path` if it is a stale mount of artifactfs; True if it was. A stale mount of another
    FUSE file system is left alone, with a line saying what to run."""
    if not is_stale_mount(path):
        return False
    fstype = mount_type(path)
    if fstype != "fuse.artifactfs":
        raise UsageError(f"{mountpoint} is a {fstype or 'FUSE'} mount whose daemon is gone: unmount it with "
                         f"`fusermount3 -uz {mountpoint}`")
    _fusermount(path, mountpoint, lazy=True)
    log.info("cleared the stale mount on %s (its daemon had exited)", path)
    return True


def mount_type(path: str) -> str | None:
    """The type (`fuse.artifactfs`, `ext4`...) of what is mounted exactly at `path`."""
    found = newest_mount(path)
    return found[1] if found else None


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(mountpoint, major:minor, type, source) of each mount, oldest first, from /proc/self/mountinfo:
    no stat, which a stale mount would fail and a daemon must not send to itself."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts, tail = fields.split(), [*rest.split(), ""]  # type, source ("" if none)
        if len(parts) > 4 and tail[0]:
            out.append((parts[4].encode().decode("unicode_escape"), parts[2], tail[0], tail[1]))
    return out


def newest_mount(path: str) -> tuple[str, str] | None:
    """(major:minor, type) of the newest mount exactly at `path` (the last one listed wins)."""
    found = [(dev, kind) for point, dev, kind, _ in _mountinfo() if point == path]
    return found[-1] if found else None


def readonly_fsname(store_url: str) -> str:
    """What a read-only mount of `store_url` is called in /proc/mounts (no commas: they split options)."""
    return "artifactfs:" + store_url.replace(",", "_")


def mounts_of(store_url: str) -> list[str]:
    """The mountpoints of this machine's read-only mounts of `store_url`, oldest first."""
    want = readonly_fsname(store_url)
    return [point for point, _, kind, source in _mountinfo() if kind == "fuse.artifactfs" and source == want]


# ---- background -----------------------------------------------------------------------------------
def start_background(argv: Sequence[str], mountpoint: str, log_file: str, timeout: float = 60.0) -> int:
    """Run `argv` (the same command plus --foreground) detached, logging to `log_file`; wait until the
    mount is ready. Returns the daemon's pid. On failure, raises UsageError/StoreUnavailable with the
    child's own error line (exit code preserved via `exit_code`)."""
    mountpoint = os.path.abspath(mountpoint)
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    with open(log_file, "ab") as log_f:
        start_offset = log_f.tell()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log_f, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            return proc.pid
        code = proc.poll()
        if code is not None:
            message = _child_error(log_file, start_offset) or f"mount daemon exited with code {code}; see {log_file}"
            raise DaemonFailed(message, code or 1)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    raise StoreUnavailable(f"the mount was not ready within {timeout:g}s; see {log_file}")


class DaemonFailed(UsageError):
    """The background daemon exited before its mount was ready; carries the child's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _child_error(log_file: str, offset: int) -> str | None:
    try:
        with open(log_file, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("artifactfs: "):
            return line.split(": ", 2)[-1] if line.startswith("artifactfs: error: ") else line[len("artifactfs: "):]
    return lines[-1] if lines else None


def cli_argv(args: Sequence[str]) -> list[str]:
    """`artifactfs ARGS...` under this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "artifactfs_cli.main", *args]


# ---- unmount --------------------------------------------------------------------------------------
def unmount(mountpoint: str, timeout: float = 30.0) -> None:
    path = os.path.abspath(mountpoint)
    if clear_stale_mount(path, mountpoint):
        return
    if not os.path.ismount(path):
        raise UsageError(f"{mountpoint} is not mounted")
    _fusermount(path, mountpoint, timeout=timeout)
    deadline = time.monotonic() + timeout
    while os.path.ismount(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def _fusermount(path: str, mountpoint: str, lazy: bool = False, timeout: float = 30.0) -> None:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise UsageError("fusermount3 not found (install the fuse3 package)")
    res = subprocess.run([tool, "-uz" if lazy else "-u", path], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 and not lazy:
        log.warning("%s -u %s failed (%s); unmounting lazily", tool, path, res.stderr.strip())
        res = subprocess.run([tool, "-uz", path], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise UsageError(f"cannot unmount {mountpoint}: {res.stderr.strip() or 'fusermount3 failed'}")


def setup_logging(debug: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
