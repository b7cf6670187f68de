"""The local content-addressed cache of verified pieces: whole small files and chunks of large ones.

Layout: `<cache_dir>/pieces/<first two hex>/<xxh3-128 of the content>` for whole files and chunks, and
`<cache_dir>/runs/<first two hex>/<pack digest>/<start>-<end>-<xxh3-128 of the run>` for runs of files
of a pack, cached as fetched: one ranged GET of back-to-back small files becomes one cache file, not one
per file (5,000 small files cost 5,000 creates, renames and page-cache fills otherwise, which halved
cold small-file reads on 2 cores). A packed file is read from any cached run that covers its bytes and
checked against its digest on every read. Each file is written to a temp file, then renamed, so a
reader sees a whole piece or none. Every read from the cache is checked, and costs in proportion to
what it reads: a whole piece against its digest, a range of one against the digests of its blocks
(piecefile.py), a packed file against its own digest. A file that fails (flipped, truncated, replaced,
half-written before a crash) is dropped, logged, and fetched again, never served. Eviction is LRU by
mtime, from the bound down to EVICT_TO of it; an evicted piece that a reader already opened stays
readable (POSIX unlink semantics).

Admission: a full cache does not evict what was used in the last KEEP_RECENT seconds to make room for
new data; the new piece is served and not cached (`bypassed`). LRU under a reader that cycles over
more than the cache (epochs of a dataset larger than it) replaces every piece before its next use:
each miss costs a write and an eviction, and a shuffled epoch finds ~1/8 of a 2x dataset cached. Kept
fixed, the cache serves cache/dataset of every epoch and misses cost no writes. Data idle for
KEEP_RECENT makes room as before, and `cache warm` (`make_room`) always does.
Thread-safe; shared by mounts and `get` in any number of processes.

A piece handed over in a page-aligned buffer (buffers.py; the mount's ranged GETs are) is written with
O_DIRECT: the disk takes it from that buffer, instead of the CPU copying it into fresh page-cache pages
(on a 2-core machine that copy cost as much CPU as receiving the piece). With a BufferPool attached
(`buffers`), large pieces are also read back with O_DIRECT into its buffers. Filesystems without
O_DIRECT (tmpfs) get ordinary reads and writes.
"""

import bisect
import contextlib
import itertools
import logging
import os
import shutil
import threading
import time

from . import piecefile
from .buffers import ALIGN, BufferPool
from .cache_dir import claim_cache_dir, manifests_dir
from .direct_io import read_direct, write_file
from .hashing import digest_bytes
from .lru import LRU

log = logging.getLogger(__name__)

LOW_WATERMARK = 0.9  # what a `cache warm` may fill
EVICT_TO = 0.8  # an eviction frees down to this much of the bound: each rescan of the cache is paid for
# by a fifth of it written anew (a dataset larger than the cache writes all the time)
_TOUCH_INTERVAL = 60.0  # refresh a piece's mtime (its LRU stamp) at most this often
KEEP_RECENT = 600.0  # a full cache keeps what was used this recently instead of admitting new data
_RECHECK = 60.0  # when all is recent, look for idle files again after at most this long
# A pack's run index is trusted this long before its directory is stat'ed again: what another process
# added or evicted meanwhile only costs a miss (fetched again) or a failed open (the same).
_RUNS_FRESH = 1.0
RUN_INDEX_PACKS = 4096  # packs whose run listings are kept in memory


