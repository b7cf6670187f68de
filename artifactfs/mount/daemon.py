"""Generic wiring for any artifactfs FUSE filesystem inside its daemon: the foreground run loop and
worker threads for blocking calls. (Starting, checking and unmounting daemons from the CLI is
process.py, which imports neither pyfuse3 nor trio.)

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

import faulthandler
import inspect
import logging
import os
import signal
from collections.abc import Callable, Sequence

import pyfuse3
import trio

from ..errors import StoreUnavailable, UsageError
from .process import newest_mount

log = logging.getLogger(__name__)

READ_AHEAD_KB = 1024
MAX_TASKS = 256  # concurrent FUSE requests in flight (pyfuse3 spawns tasks up to this many)


DISK_READS = 16  # reads of the disk cache in flight at once

# ---- worker threads -------------------------------------------------------------------------------
_ABANDON_KW = ("abandon_on_cancel" if "abandon_on_cancel" in inspect.signature(trio.to_thread.run_sync).parameters
               else "cancellable")  # renamed in trio 0.23


async def to_thread(fn: Callable, *args, limiter: trio.CapacityLimiter, abandon: bool = False):
    """trio.to_thread.run_sync; with `abandon`, a cancelled wait leaves the thread to finish alone."""
    # the keyword's name depends on the trio version (see _ABANDON_KW)
    return await trio.to_thread.run_sync(fn, *args, limiter=limiter, **{_ABANDON_KW: abandon})  # type: ignore[arg-type]


class Workers:
    """Named CapacityLimiters for blocking calls: `network` (store I/O) and `cpu` (hashing, big disk reads).

    Create and use inside trio.run. A call with a `timeout` is abandoned (its thread finishes in the
    background, still holding its limiter slot) and StoreUnavailable is raised, so a stalled store
    fails a request within bounded time instead of hanging it.
    """

    def __init__(self, network: int = 32, cpu: int = 4, disk: int = DISK_READS):
        self.network = trio.CapacityLimiter(network)
        self.cpu = trio.CapacityLimiter(cpu)
        self.disk = trio.CapacityLimiter(disk)  # reads of the disk cache: a disk serves many at once

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

    async def disk_call(self, fn: Callable, *args):
        """fn(*args) in a worker thread, for short reads of the local disk cache (a random read's few
        KiB): the thread cache's hop without to_thread's per-call extras (context copy, thread naming,
        its own wrapper), ~35 us less of a ~120 us round trip here. Not cancellable, like to_thread by
        default: the call is a pread of local disk. Under its own limiter, wider than `cpu`: a read
        that waits for the disk holds no CPU, and a disk answers many at once (as 8 readers of a local
        folder keep 8 reads in flight)."""
        async with self.disk:
            task, token = trio.lowlevel.current_task(), trio.lowlevel.current_trio_token()

            def deliver(result) -> None:
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

            trio.lowlevel.start_thread_soon(lambda: fn(*args), deliver)
            return await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)


# ---- foreground -----------------------------------------------------------------------------------
def _bdi_of(mountpoint: str) -> str | None:
    """major:minor of the mount at `mountpoint`, from /proc/self/mountinfo (no stat: see caveats)."""
    found = newest_mount(mountpoint)
    return found[0] if found else None


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
    faulthandler.enable()  # a fatal signal (SIGSEGV, SIGABRT) still leaves its cause in the log
    log.info("mounted %s on %s", fsname, mountpoint)
    try:
        cause = trio.run(_serve, services, mountpoint, on_ready)
    except BaseException as exc:
        # every exit says why in the log; `stage list` and `commit` point at it when a daemon died
        log.critical("daemon exiting on %s: %s", type(exc).__name__, exc,
                     exc_info=not isinstance(exc, KeyboardInterrupt))
        pyfuse3.close(unmount=True)
        raise
    pyfuse3.close(unmount=True)
    log.info("daemon exiting: %s; unmounted %s", cause, mountpoint)


async def _raise_readahead_after_init(mountpoint: str, on_ready: Callable[[], None] | None) -> None:
    """The kernel sets the mount's readahead from the INIT reply, which the loop sends after this task
    starts: so raise it once INIT is through, and check that it stuck. Only then is the mount ready
    (`on_ready`): a file opened before keeps the old readahead for as long as it is open (its READs
    stay at 128 KiB: twice the requests, and an h5py reader fetched 1.7x the bytes)."""
    try:
        stable = 0
        for _ in range(200):
            await trio.sleep(0.025)
            if _read_ahead_kb(mountpoint) == READ_AHEAD_KB:
                stable += 1
                if stable >= 3:
                    log.info("readahead of %s raised to %d KiB", mountpoint, READ_AHEAD_KB)
                    return
            else:
                stable = 0
                if not raise_readahead(mountpoint, quiet=True):
                    return  # not root: FUSE requests stay at 128 KiB
    finally:
        if on_ready:
            on_ready()


def _read_ahead_kb(mountpoint: str) -> int | None:
    dev = _bdi_of(mountpoint)
    try:
        with open(f"/sys/class/bdi/{dev}/read_ahead_kb") as f:
            return int(f.read())
    except (OSError, ValueError, TypeError):
        return None


async def _serve(services, mountpoint: str, on_ready: Callable[[], None] | None = None) -> str:
    """Serve until unmounted or signalled; returns why it stopped."""
    cause = "unmounted from outside (fusermount3 -u, umount or `artifactfs umount`)"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_raise_readahead_after_init, mountpoint, on_ready)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async def stop_on_signal():
                nonlocal cause
                async for sig in signals:
                    cause = f"received {signal.Signals(sig).name}"
                    log.info("%s: unmounting", cause)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            if services:
                services(nursery)
            await pyfuse3.main(min_tasks=4, max_tasks=MAX_TASKS)
            nursery.cancel_scope.cancel()  # main returned: unmounted from outside (fusermount -u)
    return cause
