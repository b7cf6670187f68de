"""Verified fetching of file contents: store -> verify -> cache -> caller.

A file is read as pieces: a small file is one piece (its whole blob), a large file one piece per
chunk of the manifest's chunk size. Every piece is checked against its digest before it is returned
or cached; a mismatch raises CorruptData and nothing is cached. Concurrent requests for one piece
share one download (single flight). Blocking; the mount calls it from worker threads.

(Over 400 lines on purpose: every byte artifactfs hands out, to a mount, `get` or `cache warm`, is
checked in this one class; splitting it would make two places where bytes are trusted.)
"""

import contextlib
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from typing import Any

from . import blocks, layout
from .blocks import BlockedBlob
from .cache import PieceCache
from .errors import CorruptData, LocalIOError, ObjectNotFound
from .hashing import READ_BLOCK, digest_bytes
from .localfs import open_dir_under, temp_name
from .lru import LRU
from .manifest import DIR, LINK, Entry, check_entry
from .store import ObjectStore

log = logging.getLogger(__name__)

BLOCK_LISTS = 1024  # verified block lists kept in memory (256 bytes per MiB of their blob)


@dataclass(frozen=True)
class Piece:
    digest: str  # xxh3-128 of exactly these bytes, or for a reference checked by ETag/size an id "ref-..."
    key: str  # store key holding them ("" for a reference)
    start: int  # offset within that object (within the file too, except for a file in a pack)
    length: int
    ref: str | None = None  # external URI: the bytes are read from there (references.py)
    etag: str | None = None  # what the reference's source must still be
    version_id: str | None = None
    total_size: int = 0  # the reference's recorded size

    @property
    def flight_key(self) -> str:
        return self.digest

    @property
    def pack(self) -> str | None:
        """The digest of the pack holding this piece (a small file), None for anything else."""
        return layout.pack_of_key(self.key)

    @property
    def verifiable(self) -> bool:
        """True when `digest` is the content's hash (cacheable); False for an ETag-checked reference."""
        return not self.digest.startswith(REF_PIECE)


@dataclass
class WarmResult:
    """What Fetcher.warm did. Byte counts are of distinct pieces (a file held twice is fetched once)."""

    files: int = 0  # files whose bytes are now in the cache
    fetched: int = 0  # bytes fetched from the store (or a reference's source) now
    cached: int = 0  # bytes that were in the cache already
    uncacheable: int = 0  # references with no content digest: read from their source every time
    corrupt: int = 0  # pieces that failed their checksum (not cached; logged)
    not_stored: int = 0  # pieces or runs fetched but not written to the cache (a full disk), and why
    store_error: str = ""


REF_PIECE = "ref-"
RANGE_THREADS = 8  # parallel GETs (and cache reads) of one large read_range (a cat_file of a whole large file)
PREFETCH_THREADS = 2  # background fetches into the cache (prefetch): a pack's rest for shuffled readers


def cacheable(entry: Entry) -> bool:
    """Whether the entry's bytes can be cached: all but references recorded without a content digest
    (checked by ETag and size, or with checksum=False not at all), which are read from their source."""
    return entry.ref is None or entry.digest is not None


def pieces_of(entry: Entry, chunk_size: int) -> list[Piece]:
    """The pieces `entry` is read as; CorruptData if its size, chunks and location do not fit together
    (a hostile or damaged manifest: an error, never an empty, short or huge read)."""
    check_entry(entry, chunk_size)
    if entry.size == 0:
        return []
    if entry.ref is not None:
        return _reference_pieces(entry, chunk_size)
    if entry.digest is None:
        raise CorruptData(f"{entry.path} has no recorded checksum")
    if entry.pack:  # bytes [offset, offset+size) of a pack
        return [Piece(entry.digest, layout.pack_key(entry.pack), entry.offset, entry.size)]
    key = layout.blob_key(entry.digest)
    if not entry.chunks:
        return [Piece(entry.digest, key, 0, entry.size)]
    return [Piece(d, key, i * chunk_size, min(chunk_size, entry.size - i * chunk_size))
            for i, d in enumerate(entry.chunks)]


