"""The local content-addressed cache of verified pieces: whole small files and chunks of large ones.

Layout: `<cache_dir>/pieces/<first two hex>/<xxh3-128 of the content>`. Each piece is written to a temp
file, then renamed, so a reader sees a whole piece or none. A piece is re-verified the first time this
process reads it, so a piece damaged on disk (or half-written before a crash) is dropped and fetched
again, never served. Eviction is LRU by mtime between a high and a low watermark and skips pinned
pieces; an evicted piece that a reader already opened stays readable (POSIX unlink semantics).
Thread-safe; shared by mounts and `get` in any number of processes.

A piece handed over in a page-aligned buffer (buffers.py; the mount's ranged GETs are) is written with
O_DIRECT: the disk takes it from that buffer, instead of the CPU copying it into fresh page-cache pages
(on a 2-core machine that copy cost as much CPU as receiving the piece). With a BufferPool attached
(`buffers`), large pieces are also read back with O_DIRECT into its buffers. Filesystems without
O_DIRECT (tmpfs) get ordinary reads and writes.
"""

import errno
import fcntl
import logging
import os
import shutil
import threading
import time

from .buffers import ALIGN, is_aligned
from .hashing import digest_bytes

log = logging.getLogger(__name__)

LOW_WATERMARK = 0.9
_TOUCH_INTERVAL = 60.0  # refresh a piece's mtime (its LRU stamp) at most this often