class PieceCache:
    def __init__(self, cache_dir: str, max_bytes: int):
        self.dir = claim_cache_dir(cache_dir)
        self.pieces_dir = os.path.join(self.dir, "pieces")
        self.runs_dir = os.path.join(self.dir, "runs")
        self.manifests_dir = manifests_dir(self.dir)
        self.tmp_dir = os.path.join(self.dir, "tmp")
        self.max_bytes = max_bytes
        for d in (self.pieces_dir, self.runs_dir, self.tmp_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}
        self._run_index = LRU(RUN_INDEX_PACKS)  # pack -> (its run directory's mtime, PackRuns, checked at)
        self._run_changes = LRU(RUN_INDEX_PACKS)  # pack -> runs this process added or removed (a count)
        self.damaged = 0  # cache files found damaged and dropped (for stats and tests)
        self.buffers: BufferPool | None = None  # large pieces are read into its buffers (O_DIRECT)
        self.write_failures = 0  # pieces and runs that could not be stored (a full disk), and the last reason
        self.last_write_error = ""
        self.make_room = False  # admit everything, evicting by LRU alone (`cache warm`: the user asked)
        self.bypassed = 0  # pieces and runs not cached because the full cache held only recent ones
        self._all_recent_until = 0.0  # wall time before which a full cache has no idle file (skip a rescan)
        self._writing = 0  # bytes admitted and not yet renamed into place: a rescan does not see them
        self._size = self._scan_size()
        self._clear_stale_temps()

    @property
    def size(self) -> int:
        """Bytes the cache holds as this process counts them (rescanned at each eviction)."""
        with self._lock:
            return self._size

    def path(self, digest: str) -> str:
        return os.path.join(self.pieces_dir, digest[:2], digest)

    # ---- read / write --------------------------------------------------------------------------
    def get(self, digest: str, length: int) -> bytes | None:
        """The piece, checked against its digest on every read, or None if absent or damaged (a
        damaged one is removed and logged)."""
        path = self.path(digest)
        try:
            data = self._read(path, length)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cache: cannot read %s: %s", path, exc)
            return None
        if data is None or not piecefile.whole_ok(data, digest):
            self._drop_damaged(path)
            return None
        self._touch(digest, path)
        return data

    def get_range(self, digest: str, length: int, start: int, size: int) -> bytes | None:
        """Bytes [start, start + size) of the piece, checked against the digests of the blocks they
        touch (piecefile.py): what a random read costs is in proportion to what it reads. None if
        absent or damaged (removed)."""
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cache: cannot read %s: %s", path, exc)
            return None
        try:
            block = piecefile.table_block(os.fstat(fd).st_size, length)
            if block:
                data = piecefile.read_range(fd, length, start, size, block)
            elif block == 0:  # an older file without a table: checked whole
                whole = os.pread(fd, length, 0)
                data = whole[start:start + size] if piecefile.whole_ok(whole, digest) else None
            else:
                data = None
        except OSError as exc:
            log.warning("cache: cannot read %s: %s", path, exc)
            return None
        finally:
            os.close(fd)
        if data is None:
            self._drop_damaged(path)
            return None
        self._touch(digest, path)
        return data

    def put(self, digest: str, data) -> None:
        """Store a piece the caller has verified, with its block table. Errors (a full disk) are
        logged, not raised."""
        self._install(self.path(digest), data, piecefile.block_table(data))

    def _drop_damaged(self, path: str) -> None:
        log.warning("cache: %s is damaged on disk; dropping it and fetching it again", os.path.relpath(path, self.dir))
        self._remove(path)
        with self._lock:
            self.damaged += 1

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
            for lo, path in runs.covering(start, length):
                data = self._read_run(path, start - lo, length, digest)
                if data is not None:
                    break
            out.append(data)
        return out

    def holds(self, digest: str) -> bool:
        """Whether the piece is cached (not re-verified here: every read is); a held piece
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
            run = next(runs.covering(start, length), None)
            if run is not None:
                self._touch(run[1], run[1])
            out.append(run is not None)
        return out

    def put_run(self, pack: str, start: int, data) -> None:
        """Store bytes [start, start + len(data)) of pack `pack` (the caller verified the files in it)."""
        name = f"{start}-{start + len(data)}-{digest_bytes(data)}"
        path = os.path.join(self.run_dir(pack), name)
        if self._install(path, data):
            self._reindex(pack, add=(start, start + len(data), path))

    def _reindex(self, pack: str, add: tuple[int, int, str] | None = None, drop: str | None = None) -> None:
        """Keep a pack's run index current after this process added or removed one of its runs (its
        directory's new mtime is taken as the index's), instead of listing the directory again at the
        next read: a cache that churns (a dataset larger than it) adds and drops runs all the time."""
        try:
            stamp = os.stat(self.run_dir(pack)).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        with self._lock:  # read, change and put back under one hold: two writers must not lose a run
            self._run_changes.put(pack, self._run_changes.get(pack, 0) + 1)
            held = self._run_index.get(pack)
            if held is None:
                return
            if stamp is None:
                self._run_index.pop(pack, None)
                return
            runs = [r for r in held[1].runs if r[2] != drop] + ([add] if add else [])
            self._run_index.put(pack, (stamp, PackRuns(runs), time.monotonic()))

    def _runs_of(self, pack: str) -> "PackRuns":
        """The cached runs of `pack`, listed once and kept while its directory's mtime stands (a run
        added or removed by any process changes it, and this process's own changes update it): a read
        costs at most one stat a second (_RUNS_FRESH), not a listing and a parse of every run, which
        made warm reads of a pack read file by file slower than cold ones.
        A listing is kept only if this process changed none of the pack's runs while it was taken: a
        run added within the same mtime tick would not change the stamp, and would stay unseen. (Another
        process's run added within one tick can be missed that way: a cache miss, fetched again.)"""
        d = self.run_dir(pack)
        with self._lock:
            changes = self._run_changes.get(pack, 0)
            held = self._run_index.get(pack)
        now = time.monotonic()
        if held is not None and now - held[2] < _RUNS_FRESH:
            return held[1]
        try:
            stamp = os.stat(d).st_mtime_ns
        except FileNotFoundError:
            return PackRuns([])
        if held is not None and held[0] == stamp:
            with self._lock:
                self._run_index.put(pack, (stamp, held[1], now))
            return held[1]
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return PackRuns([])
        runs = []
        for name in names:
            lo, _, rest = name.partition("-")
            hi, _, _ = rest.partition("-")
            if lo.isdigit() and hi.isdigit():
                runs.append((int(lo), int(hi), os.path.join(d, name)))
        index = PackRuns(runs)
        with self._lock:
            if self._run_changes.get(pack, 0) == changes:
                self._run_index.put(pack, (stamp, index, now))
        return index

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
            self._drop_damaged(path)
            return None
        self._touch(path, path)
        return data

    def _install(self, path: str, data, trailer: bytes = b"") -> bool:
        """Write `data` and then `trailer` as the cache file `path` (temp + rename) and account for
        it; False on an OSError (a full disk: logged, and a tenth of the cache freed)."""
        size = len(data) + len(trailer)
        if not self._admit(size):
            return False
        tmp = os.path.join(self.tmp_dir, f"{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            write_file(tmp, data, trailer)
            os.rename(tmp, path)
        except OSError as exc:
            self._remove(tmp)
            log.warning("cache: cannot store %s: %s", os.path.relpath(path, self.dir), exc)
            with self._lock:
                self.write_failures += 1
                self.last_write_error = exc.strerror or str(exc)
                self._size -= size
                self._writing -= size
            self.evict(force=True)
            return False
        with self._lock:
            self._writing -= size
            over = self._size > self.max_bytes
        if over:  # make_room, or a rescan counted what other processes wrote: the bound holds either way
            self.evict(down_to=None if self.make_room else self.max_bytes)
        return True

    def account(self, size: int) -> None:
        """`size` bytes written into the cache directory outside put (a local manifest copy): counted,
        and the bound held."""
        with self._lock:
            self._size += size
            over = self._size > self.max_bytes
        if over:
            self.evict(down_to=self.max_bytes)

    def _admit(self, size: int) -> bool:
        """Whether `size` more bytes may be cached: there is room, or idle files can make it (they
        are evicted), or `make_room`. Otherwise counted in `bypassed`."""
        with self._lock:
            if self._reserve(size):
                return True
            rescan = time.time() >= self._all_recent_until
        if rescan:
            self.evict(idle_for=KEEP_RECENT)
        with self._lock:
            if self._reserve(size):
                return True
            self.bypassed += 1
        return False

    def _reserve(self, size: int) -> bool:
        """Take room for `size` bytes if there is (or `make_room`); under the lock, so two writer
        threads never both take the last room."""
        if self.make_room or self._size + size <= self.max_bytes:
            self._size += size
            self._writing += size
            return True
        return False

    def _read(self, path: str, length: int):
        """The first `length` bytes of the cache file `path` (into a pooled buffer when large), or
        None if the file is not of a length that holds such a piece (damaged)."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if piecefile.table_block(os.fstat(fd).st_size, length) is None:
                return None
            pool = self.buffers
            if pool is None or length < pool.min_size:
                data = os.pread(fd, length, 0) if length else b""
                return data if len(data) == length else None
            return read_direct(fd, pool.take(-(-length // ALIGN) * ALIGN), length)
        finally:
            os.close(fd)

    def _touch(self, name: str, path: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(name, -_TOUCH_INTERVAL) >= _TOUCH_INTERVAL:
            self._touched[name] = now
            with contextlib.suppress(OSError):
                os.utime(path)

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
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def evict(self, force: bool = False, idle_for: float | None = None, down_to: int | None = None) -> int:
        """Remove least recently used pieces until below EVICT_TO of the bound; returns bytes freed.

        Re-scans the disk, so pieces written by other processes count too. `force` frees a tenth of
        the cache even if under the limit (after a write failed for lack of space). `idle_for` spares
        files used within that many seconds (admission) unless the cache is over the bound itself
        (another process's files, copies written outside put: the bound holds regardless); when they
        alone fill the cache, no rescan is made before the oldest of them turns idle (or _RECHECK
        passes). `down_to` frees only that far (an overshoot of the bound).
        """
        with self._lock:
            writing = self._writing
        entries = sorted(self._entries(), key=lambda e: e[2].st_mtime)
        total = sum(st.st_size for _, _, st in entries) + writing  # (a file renamed meanwhile counts twice)
        target = int(self.max_bytes * EVICT_TO) if down_to is None else down_to
        if force:
            target = min(target, int(total * LOW_WATERMARK))
        now = time.time()
        freed = 0
        for _, path, st in entries:
            if total - freed <= target:
                break
            if idle_for is not None and st.st_mtime > now - idle_for and total - freed <= self.max_bytes:
                with self._lock:
                    self._all_recent_until = min(st.st_mtime + idle_for, now + _RECHECK)
                break
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
        self._touched.pop(name, None)
        self._touched.pop(path, None)
        if path.startswith(self.runs_dir + os.sep):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))  # the pack's last run: drop its directory too
            self._reindex(os.path.basename(os.path.dirname(path)), drop=path)
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
        """Re-hash every piece (and its block table) and run; damaged ones are removed. Returns (files
        checked, damaged names)."""
        checked, damaged = 0, []
        for name, path, _ in list(self._piece_entries()):
            try:
                if path.startswith(self.runs_dir + os.sep):
                    with open(path, "rb") as f:
                        ok = digest_bytes(f.read()) == name.rsplit("-", 1)[-1]
                else:
                    ok = piecefile.file_ok(path, name)
            except OSError:
                continue
            checked += 1
            if not ok:
                damaged.append(name)
                self._remove(path)
        return checked, damaged


class PackRuns:
    """The cached runs of one pack, sorted by start, for lookups in O(log n + runs that overlap)."""

    def __init__(self, runs: list[tuple[int, int, str]]):
        self.runs = sorted(runs)
        self.starts = [lo for lo, _, _ in self.runs]
        self.reach = list(itertools.accumulate((hi for _, hi, _ in self.runs), max))  # max end so far

    def covering(self, start: int, length: int):
        """(start of the run, its path) of each run that holds bytes [start, start + length)."""
        end = start + length
        i = bisect.bisect_right(self.starts, start) - 1
        while i >= 0 and self.reach[i] >= end:
            lo, hi, path = self.runs[i]
            if hi >= end:
                yield lo, path
            i -= 1


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


