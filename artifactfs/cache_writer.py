"""Write-behind for the disk cache (the mount's and artifactfs://'s): a verified piece (or run of
packed files) is handed to the reader at once and written to the PieceCache by a background thread
(temp file + rename, as the PieceCache always does). It stands in for the PieceCache in the Fetcher:
same put/put_run. A writer belongs to the process that made it (a forked child makes its own).

Writing an 8 MiB chunk into the cache costs about as much as downloading it on a busy machine, so
doing it on the read path halved cold sequential throughput. Pending bytes are bounded: past
MAX_PENDING, a piece is simply not cached (a streaming read of a huge file must not run at the speed
of the cache disk; a later read fetches that piece again). A crash loses at most the pending pieces,
which are only cache.

Chunks received into aligned buffers (large pieces from S3, see buffers.py) are written with O_DIRECT,
which costs little CPU: they go to threads at normal priority, so they keep up with the disk instead
of waiting for CPU on a busy machine. Other pieces (buffered writes, a CPU copy each) go to threads
that yield the CPU to serving.
"""

import contextlib
import functools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .buffers import is_aligned
from .cache import PieceCache

log = logging.getLogger(__name__)

MAX_PENDING = 128 * 1024 * 1024


def _lower_priority() -> None:
    """Cache writes yield the CPU to fetching and serving: on a busy machine they fall behind and
    pieces go uncached, instead of reads slowing down. (Linux: nice applies per thread.)"""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class CacheWriter:
    def __init__(self, cache: PieceCache, threads: int = 2, max_pending: int = MAX_PENDING):
        self.cache = cache
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="cache-writer", initializer=_lower_priority)
        self._direct = ThreadPoolExecutor(threads, thread_name_prefix="cache-writer-direct")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self.skipped = 0  # pieces not cached because the writes were too far behind

    def put(self, digest: str, data) -> None:
        self._submit(functools.partial(self.cache.put, digest), data)

    def put_run(self, pack: str, start: int, data) -> None:
        self._submit(functools.partial(self.cache.put_run, pack, start), data)

    def _submit(self, write, data) -> None:
        """Run `write(data)` in the background, unless the writes are too far behind already."""
        with self._lock:
            defer = self._pending + len(data) <= self.max_pending
            if defer:
                self._pending += len(data)
        if not defer:
            self.skipped += 1  # the disk cannot keep up: serve without caching rather than slow the read
            log.debug("cache writes behind by %d bytes: not caching %d more", self._pending, len(data))
            return
        (self._direct if is_aligned(data) else self._pool).submit(self._write, write, data)

    def _write(self, write, data) -> None:
        try:
            write(data)  # the PieceCache logs and swallows its own OSErrors (a full disk)
        except Exception:
            log.exception("cache write failed")
        finally:
            with self._lock:
                self._pending -= len(data)
                if not self._pending:
                    self._idle.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the writes handed over so far are in the cache; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        """Finish pending writes (at unmount)."""
        self._pool.shutdown(wait=True)
        self._direct.shutdown(wait=True)