class PieceCache:
    def __init__(self, cache_dir: str, max_bytes: int):
        self.dir = os.path.abspath(cache_dir)
        self.pieces_dir = os.path.join(self.dir, "pieces")
        self.tmp_dir = os.path.join(self.dir, "tmp")
        self.max_bytes = max_bytes
        for d in (self.dir, self.pieces_dir, self.tmp_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self._lock = threading.Lock()
        self._verified: set[str] = set()
        self._touched: dict[str, float] = {}
        self._pins: dict[str, int] = {}
        self.buffers = None  # a buffers.BufferPool: large pieces are read into its buffers (O_DIRECT)
        self._size = self._scan_size()
        self._clear_stale_temps()

    def path(self, digest: str) -> str:
        return os.path.join(self.pieces_dir, digest[:2], digest)

    # ---- read / write --------------------------------------------------------------------------
    def get(self, digest: str) -> bytes | None:
        """The verified piece, or None if absent or damaged (a damaged one is removed)."""
        path = self.path(digest)
        try:
            data = self._read(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cache: cannot read %s: %s", path, exc)
            return None
        if digest not in self._verified:
            if digest_bytes(data) != digest:
                log.warning("cache: piece %s is damaged on disk; dropping it and refetching", digest)
                self._remove(path)
                return None
            self._verified.add(digest)
        self._touch(digest, path)
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Store a piece the caller has verified. Errors (a full disk) are logged, not raised."""
        path = self.path(digest)
        tmp = os.path.join(self.tmp_dir, f"{digest}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            _write_file(tmp, data)
            os.rename(tmp, path)
        except OSError as exc:
            self._remove(tmp)
            log.warning("cache: cannot store piece %s: %s", digest, exc)
            self.evict(force=True)
            return
        with self._lock:
            self._verified.add(digest)
            self._size += len(data)
            over = self._size > self.max_bytes
        if over:
            self.evict()

    def _read(self, path: str):
        pool = self.buffers
        if pool is None:
            with open(path, "rb") as f:
                return f.read()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < pool.min_size:
                return os.pread(fd, size, 0) if size else b""
            # O_DIRECT reads whole blocks: ask for the size rounded up, EOF makes the last one short
            buf = pool.take(-(-size // ALIGN) * ALIGN)
            got = 0
            direct = _set_direct(fd, True)
            while got < size:
                try:
                    n = os.preadv(fd, [buf[got:]], got)
                except OSError as exc:
                    if not direct or exc.errno != errno.EINVAL:
                        raise
                    direct = not _set_direct(fd, False)  # O_DIRECT refused after all: read normally
                    continue
                if not n:
                    break  # shorter than it was a moment ago: the digest check drops it
                got += n
            return buf[:got]
        finally:
            os.close(fd)

    def pin(self, digest: str) -> None:
        with self._lock:
            self._pins[digest] = self._pins.get(digest, 0) + 1

    def unpin(self, digest: str) -> None:
        with self._lock:
            n = self._pins.get(digest, 0) - 1
            if n > 0:
                self._pins[digest] = n
            else:
                self._pins.pop(digest, None)

    def _touch(self, digest: str, path: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(digest, -_TOUCH_INTERVAL) >= _TOUCH_INTERVAL:
            self._touched[digest] = now
            try:
                os.utime(path)
            except OSError:
                pass

    # ---- size and eviction ---------------------------------------------------------------------
    def _entries(self):
        for sub in os.scandir(self.pieces_dir):
            if sub.is_dir(follow_symlinks=False):
                for entry in os.scandir(sub.path):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    yield entry.name, entry.path, st

    def _scan_size(self) -> int:
        return sum(st.st_size for _, _, st in self._entries())

    def _clear_stale_temps(self) -> None:
        cutoff = time.time() - 3600
        for entry in os.scandir(self.tmp_dir):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass

    def evict(self, force: bool = False) -> int:
        """Remove least recently used pieces until below the low watermark; returns bytes freed.

        Re-scans the disk, so pieces written by other processes count too. `force` frees a tenth of
        the cache even if under the limit (after a write failed for lack of space).
        """
        entries = sorted(self._entries(), key=lambda e: e[2].st_mtime)
        total = sum(st.st_size for _, _, st in entries)
        target = int(self.max_bytes * LOW_WATERMARK)
        if force:
            target = min(target, int(total * LOW_WATERMARK))
        freed = 0
        with self._lock:
            pins = set(self._pins)
        for name, path, st in entries:
            if total - freed <= target:
                break
            if name in pins:
                continue
            if self._remove(path):
                freed += st.st_size
        with self._lock:
            self._size = total - freed
        return freed

    def _remove(self, path: str) -> bool:
        try:
            os.unlink(path)
        except OSError:
            return False
        digest = os.path.basename(path)
        self._verified.discard(digest)
        self._touched.pop(digest, None)
        return True

    # ---- maintenance -----------------------------------------------------------------------------
    def info(self) -> dict:
        entries = list(self._entries())
        return {"dir": self.dir, "pieces": len(entries), "bytes": sum(st.st_size for _, _, st in entries),
                "max_bytes": self.max_bytes}

    def clean(self) -> int:
        freed = 0
        for _, path, st in list(self._entries()):
            if self._remove(path):
                freed += st.st_size
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        with self._lock:
            self._size = 0
        return freed

    def verify(self) -> tuple[int, list[str]]:
        """Re-hash every piece; damaged ones are removed. Returns (pieces checked, damaged digests)."""
        checked, damaged = 0, []
        for name, path, _ in list(self._entries()):
            try:
                with open(path, "rb") as f:
                    ok = digest_bytes(f.read()) == name
            except OSError:
                continue
            checked += 1
            if not ok:
                damaged.append(name)
                self._remove(path)
        return checked, damaged


def _set_direct(fd: int, on: bool) -> bool:
    """Switch O_DIRECT on or off for an open file; False where the filesystem refuses it."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
        return True
    except OSError:
        return False


def _write_file(path: str, data) -> None:
    """Write `data` as the new file `path`: its aligned part with O_DIRECT when the buffer allows it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        done = 0
        head = len(view) - len(view) % ALIGN
        if head and is_aligned(data) and _set_direct(fd, True):
            try:
                done = _write_all(fd, view[:head], 0)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: no O_DIRECT here after all; write it normally
                    raise
            _set_direct(fd, False)
        _write_all(fd, view[done:], done)
    finally:
        os.close(fd)


def _write_all(fd: int, view: memoryview, offset: int) -> int:
    """pwrite all of `view` at `offset`; returns where the file now ends."""
    while len(view):
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
    return offset
