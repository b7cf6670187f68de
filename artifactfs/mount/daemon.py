"""Generic wiring for any artifactfs FUSE filesystem: mountpoint checks, the foreground run loop,
the background daemon the CLI starts, unmounting, and worker threads for blocking calls.

Nothing here knows what the filesystem shows; it takes a `pyfuse3.Operations` and runs it.

Caveats:
- pyfuse3 serves every request on the one trio thread. Anything blocking (store calls, big disk reads,
  hashing) must go through `Workers` (trio.to_thread under a CapacityLimiter), never run inline.
- `-o max_read=` breaks pyfuse3's init (pyfuse3#49); request size is steered by raising the mount's
  readahead in /sys/class/bdi instead (1 MiB requests instead of 128 KiB), which needs root.
- The major:minor for that is read from /proc/self/mountinfo, never by stat()ing the mountpoint from
  inside the daemon: that would send a request to ourselves before the loop serves it (deadlock).
- SIGTERM/SIGINT cancel the trio run; the mount is then unmounted by `pyfuse3.close(unmount=True)`.
"""

import inspect
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Sequence

import pyfuse3
import trio

from ..errors import StoreUnavailable, UsageError

log = logging.getLogger(__name__)

READ_AHEAD_KB = 1024
MAX_TASKS = 256  # concurrent FUSE requests in flight (pyfuse3 spawns tasks up to this many)


# ---- checks ---------------------------------------------------------------------------------------
def check_mountpoint(mountpoint: str) -> str:
    """Return the absolute mountpoint; UsageError (one line) if it cannot be mounted on."""
    path = os.path.abspath(mountpoint)
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


# ---- worker threads -------------------------------------------------------------------------------
_ABANDON_KW = ("abandon_on_cancel" if "abandon_on_cancel" in inspect.signature(trio.to_thread.run_sync).parameters
               else "cancellable")  # renamed in trio 0.23


async def to_thread(fn: Callable, *args, limiter: trio.CapacityLimiter, abandon: bool = False):
    """trio.to_thread.run_sync; with `abandon`, a cancelled wait leaves the thread to finish alone."""
    return await trio.to_thread.run_sync(fn, *args, limiter=limiter, **{_ABANDON_KW: abandon})


class Workers:
    """Named CapacityLimiters for blocking calls: `network` (store I/O) and `cpu` (hashing, big disk reads).

    Create and use inside trio.run. A call with a `timeout` is abandoned (its thread finishes in the
    background, still holding its limiter slot) and StoreUnavailable is raised, so a stalled store
    fails a request within bounded time instead of hanging it.
    """

    def __init__(self, network: int = 32, cpu: int = 4):
        self.network = trio.CapacityLimiter(network)
        self.cpu = trio.CapacityLimiter(cpu)

    async def run(self, limiter: trio.CapacityLimiter, fn: Callable, *args, timeout: float | None = None):
        if timeout is None:
            return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
        with trio.move_on_after(timeout):
            return await to_thread(fn, *args, limiter=limiter, abandon=True)
        raise StoreUnavailable(f"store did not answer within {timeout:g}s")

    async def net(self, fn: Callable, *args, timeout: float | None = None):
        return await self.run(self.network, fn, *args, timeout=timeout)

    async def cpu_call(self, fn: Callable, *args, timeout: float | None = None):
        return await self.run(self.cpu, fn, *args, timeout=timeout)


# ---- foreground -----------------------------------------------------------------------------------
def _bdi_of(mountpoint: str) -> str | None:
    """major:minor of the mount at `mountpoint`, from /proc/self/mountinfo (no stat: see caveats)."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[4].encode().decode("unicode_escape") == mountpoint:
            found = fields[2]  # the last one wins: the newest mount on that path
    return found


def raise_readahead(mountpoint: str, kb: int = READ_AHEAD_KB, quiet: bool = False) -> bool:
    dev = _bdi_of(mountpoint)
    if dev is None:
        return False
    path = f"/sys/class/bdi/{dev}/read_ahead_kb"
    try:
        with open(path, "w") as f:
            f.write(str(kb))
        if not quiet:
            log.info("readahead of %s raised to %d KiB", mountpoint, kb)
        return True
    except OSError as exc:
        log.info("cannot raise readahead (%s): %s; FUSE reads stay at 128 KiB", path, exc)
        return False


def run_foreground(ops: pyfuse3.Operations, mountpoint: str, *, fsname: str, subtype: str,
                   allow_other: bool = False, read_only: bool = False, debug: bool = False,
                   extra_options: Sequence[str] = (), on_ready: Callable[[], None] | None = None,
                   services: Callable[[trio.Nursery], None] | None = None) -> None:
    """Mount `ops` on `mountpoint` and serve until unmounted or SIGTERM/SIGINT.

    `services(nursery)` may start background tasks (e.g. cache upkeep) beside the FUSE loop.
    """
    mountpoint = os.path.abspath(mountpoint)
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")
    options |= {f"fsname={fsname}", f"subtype={subtype}", "default_permissions", *extra_options}
    if allow_other:
        options.add("allow_other")
    if read_only:
        options.add("ro")
    if debug:
        options.add("debug")
    try:
        pyfuse3.init(ops, mountpoint, options)
    except RuntimeError as exc:
        raise UsageError(f"cannot mount on {mountpoint}: {exc}") from None
    if on_ready:
        on_ready()
    log.info("mounted %s on %s", fsname, mountpoint)
    try:
        trio.run(_serve, services, mountpoint)
    except BaseException:
        pyfuse3.close(unmount=True)
        raise
    pyfuse3.close(unmount=True)
    log.info("unmounted %s", mountpoint)


async def _raise_readahead_after_init(mountpoint: str) -> None:
    """The kernel sets the mount's readahead from the INIT reply, which the loop sends after this task
    starts: so raise it once INIT is through, and check that it stuck."""
    stable = 0
    for _ in range(100):
        await trio.sleep(0.05)
        if _read_ahead_kb(mountpoint) == READ_AHEAD_KB:
            stable += 1
            if stable >= 4:
                log.info("readahead of %s raised to %d KiB", mountpoint, READ_AHEAD_KB)
                return
        else:
            stable = 0
            if not raise_readahead(mountpoint, quiet=True):
                return  # not root: FUSE requests stay at 128 KiB


def _read_ahead_kb(mountpoint: str) -> int | None:
    dev = _bdi_of(mountpoint)
    try:
        with open(f"/sys/class/bdi/{dev}/read_ahead_kb") as f:
            return int(f.read())
    except (OSError, ValueError, TypeError):
        return None


async def _serve(services, mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_raise_readahead_after_init, mountpoint)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async def stop_on_signal():
                async for sig in signals:
                    log.info("received %s: unmounting", signal.Signals(sig).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            if services:
                services(nursery)
            await pyfuse3.main(min_tasks=4, max_tasks=MAX_TASKS)
            nursery.cancel_scope.cancel()  # main returned: unmounted from outside (fusermount -u)


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
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
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
    if not os.path.ismount(path):
        raise UsageError(f"{mountpoint} is not mounted")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise UsageError("fusermount3 not found (install the fuse3 package)")
    res = subprocess.run([tool, "-u", path], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        log.warning("%s -u %s failed (%s); unmounting lazily", tool, path, res.stderr.strip())
        res = subprocess.run([tool, "-uz", path], capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise UsageError(f"cannot unmount {mountpoint}: {res.stderr.strip() or 'fusermount3 failed'}")
    deadline = time.monotonic() + timeout
    while os.path.ismount(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def setup_logging(debug: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
