"""The local content-addressed cache of verified pieces: whole small files and chunks of large ones.

Layout: `<cache_dir>/pieces/<first two hex>/<xxh3-128 of the content>` for whole files and chunks, and
`<cache_dir>/runs/<first two hex>/<pack digest>/<start>-<end>-<xxh3-128 of the run>` for runs of files
of a pack, cached as fetched: one ranged GET of back-to-back small files becomes one cache file, not one
per file (5,000 small files cost 5,000 creates, renames and page-cache fills otherwise, which halved
cold small-file reads on 2 cores). A packed file is read from any cached run that covers its bytes and
checked against its digest on every read. Each file is written to a temp file, then renamed, so a
reader sees a whole piece or none. A piece is re-verified the first time this
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


def manifests_dir(cache_dir: str) -> str:
    """Where the Repository keeps its local manifest cache: inside the cache, under the same bound."""
    return os.path.join(os.path.abspath(cache_dir), "manifests")


class PieceCache:
    def __init__(self, cache_dir: str, max_bytes: int):
        self.dir = os.path.abspath(cache_dir)
        self.pieces_dir = os.path.join(self.dir, "pieces")
        self.runs_dir = os.path.join(self.dir, "runs")
        self.manifests_dir = manifests_dir(self.dir)
        self.tmp_dir = os.path.join(self.dir, "tmp")
        self.max_bytes = max_bytes
        for d in (self.dir, self.pieces_dir, self.runs_dir, self.tmp_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self._lock = threading.Lock()
        self._verified: set[str] = set()
        self._touched: dict[str, float] = {}
        self._pins: dict[str, int] = {}
        self.buffers = None  # a buffers.BufferPool: large pieces are read into its buffers (O_DIRECT)
        self.write_failures = 0  # pieces and runs that could not be stored (a full disk), and the last reason
        self.last_write_error = ""
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
        if self._install(self.path(digest), data):
            with self._lock:
                self._verified.add(digest)

    # ---- runs of packed files ------------------------------------------------------------------
    def run_dir(self, pack: str) -> str:
        return os.path.join(self.runs_dir, pack[:2], pack)

    def get_packed(self, pack: str, files: list[tuple[int, int, str]]) -> list[bytes | None]:
        """The bytes of files of pack `pack`, each given as (offset in the pack, size, digest), from
        cached runs; None for a file no run covers. Each file is checked against its digest: a run
        that fails the check is damaged, removed, and its files read as not cached."""
        runs = self._runs_of(pack)
        out: list[bytes | None] = []
        for start, length, digest in files:
            data = None
            for lo, path in _covering(runs, start, length):
                data = self._read_run(path, start - lo, length, digest)
                if data is not None:
                    break
            out.append(data)
        return out

    def holds(self, digest: str) -> bool:
        """Whether the piece is cached (not re-verified here: its first read does that); a held piece
        is marked recently used, so eviction keeps it longer."""
        path = self.path(digest)
        if not os.path.exists(path):
            return False
        self._touch(digest, path)
        return True

    def holds_packed(self, pack: str, files: list[tuple[int, int]]) -> list[bool]:
        """For each (offset in the pack, size) of a file of pack `pack`, whether a cached run covers it
        (one listing of the pack's runs for all of them); the runs that do are marked recently used."""
        runs = self._runs_of(pack)
        out = []
        for start, length in files:
            run = next(_covering(runs, start, length), None)
            if run is not None:
                self._touch(run[1], run[1])
            out.append(run is not None)
        return out

    def put_run(self, pack: str, start: int, data) -> None:
        """Store bytes [start, start + len(data)) of pack `pack` (the caller verified the files in it)."""
        name = f"{start}-{start + len(data)}-{digest_bytes(data)}"
        self._install(os.path.join(self.run_dir(pack), name), data)

    def _runs_of(self, pack: str) -> list[tuple[int, int, str]]:
        d = self.run_dir(pack)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        runs = []
        for name in names:
            lo, _, rest = name.partition("-")
            hi, _, _ = rest.partition("-")
            if lo.isdigit() and hi.isdigit():
                runs.append((int(lo), int(hi), os.path.join(d, name)))
        return runs

    def _read_run(self, path: str, offset: int, length: int, digest: str) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # evicted meanwhile
            return None
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            log.warning("cache: cannot read %s: %s", path, exc)
            return None
        finally:
            os.close(fd)
        if len(data) != length or digest_bytes(data) != digest:
            log.warning("cache: run %s is damaged on disk; dropping it and refetching", path)
            self._remove(path)
            return None
        self._touch(path, path)
        return data

    def _install(self, path: str, data) -> bool:
        """Write `data` as the cache file `path` (temp + rename) and account for it; False on an
        OSError (a full disk: logged, and a tenth of the cache freed)."""
        tmp = os.path.join(self.tmp_dir, f"{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            _write_file(tmp, data)
            os.rename(tmp, path)
        except OSError as exc:
            self._remove(tmp)
            log.warning("cache: cannot store %s: %s", os.path.relpath(path, self.dir), exc)
            with self._lock:
                self.write_failures += 1
                self.last_write_error = exc.strerror or str(exc)
            self.evict(force=True)
            return False
        with self._lock:
            self._size += len(data)
            over = self._size > self.max_bytes
        if over:
            self.evict()
        return True

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

    def _touch(self, name: str, path: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(name, -_TOUCH_INTERVAL) >= _TOUCH_INTERVAL:
            self._touched[name] = now
            try:
                os.utime(path)
            except OSError:
                pass

    # ---- size and eviction ---------------------------------------------------------------------
    def _entries(self):
        """(name, path, stat) of every cached file: pieces, then runs, then manifests (whose columnar
        forms the Repository keeps beside them: they count against the same bound and are evicted by
        the same LRU, being a cache too)."""
        yield from self._piece_entries()
        yield from self._manifest_entries()

    def _piece_entries(self):
        yield from _files_at_depth(self.pieces_dir, 2)
        yield from _files_at_depth(self.runs_dir, 3)

    def _manifest_entries(self):
        return _files_at_depth(self.manifests_dir, 2)

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
        name = os.path.basename(path)
        self._verified.discard(name)
        self._touched.pop(name, None)
        self._touched.pop(path, None)
        if path.startswith(self.runs_dir + os.sep):
            try:
                os.rmdir(os.path.dirname(path))  # the pack's last run: drop its directory too
            except OSError:
                pass
        return True

    # ---- maintenance -----------------------------------------------------------------------------
    def info(self) -> dict:
        """Pieces and runs, and manifests counted apart."""
        entries, manifests = list(self._piece_entries()), list(self._manifest_entries())
        return {"dir": self.dir, "pieces": len(entries), "bytes": sum(st.st_size for _, _, st in entries),
                "max_bytes": self.max_bytes, "manifests": len(manifests),
                "manifest_bytes": sum(st.st_size for _, _, st in manifests)}

    def clean(self) -> int:
        """Empty the cache, manifests included (they are read from the store again when needed)."""
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
        """Re-hash every piece and run; damaged ones are removed. Returns (files checked, damaged names)."""
        checked, damaged = 0, []
        for name, path, _ in list(self._piece_entries()):
            try:
                with open(path, "rb") as f:
                    ok = digest_bytes(f.read()) == name.rsplit("-", 1)[-1]
            except OSError:
                continue
            checked += 1
            if not ok:
                damaged.append(name)
                self._remove(path)
        return checked, damaged


def _covering(runs: list[tuple[int, int, str]], start: int, length: int):
    """(start of the run, its path) of each cached run of a pack that holds bytes [start, start+length)."""
    return ((lo, path) for lo, hi, path in runs if lo <= start and start + length <= hi)


def _files_at_depth(top: str, depth: int):
    """(name, path, stat) of the files `depth` levels below `top` (pieces: 2, runs: 3)."""
    try:
        subs = list(os.scandir(top))
    except FileNotFoundError:
        return
    for entry in subs:
        if depth > 1:
            if entry.is_dir(follow_symlinks=False):
                yield from _files_at_depth(entry.path, depth - 1)
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        yield entry.name, entry.path, st


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