def _reference_pieces(entry: Entry, chunk_size: int) -> list[Piece]:
    """Ranged reads of the source; with a recorded digest each piece is also hashed."""
    def piece(digest: str, start: int, length: int) -> Piece:
        return Piece(digest, "", start, length, entry.ref, entry.etag, entry.version_id, entry.size)

    if entry.digest and not entry.chunks:
        return [piece(entry.digest, 0, entry.size)]
    count = (entry.size + chunk_size - 1) // chunk_size
    pieces = []
    for i in range(count):
        start, length = i * chunk_size, min(chunk_size, entry.size - i * chunk_size)
        if entry.digest and entry.chunks:
            digest = entry.chunks[i]
        else:  # a unique id of these bytes (the ETag/VersionId name the content), never a cache key
            digest = REF_PIECE + digest_bytes(f"{entry.ref}\0{entry.etag}\0{entry.version_id}\0{start}\0{length}"
                                              .encode())
        pieces.append(piece(digest, start, length))
    return pieces


class Fetcher:
    def __init__(self, store: ObjectStore, cache: PieceCache, references=None):
        self.store = store
        self.cache = cache
        self._references = references
        self._inflight: dict[str, Future] = {}
        self._lock = threading.Lock()
        self.fetched_bytes = 0  # from the store (or a reference's source): for stats, tests and benchmarks
        self.cache_read_bytes = 0  # read back from the local cache
        self.corrupt_pieces = 0  # fetched but failing their checksum (never served, never cached)
        # Takes every verified piece (put) and run of packed files (put_run) instead of the cache when
        # set: the write-behind of the mount and artifactfs:// (cache_writer.py).
        self.cache_writer: Any = None  # a CacheWriter (put, put_run) in front of the cache, or None
        self._pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}  # kind -> (pid, pool), made on first need
        self._prefetches: set[Future] = set()  # prefetch runs not done yet
        self._block_lists = LRU(BLOCK_LISTS)  # block list digest -> its verified bytes (b"": unusable)

    @property
    def references(self):
        if self._references is None:
            from .references import References

            self._references = References()
        return self._references

    def piece(self, piece: Piece) -> bytes | memoryview:
        if piece.verifiable:
            data = self._cached([piece])[0]
            if data is not None:
                with self._lock:
                    self.cache_read_bytes += len(data)
                return data
        flight = piece.flight_key
        with self._lock:
            waiting = self._inflight.get(flight)
            if waiting is None:
                fut = self._inflight[flight] = Future()
        if waiting is not None:
            return waiting.result()
        try:
            fetched = self._download(piece)
            fut.set_result(fetched)
            return fetched
        except BaseException as exc:
            if isinstance(exc, CorruptData):
                with self._lock:
                    self.corrupt_pieces += 1
            fut.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(flight, None)

    def _cached(self, pieces: list[Piece]) -> list[bytes | None]:
        """Cached bytes of `pieces` (None where absent): files of a pack from cached runs of it."""
        pack = pieces[0].pack
        if pack is not None:
            return self.cache.get_packed(pack, [(p.start, p.length, p.digest) for p in pieces])
        return [self.cache.get(p.digest, p.length) for p in pieces]

    def cached_range(self, piece: Piece, start: int, size: int) -> bytes | None:
        """Bytes [start, start + size) of `piece` from the local cache only, each cache block they
        touch checked (a small random read does not re-read the whole chunk); None if not cached."""
        if not piece.verifiable:
            return None
        if piece.pack is not None or size == piece.length:  # read (and checked) whole
            data = self._cached([piece])[0]
        else:
            data = self.cache.get_range(piece.digest, piece.length, start, size)
        if data is None:
            return None
        with self._lock:
            self.cache_read_bytes += len(data)
        return data[start:start + size] if piece.pack is not None and size != piece.length else data

    def _keep(self, pieces: list[Piece], start: int, data) -> None:
        """Cache verified `pieces`, whose bytes `data` holds from offset `start` of their object on:
        files of a pack as one run, anything else one piece each."""
        target = self.cache_writer or self.cache  # e.g. the mount's write-behind: serve first, write after
        if pieces[0].pack is not None:
            target.put_run(pieces[0].pack, start, data)
            return
        view = memoryview(data)
        for p in pieces:
            target.put(p.digest, data if len(pieces) == 1 else view[p.start - start:p.start - start + p.length])

    def _download(self, piece: Piece) -> bytes | memoryview:
        if piece.ref is not None:
            return self._download_reference(piece)
        data = self.store.get_range(piece.key, piece.start, piece.length)
        with self._lock:
            self.fetched_bytes += len(data)
        self._keep([piece], piece.start, _check(piece, data))
        return data

    def span(self, pieces: list[Piece], read_cached: bool = True) -> list[bytes | memoryview | BaseException | None]:
        """A run of pieces from contiguous_runs (back to back in one object: files of a pack), with one
        ranged GET for those not cached. Returns each piece's bytes, or the CorruptData of one that
        fails its check (the others are still good). Store errors raise. With `read_cached=False` (a
        prefetch into the cache) a piece of a pack the cache holds is not read: None in its place."""
        if len(pieces) == 1 and read_cached:  # the single-piece path: single flight across threads, references
            try:
                return [self.piece(pieces[0])]
            except CorruptData as exc:
                return [exc]
        if read_cached or pieces[0].pack is None:
            out: list = self._cached(pieces)
            missing = [i for i, data in enumerate(out) if data is None]
            with self._lock:
                self.cache_read_bytes += sum(len(data) for data in out if data is not None)
        else:
            held = self.cache.holds_packed(pieces[0].pack, [(p.start, p.length) for p in pieces])
            out, missing = [None] * len(pieces), [i for i, here in enumerate(held) if not here]
        if not missing:
            return out
        lo, hi = pieces[missing[0]].start, pieces[missing[-1]].start + pieces[missing[-1]].length
        blob = self.store.get_range(pieces[missing[0]].key, lo, hi - lo)
        with self._lock:
            self.fetched_bytes += len(blob)
        view = memoryview(blob)
        all_good = True
        for i in missing:
            p = pieces[i]
            part = view[p.start - lo:p.start - lo + p.length]
            try:
                # a packed file is copied out (it must not pin the whole run's buffer); a chunk is a view
                out[i] = _check(p, bytes(part) if p.pack is not None else part)
            except CorruptData as exc:
                out[i] = exc
                all_good = False
                with self._lock:
                    self.corrupt_pieces += 1
        if all_good:  # a run with a damaged file is not cached at all
            self._keep([pieces[i] for i in missing], lo, blob)
        return out

    def _download_reference(self, piece: Piece) -> bytes:
        from .references import verify_piece

        assert piece.ref is not None, "a reference piece names its source"
        data = self.references.read_range(piece.ref, piece.start, piece.length, piece.total_size,
                                          piece.etag, piece.version_id)
        if piece.verifiable:
            verify_piece(piece.ref, data, piece.digest)
        with self._lock:
            self.fetched_bytes += len(data)
        if piece.verifiable:  # content-addressed: safe to cache whatever its source
            self._keep([piece], piece.start, data)
        return data

    def read_pieces(self, pieces: list[Piece]) -> Iterator[bytes | memoryview]:
        """The verified bytes of `pieces` in order (a whole file), READ_BLOCK per GET; CorruptData
        for the first piece that fails its check."""
        for run in contiguous_runs(pieces, READ_BLOCK):
            for data in self.span(run):
                if isinstance(data, BaseException):
                    raise data
                assert data is not None  # read_cached: every piece is returned
                yield data

    def read_range(self, pieces: list[Piece], start: int, end: int, on_miss: Callable[[], None] | None = None,
                   blob: BlockedBlob | None = None) -> bytes:
        """Bytes [start, end) of the file `pieces` make up, every one checked: a cached piece reads
        only the cache blocks the range touches, the missing ones are fetched by up to RANGE_THREADS
        GETs of at most READ_BLOCK each, side by side (so are the cache reads of a range of many
        pieces); with `blob` (a random read of a file with a block list) a missing part of a piece
        is fetched by the 64 KiB blocks it lies in. `on_miss` is called before anything is fetched
        (e.g. to start a prefetch beside it). CorruptData if a piece fails its check."""
        wanted: list[tuple[Piece, int, int]] = []  # (piece, first, end) of the bytes wanted from each
        at = 0
        for p in pieces:
            if at >= end:
                break
            if at + p.length > start:
                wanted.append((p, max(start - at, 0), min(end - at, p.length)))
            at += p.length
        mapper = self._pool("range").map if len(wanted) > 1 else map
        got: list[bytes | memoryview | None] = list(mapper(lambda w: self.cached_range(w[0], w[1], w[2] - w[1]),
                                                           wanted))
        if blob is not None and None in got:
            if on_miss is not None:
                on_miss()
                on_miss = None
            joined = self._by_blocks(blob, wanted, got, mapper)
            if joined is not None:
                return joined
        missing = [p for (p, _, _), data in zip(wanted, got, strict=True) if data is None]
        if missing:
            if on_miss is not None:
                on_miss()
            # spread over the pool: a 1 MiB read across two missed chunks is two GETs side by side (the
            # latency of one), a whole file is READ_BLOCK per GET
            per_get = min(READ_BLOCK, max(p.length for p in missing) * -(-len(missing) // RANGE_THREADS))
            runs = contiguous_runs(missing, per_get)
            spans = self._pool("range").map(self.span, runs) if len(runs) > 1 else map(self.span, runs)
            fetched = {p: data for run, datas in zip(runs, spans, strict=True)
                       for p, data in zip(run, datas, strict=True)}
            for i, (p, lo, hi) in enumerate(wanted):
                if got[i] is None:
                    whole = fetched[p]
                    if isinstance(whole, BaseException):
                        raise whole
                    assert whole is not None  # span reads cached pieces too
                    got[i] = memoryview(whole)[lo:hi]
        parts = [data for data in got if data is not None]
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    # ---- random reads by blocks (blocks.py) ------------------------------------------------------
    def block_list(self, blob: BlockedBlob) -> bytes | None:
        """The blob's block list, verified; None when there is none to trust (missing from the store
        or damaged, logged once): the caller reads whole chunks instead."""
        with self._lock:
            held = self._block_lists.get(blob.blocks)
        if held is not None:
            return held or None
        listing = self.cache.get(blob.blocks, blocks.list_length(blob.size))
        if listing is None:
            try:
                data, _ = self.store.get(layout.blocks_key(blob.blocks))
            except ObjectNotFound:
                data = None
            if data is not None and blocks.usable(data, blob):
                listing = bytes(data)
                with self._lock:
                    self.fetched_bytes += len(listing)
                (self.cache_writer or self.cache).put(blob.blocks, listing)
            else:
                log.warning("block list %s of %s is %s: reading it by whole chunks", blob.blocks, blob.key,
                            "missing" if data is None else "damaged")
                listing = b""
        with self._lock:
            self._block_lists.put(blob.blocks, listing)
        return listing or None

    def _by_blocks(self, blob: BlockedBlob, wanted: list[tuple[Piece, int, int]], got: list, mapper) -> bytes | None:
        """A random read_range's missing parts of pieces by blocks (into `got`); a read of one or two
        pieces none of which is cached is one GET of the blocks across them, returned whole."""
        if len(wanted) <= 2 and all(data is None for data in got):
            whole = self.read_blocks(blob, wanted[0][0].start + wanted[0][1], wanted[-1][0].start + wanted[-1][2])
            if whole is not None:
                return whole
        partial = [i for i, (p, lo, hi) in enumerate(wanted) if got[i] is None and hi - lo < p.length]
        for i, data in zip(partial, mapper(functools.partial(self._blocks_of, blob), [wanted[i] for i in partial]),
                           strict=True):
            got[i] = data
        return None

    def _blocks_of(self, blob: BlockedBlob, wanted: tuple[Piece, int, int]) -> bytes | None:
        piece, lo, hi = wanted
        return self.read_blocks(blob, piece.start + lo, piece.start + hi)

    def read_blocks(self, blob: BlockedBlob, lo: int, hi: int) -> bytes | None:
        """Bytes [lo, hi) of the blob, from the 64 KiB blocks they lie in, each checked against the
        blob's block list: cached ones from the disk cache (runs of the blob), the rest with one
        ranged GET, cached behind. None when the blob has no usable block list; CorruptData if a
        fetched block fails its check (nothing of it is cached)."""
        listing = self.block_list(blob)
        if listing is None:
            return None
        first, last = blob.span(lo, hi)
        spans = [blob.block(i) for i in range(first, last + 1)]
        got: list = self.cache.get_packed(blob.digest, [(start, n, blocks.block_hex(listing, first + k))
                                                        for k, (start, n) in enumerate(spans)])
        missing = [k for k, data in enumerate(got) if data is None]
        with self._lock:
            self.cache_read_bytes += sum(len(data) for data in got if data is not None)
        if missing:
            a = spans[missing[0]][0]
            b = spans[missing[-1]][0] + spans[missing[-1]][1]
            data = self.store.get_range(blob.key, a, b - a)  # cached blocks between come along again
            with self._lock:
                self.fetched_bytes += len(data)
            view = memoryview(data)
            for k in range(missing[0], missing[-1] + 1):
                start, n = spans[k]
                part = view[start - a:start - a + n]
                if not blocks.check_block(listing, first + k, part):
                    with self._lock:
                        self.corrupt_pieces += 1
                    log.error("store object %s bytes %d+%d do not match their block digest: refusing to serve "
                              "them", blob.key, start, n)
                    raise CorruptData(f"store object {blob.key} is corrupt (bytes {start}+{n} do not match "
                                      "their block digest)")
                got[k] = part
            (self.cache_writer or self.cache).put_run(blob.digest, a, data)
        base = first * blocks.BLOCK_SIZE
        return b"".join(got)[lo - base:hi - base]

    def prefetch(self, pieces: list[Piece]) -> None:
        """Fetch `pieces` into the disk cache in the background, one GET per run of them (those it
        holds are not read again). A failure is only logged: a read that needs them fetches them."""
        pool = self._pool("prefetch")
        for run in contiguous_runs(pieces, READ_BLOCK):
            future = pool.submit(self._prefetch_run, run)
            with self._lock:
                self._prefetches.add(future)
            future.add_done_callback(self._prefetches.discard)

    def wait_prefetches(self, timeout: float | None = None) -> None:
        """Wait until the prefetches started so far are in the cache (or failed)."""
        with self._lock:
            pending = list(self._prefetches)
        deadline = None if timeout is None else time.monotonic() + timeout
        futures_wait(pending, timeout)
        if self.cache_writer is not None:  # their pieces may still be on the way to the disk
            self.cache_writer.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _prefetch_run(self, run: list[Piece]) -> None:
        try:
            self.span(run, read_cached=False)
        except Exception as exc:  # noqa: BLE001 - a prefetch is a hint
            log.debug("prefetch of %s failed: %s", run[0].key, exc)

    def _pool(self, kind: str) -> ThreadPoolExecutor:
        with self._lock:
            held = self._pools.get(kind)
            if held is None or held[0] != os.getpid():  # a forked child has no threads
                threads = PREFETCH_THREADS if kind == "prefetch" else RANGE_THREADS
                pool = ThreadPoolExecutor(threads, thread_name_prefix=f"artifactfs-{kind}")
                held = self._pools[kind] = (os.getpid(), pool)
            return held[1]

    # ---- whole-file download --------------------------------------------------------------------
    def download_entry(self, entry: Entry, chunk_size: int, root: str, data: bytes | memoryview | None = None) -> bool:
        """Write `entry` at its path under `root` (a unique temp file, then a rename); `data`: its
        verified bytes, when already fetched. Below `root` no symbolic link is followed (localfs).
        Returns False if the file there already held it."""
        *parents, name = entry.path.split("/")
        if entry.kind == DIR:
            os.close(open_dir_under(root, [*parents, name]))
            return True
        dir_fd = open_dir_under(root, parents)
        try:
            if entry.kind == LINK:
                return _write_link(entry.target or "", dir_fd, name)  # a link always has a target
            if _already_there(entry, dir_fd, name):
                return False
            self._write_entry(entry, chunk_size, dir_fd, name, data)
        except OSError as exc:
            raise LocalIOError(f"cannot write {os.path.join(root, entry.path)}: {exc.strerror or exc}") from None
        finally:
            os.close(dir_fd)
        return True

    def _write_entry(self, entry: Entry, chunk_size: int, dir_fd: int, name: str,
                     data: bytes | memoryview | None) -> None:
        tmp = temp_name(name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            with open(fd, "wb") as f:
                if data is not None:
                    f.write(data)
                elif _unchecked(entry):  # checksum=False: whatever the URI holds now
                    for block in self.references.stream(entry.ref):
                        f.write(block)
                else:
                    for data in self.read_pieces(pieces_of(entry, chunk_size)):
                        f.write(data)
                os.fchmod(f.fileno(), 0o755 if entry.executable else 0o644)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise

    def download_all(self, entries: Iterable[Entry], chunk_size: int, root: str,
                     progress: Callable[[int], None] | None = None, threads: int = 16) -> tuple[int, int]:
        """Download entries under `root` in parallel. Returns (files written, files already there):
        links and empty directories are made too, and not counted as files."""
        root = os.path.abspath(root)
        counts = [0, 0]
        lock = threading.Lock()

        def one(entry: Entry, data: bytes | memoryview | None = None):
            wrote = self.download_entry(entry, chunk_size, root, data)
            if entry.kind not in (DIR, LINK):
                with lock:
                    counts[0 if wrote else 1] += 1
            if progress:
                progress(entry.size)

        def run(group: list[tuple[Entry, Piece]]):
            if len(group) == 1:
                return one(group[0][0])
            for (entry, _), data in zip(group, self.span([piece for _, piece in group]), strict=False):
                if isinstance(data, BaseException):
                    raise data
                one(entry, data)

        # files back to back in a pack: one ranged GET per run; every other entry on its own
        entries = list(entries)
        packed = sorted((e for e in entries if e.pack and e.size), key=lambda e: (e.pack, e.offset))
        pairs = [(e, pieces_of(e, chunk_size)[0]) for e in packed]
        ordered = iter(pairs)
        groups = [[next(ordered) for _ in run] for run in contiguous_runs([p for _, p in pairs], READ_BLOCK)]
        groups += [[(e, None)] for e in entries if not (e.pack and e.size)]  # type: ignore[list-item]  # no piece
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(run, groups):
                pass
        return counts[0], counts[1]

    def warm(self, entries: Iterable[Entry], chunk_size: int, progress: Callable[[int], None] | None = None,
             threads: int = 16) -> WarmResult:
        """Fetch the pieces of `entries` into the cache, verified, without writing them anywhere else
        (so that mounts and `get` read them without the network). Pieces already cached are only
        marked recently used; runs of missing files of a pack take one ranged GET each, as in `get`."""
        result = WarmResult()
        single: dict[str, Piece] = {}
        packed: dict[str, dict[str, Piece]] = {}
        for entry in entries:
            if not cacheable(entry):
                result.uncacheable += 1
                continue
            result.files += 1
            for p in pieces_of(entry, chunk_size):
                (packed.setdefault(p.pack, {}) if p.pack else single)[p.digest] = p
        missing = sorted((p for p in single.values() if not self.cache.holds(p.digest)), key=lambda p: (p.key, p.start))
        groups = contiguous_runs(missing, READ_BLOCK)  # the chunks of a large file: READ_BLOCK per GET
        for pack, by_digest in packed.items():
            pieces = sorted(by_digest.values(), key=lambda p: p.start)
            held = self.cache.holds_packed(pack, [(p.start, p.length) for p in pieces])
            groups += contiguous_runs([p for p, here in zip(pieces, held, strict=False) if not here], READ_BLOCK)
        result.fetched = sum(p.length for group in groups for p in group)
        result.cached = sum(p.length for p in single.values()) + sum(
            p.length for by_digest in packed.values() for p in by_digest.values()) - result.fetched
        if progress and result.cached:
            progress(result.cached)

        def run(group: list[Piece]) -> int:
            bad = sum(isinstance(data, CorruptData) for data in self.span(group))
            if progress:
                progress(sum(p.length for p in group))
            return bad

        failures = self.cache.write_failures
        self.cache.make_room = True  # asked for: older data makes room, however recently it was used
        try:
            with ThreadPoolExecutor(threads) as pool:
                result.corrupt = sum(pool.map(run, groups))
        finally:
            self.cache.make_room = False
        result.not_stored = self.cache.write_failures - failures
        result.store_error = self.cache.last_write_error if result.not_stored else ""
        return result


def _check(piece: Piece, data):
    """`data` if it is the piece's content, else CorruptData (logged)."""
    if len(data) != piece.length or digest_bytes(data) != piece.digest:
        log.error("store object %s bytes %d+%d do not match their digest %s: refusing to serve them",
                  piece.key, piece.start, piece.length, piece.digest)
        raise CorruptData(f"store object {piece.key} is corrupt (bytes {piece.start}+{piece.length} "
                          f"do not match digest {piece.digest})")
    return data


def contiguous_runs(pieces: Iterable[Piece], max_bytes: int | None = None) -> list[list[Piece]]:
    """Split `pieces` (in order) into runs that lie back to back in one store object, each at most
    `max_bytes` long: one ranged GET per run (Fetcher.span). A reference's pieces are never joined."""
    runs: list[list[Piece]] = []
    for p in pieces:
        run = runs[-1] if runs else None
        if (run is None or p.ref is not None or run[-1].ref is not None or p.key != run[-1].key
                or p.start != run[-1].start + run[-1].length
                or (max_bytes is not None and p.start + p.length - run[0].start > max_bytes)):
            runs.append([p])
        else:
            run.append(p)
    return runs


def _unchecked(entry: Entry) -> bool:
    from .references import is_unchecked

    return is_unchecked(entry)


def _write_link(target: str, dir_fd: int, name: str) -> bool:
    """Make `name` a symbolic link to `target` (a temp link renamed over it: whatever was there is
    replaced, never written through). False if it already was that link."""
    try:
        if os.readlink(name, dir_fd=dir_fd) == target:
            return False
    except OSError:
        pass
    tmp = temp_name(name)
    os.symlink(target, tmp, dir_fd=dir_fd)
    try:
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    return True


def _already_there(entry: Entry, dir_fd: int, name: str) -> bool:
    """Whether `name` is a regular file (not a link) that holds `entry`'s content already."""
    from .hashing import hash_file

    if entry.digest is None:
        return False  # nothing cheap to compare with: fetch again (ranged reads are validated)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return False
        return hash_file(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd))[1] == entry.digest
    except OSError:
        return False
