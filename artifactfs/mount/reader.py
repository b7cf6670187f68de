"""Reading file contents for the mounts: verified chunks, fetched in parallel, read ahead on
sequential access, exact chunks on random access.

`ChunkSource` (one per mount) turns a Piece (see fetch.py: a whole small file, or one chunk of a large
one) into verified bytes:
  memory LRU of recent chunks -> single-flight fetch task -> worker thread: Fetcher.piece
  (disk cache, else ranged GET + verify + cache). A chunk that fails its checksum raises CorruptData
  (EIO) and is never cached. A caller waits at most `timeout` seconds, then gets StoreUnavailable (EIO);
  the fetch itself continues in the background and is shared with whoever asks next.
  The memory LRU exists because the kernel asks for 128 KiB-1 MiB at a time: without it each request
  would re-read (and slice) an 8 MiB chunk from the disk cache. A chunk that a sequential reader has
  read past (by one more chunk) is dropped from it at once (`forget`: the kernel keeps those pages,
  keep_cache), so a streaming read cycles through a few reused buffers (buffers.py) instead of filling
  the LRU.

`FileReader` (one per open file handle) decides what to fetch. Read-ahead window: a read that starts
within SEQUENTIAL_SLACK of where the previous read ended is sequential; each sequential step into a new
READ_BLOCK doubles the window, from INITIAL_WINDOW up to MAX_WINDOW, and the chunks in the window are
started as prefetches, READ_BLOCK at a time: one ranged GET per run of chunks (8 of 1 MiB), each chunk
checked on its own. A read anywhere else resets the window to zero: random access fetches only the
chunks it touches (4 KiB at 10 GiB into a 20 GiB file fetches one chunk), or, when the file has a block
list (blocks.py), only the 64 KiB blocks it touches, until seven eighths of a chunk's blocks were
read (then the chunk is completed and handed to the page cache); a chunk already in the disk cache
is read by range: only the cache blocks a read touches are read and checked (piecefile.py). After
such a jump, prefetching resumes only once the reader has gone RANDOM_TO_SEQUENTIAL bytes in order
(the kernel's own readahead behind one small read must not look like a sequential reader); a file
read from its start prefetches at once.

Prefetches run under their own limiter (PREFETCH_CONCURRENCY) inside the network limiter, so demand
reads always find free network slots.

No await between the checks and updates of `_inflight`/`_mem` in `start`/`_remember`: they are atomic
on the trio thread, which is what makes the single flight correct.
"""

import functools
import logging
from collections import OrderedDict

import pyfuse3
import trio

from ..blocks import BLOCK_SIZE, BlockedBlob
from ..errors import StoreUnavailable
from ..fetch import Fetcher, Piece, contiguous_runs
from ..hashing import READ_BLOCK
from .daemon import READ_AHEAD_KB, Workers, to_thread

log = logging.getLogger(__name__)

MEMORY_BYTES = 256 * 1024 * 1024
INITIAL_WINDOW = 8 * 1024 * 1024
MAX_WINDOW = 128 * 1024 * 1024
PREFETCH_CONCURRENCY = 16
FILL_THREADS = 2  # page-cache fills of whole chunks in flight (each may wait for a READ's page lock)
RANDOM_TO_SEQUENTIAL = 4 * 1024 * 1024  # after a jump, read this far in order before prefetching
# the kernel's readahead requests may arrive out of order within its window (and old manifests'
# 8 MiB chunks keep a chunk of slack: max(chunk_size, SEQUENTIAL_SLACK))
SEQUENTIAL_SLACK = 2 * READ_AHEAD_KB * 1024
_FILLED: set[int] = set()  # FileReader._blocks_read: the chunk went to the page cache whole


class _Flight:
    __slots__ = ("event", "data", "error")

    def __init__(self):
        self.event = trio.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None


class ChunkSource:
    def __init__(self, fetcher: Fetcher, workers: Workers, timeout: float, memory_bytes: int = MEMORY_BYTES):
        self.fetcher = fetcher
        self.workers = workers
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._mem_size = 0
        self._inflight: dict[str, _Flight] = {}
        self._prefetch_limiter = trio.CapacityLimiter(PREFETCH_CONCURRENCY)
        self.store_errors = 0  # reads failed because the store timed out or was unreachable (for stats)
        self.chunks_filled = 0  # whole chunks handed to the page cache for random readers (for stats)
        self._fill_limiter = trio.CapacityLimiter(FILL_THREADS)
        self._nursery: trio.Nursery | None = None

    def _service(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("ChunkSource.attach() was not called")
        return self._nursery

    def attach(self, nursery: trio.Nursery) -> None:
        """Give the source the nursery its fetch tasks run in (the mount's service nursery)."""
        self._nursery = nursery

    # ---- memory LRU ------------------------------------------------------------------------------
    def cached(self, piece: Piece) -> bytes | None:
        """The piece's verified bytes if they are in memory now (never fetches)."""
        return self._cached(piece.digest)

    def _cached(self, digest: str) -> bytes | None:
        data = self._mem.get(digest)
        if data is not None:
            self._mem.move_to_end(digest)
        return data

    def _remember(self, digest: str, data: bytes) -> None:
        if digest in self._mem or len(data) > self.memory_bytes // 4:
            return
        self._mem[digest] = data
        self._mem_size += len(data)
        while self._mem_size > self.memory_bytes:
            _, old = self._mem.popitem(last=False)
            self._mem_size -= len(old)

    def forget(self, piece: Piece) -> None:
        data = self._mem.pop(piece.digest, None)
        if data is not None:
            self._mem_size -= len(data)

    # ---- fetching --------------------------------------------------------------------------------
    def start(self, piece: Piece, prefetch: bool = False) -> _Flight | None:
        """Make sure `piece` is being fetched; None if it is already in memory."""
        if piece.digest in self._mem:
            return None
        flight = self._inflight.get(piece.digest)
        if flight is None:
            flight = self._inflight[piece.digest] = _Flight()
            self._service().start_soon(self._fetch, [piece], [flight], prefetch)
        return flight

    def start_span(self, pieces: list[Piece], prefetch: bool = False, read_cached: bool = True) -> None:
        """Fetch those of `pieces` not in memory or in flight, with one ranged GET per run of them that
        lies back to back in one object (files of a pack). A piece left out breaks the run there.
        `read_cached=False`: pieces the disk cache holds are left there (not read into memory)."""
        todo, seen = [], set()
        for p in pieces:
            if p.digest not in self._mem and p.digest not in self._inflight and p.digest not in seen:
                seen.add(p.digest)
                todo.append(p)
        for run in contiguous_runs(todo, READ_BLOCK):
            flights = [self._inflight.setdefault(p.digest, _Flight()) for p in run]
            self._service().start_soon(self._fetch, run, flights, prefetch, read_cached)

    async def _fetch(self, run: list[Piece], flights: list[_Flight], prefetch: bool, read_cached: bool = True) -> None:
        try:
            fetch = functools.partial(to_thread, self.fetcher.span, run, read_cached, limiter=self.workers.network,
                                      abandon=True)
            if prefetch:
                async with self._prefetch_limiter:
                    results = await fetch()
            else:
                results = await fetch()
            for p, flight, result in zip(run, flights, results, strict=False):
                if isinstance(result, BaseException):
                    flight.error = result
                elif result is not None:  # None: left in the disk cache (read_cached=False)
                    self._remember(p.digest, result)
                    flight.data = result
        except Exception as exc:  # handed to every waiter; the next request retries
            for flight in flights:
                flight.error = exc
            if prefetch:
                log.debug("prefetch of %s failed: %s", run[0].key, exc)
        finally:
            for p, flight in zip(run, flights, strict=False):
                del self._inflight[p.digest]
                flight.event.set()

    async def get(self, piece: Piece) -> bytes:
        data = self._cached(piece.digest)
        if data is not None:
            return data
        flight = self.start(piece)
        if flight is None:  # in memory after all: no await since, so nothing evicted it
            data = self._cached(piece.digest)
            assert data is not None
            return data
        with trio.move_on_after(self.timeout):
            await flight.event.wait()
        if not flight.event.is_set():
            log.warning("read of %s bytes %d+%d timed out after %gs", piece.key, piece.start, piece.length,
                        self.timeout)
            self.store_errors += 1
            raise StoreUnavailable(f"store did not deliver {piece.key} within {self.timeout:g}s")
        if flight.error is not None:
            if isinstance(flight.error, StoreUnavailable):
                self.store_errors += 1
            raise flight.error
        if flight.data is None:  # a prefetch found it in the disk cache and left it there: read it now
            return await self.get(piece)
        return flight.data

    async def get_from_disk(self, piece: Piece):
        """The piece from memory or the disk cache (read and checked with the light thread hop), or
        None when neither holds it: no fetch is started. What a small file's first open tries before
        the store (a second job finds everything there, and a fetch task would cost more than the read)."""
        data = self._cached(piece.digest)
        if data is None and piece.digest not in self._inflight:
            data = await self.workers.disk_call(self.fetcher.cached_range, piece, 0, piece.length)
            if data is not None:
                self._remember(piece.digest, data)
        return data

    def fill_page_cache(self, ino: int, offset: int, piece: Piece, blob: BlockedBlob | None = None) -> None:
        """Hand the whole verified chunk `piece` (at `offset` of inode `ino`) to the kernel's page cache,
        in the background: the random reads that follow within it are served by the kernel, with no
        request to us. From memory, else the disk cache (checked whole), else with `blob` by its
        blocks (the cached ones, and the rest fetched); nothing when none holds it.
        In a thread of its own limiter, never on the loop: the kernel locks each page it stores, and
        one that a READ of that file holds locked until we reply would block the store until then."""
        data = self._cached(piece.digest)

        def fill() -> None:
            held = data if data is not None else self.fetcher.cached_range(piece, 0, piece.length)
            if held is None and blob is not None:
                try:
                    held = self.fetcher.read_blocks(blob, piece.start, piece.start + piece.length)
                except Exception as exc:  # noqa: BLE001 - a fill is a hint: the READ path reports errors
                    log.debug("page cache fill of %s at %d: %s", piece.key, offset, exc)
            if held is None:
                return
            try:
                pyfuse3.notify_store(ino, offset, held)
                self.chunks_filled += 1
            except OSError as exc:  # the kernel no longer has the inode: the READ path serves it
                log.debug("page cache fill of %s at %d failed: %s", piece.key, offset, exc)

        async def run() -> None:  # abandoned at shutdown: a fill waiting on a page lock must not hold it up
            await to_thread(fill, limiter=self._fill_limiter, abandon=True)

        self._service().start_soon(run)

    async def get_range(self, piece: Piece, lo: int, hi: int, blob: BlockedBlob | None = None):
        """Bytes [lo, hi) of `piece`: from memory, else (when no fetch of it is under way) from the
        disk cache by range, only the blocks they touch read and checked, else, when the file has a
        block list (`blob`), by the 64 KiB blocks they lie in, else from the whole piece.
        For random access, where a 4 KiB read must not cost a whole chunk."""
        data = self._cached(piece.digest)
        if data is None and piece.digest not in self._inflight:
            part = await self.workers.disk_call(self.fetcher.cached_range, piece, lo, hi - lo)
            if part is not None:
                return part
            if blob is not None:
                try:
                    part = await self.workers.net(self.fetcher.read_blocks, blob, piece.start + lo,
                                                  piece.start + hi, timeout=self.timeout)
                except StoreUnavailable:
                    self.store_errors += 1
                    raise
                if part is not None:
                    return part
        data = data if data is not None else await self.get(piece)
        return memoryview(data)[lo:hi] if (lo, hi) != (0, len(data)) else data


class FileReader:
    """Read state of one open file: its pieces (fixed at open, so it keeps its version) and window.

    With `ino` (the read-only mount), a chunk that two random reads reached us for is handed to the page
    cache whole (ChunkSource.fill_page_cache): a random reader with any locality (an HDF5 or parquet
    reader, fio's uniform reads of a file the page cache can hold) is then served by the kernel, while
    a chunk read only once costs no more than its range. Two more reads of a filled chunk mean the
    kernel dropped its pages (memory pressure, fadvise): it is filled again. So the bytes read from
    the disk cache are at most one chunk per two reads that reach us. Reads of half a chunk or more
    (parquet column chunks, duckdb's row groups), and READs that continue the one before (a large read
    the kernel cut up), do not count: the kernel keeps what they asked for, and filling their chunks
    would read them from the disk cache twice."""

    def __init__(self, source: ChunkSource, pieces: list[Piece], size: int, chunk_size: int,
                 ino: int | None = None, blob: BlockedBlob | None = None):
        self.source = source
        self.pieces = pieces
        self.blob = blob  # with a block list: random reads of cold chunks fetch 64 KiB blocks
        self.size = size
        self.chunk_size = chunk_size
        self.ino = ino
        self._random_reads: dict[int, int] = {}  # chunk index -> random reads of it (until filled)
        self._blocks_read: dict[int, set[int]] = {}  # with a block list: chunk index -> blocks read in it
        self.chunked = len(pieces) > 1
        self._next_off = 0
        self._window = INITIAL_WINDOW
        self._prefetched_to = 0  # pieces below this index were already started
        self._run_start = 0  # where the current sequential run began
        self._per_get = max(1, READ_BLOCK // chunk_size)  # chunks one prefetch GET brings
        self._behind = max(1, -(-SEQUENTIAL_SLACK // chunk_size))  # chunks a sequential reader may still ask for

    async def read(self, off: int, size: int) -> bytes | memoryview:
        end = min(off + size, self.size)
        if off >= end:
            return b""
        if not self.chunked:
            data = await self.source.get(self.pieces[0])
            return data[off:end] if off or end < len(data) else data
        cs = self.chunk_size
        first, last = off // cs, (end - 1) // cs
        # the kernel cuts one large read into READs that follow each other: only the first is a hint
        hint = off != self._next_off and (end - off) * 2 < cs
        self._plan(off, end, first, last)
        self._next_off = end
        if not self._window:  # random access: only what is asked for, by range from the disk cache
            return await self._read_random(off, end, first, last, hint)
        parts = []
        for i in range(first, last + 1):
            data = await self.source.get(self.pieces[i])
            lo = max(off - i * cs, 0)
            hi = min(end - i * cs, len(data))
            # a view, not a copy: pyfuse3 replies from any buffer, and the chunk stays alive meanwhile
            parts.append(memoryview(data)[lo:hi] if (lo, hi) != (0, len(data)) else data)
            if hi == len(data) and self._window and i >= self._behind:
                # a sequential reader is done with the chunks before this one (the kernel keeps their
                # pages): free their buffers for the next chunks instead of holding them in memory, so
                # a streaming read reuses a few buffers rather than touching new memory for the whole
                # LRU. SEQUENTIAL_SLACK of slack: the kernel's readahead requests arrive out of order.
                self.source.forget(self.pieces[i - self._behind])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _read_random(self, off: int, end: int, first: int, last: int, hint: bool):
        cs = self.chunk_size
        parts: list = [None] * (last + 1 - first)

        async def part(k: int) -> None:
            i = first + k
            parts[k] = await self.source.get_range(self.pieces[i], max(off - i * cs, 0), min(end - i * cs, cs),
                                                   self.blob)

        if len(parts) == 1:
            await part(0)
        else:  # a read across chunks (a 1 MiB read at any offset): their disk-cache reads side by side
            async with trio.open_nursery() as nursery:
                for k in range(len(parts)):
                    nursery.start_soon(part, k)
        # Only a small read where the last one did not end is a hint of locality. A large read (a
        # parquet column chunk, duckdb's row groups), whole or cut into READs by the kernel, is not: the
        # kernel keeps what it asked for, and the rest of such a chunk costs a read or two.
        if self.ino is not None and hint:
            for i in range(first, last + 1):
                seen = self._random_reads.get(i, 0) + 1
                # locality: the chunk goes to the page cache whole; and again if two more reads of it
                # reach us, which means the kernel has dropped its pages since
                self._random_reads[i] = 0 if seen == 2 else seen
                if seen == 2:
                    self.source.fill_page_cache(self.ino, i * cs, self.pieces[i])
                if self.blob is not None:
                    self._note_blocks(self.ino, i, max(off, i * cs), min(end, (i + 1) * cs))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _note_blocks(self, ino: int, i: int, lo: int, hi: int) -> None:
        """A dense random reader (seven eighths of a chunk's blocks read) gets the chunk whole: its
        missing blocks fetched and the chunk handed to the page cache, so the rest of its reads there
        cost no request, for at most 8/7 the bytes. A sparse one (h5py slices, parquet columns)
        fetches only the blocks it reads. (Counting reads instead was tried: h5py makes several per
        slice, and fetching a chunk on its third read took h5py from 1.5 to 2.6 bytes per byte.)"""
        assert self.blob is not None
        touched = self._blocks_read.setdefault(i, set())
        if touched is _FILLED:
            return
        first, last = self.blob.span(lo, hi)
        touched.update(range(first, last + 1))
        if len(touched) * 8 >= 7 * -(-self.pieces[i].length // BLOCK_SIZE):
            self._blocks_read[i] = _FILLED
            self.source.fill_page_cache(ino, i * self.chunk_size, self.pieces[i], self.blob)

    def _plan(self, off: int, end: int, first: int, last: int) -> None:
        """Update the read-ahead window; start the chunks this read needs (in parallel, before waiting
        on any, and before the prefetches, which would compete with them) unless it is random access
        (served by range from the disk cache where possible), then the prefetches the window calls for."""
        cs = self.chunk_size
        slack = max(cs, SEQUENTIAL_SLACK)
        if not self._next_off - slack <= off <= self._next_off + slack:  # a jump: random access
            self._window = 0
            self._prefetched_to = 0
            self._run_start = off
            return
        if self._window == 0:
            if end - self._run_start < RANDOM_TO_SEQUENTIAL:
                return  # the kernel's own readahead after a jump does not make a sequential reader yet
            self._window = INITIAL_WINDOW
        elif (self._next_off - 1) // (step := max(cs, READ_BLOCK)) < (end - 1) // step:  # a READ_BLOCK on: widen
            self._window = min(self._window * 2, MAX_WINDOW)
        for i in range(first, last + 1):
            self.source.start(self.pieces[i])
        if off == 0 and self._next_off == 0:
            return  # a file's first read: its chunk alone, so the first byte does not share the store with a prefetch
        count = len(self.pieces)
        ahead = min(last + 1 + max(self._per_get, self._window // cs), count)
        start = max(last + 1, self._prefetched_to)
        # whole GETs only (a window grown by one chunk waits for the next ones), and the file's tail
        stop = ahead if ahead == count else start + (ahead - start) // self._per_get * self._per_get
        if stop > start:
            self.source.start_span(self.pieces[start:stop], prefetch=True)
            self._prefetched_to = stop


class UncheckedReader:
    """An open reference recorded with checksum=False: nothing was recorded to check its bytes against,
    so they are read from the source as it is now, uncached (the file is opened with direct I/O, so the
    page cache never holds them either), up to the size the source had when the file was opened."""

    def __init__(self, source: ChunkSource, uri: str, size: int):
        self.source = source
        self.uri = uri
        self.size = size

    async def read(self, off: int, size: int) -> bytes | memoryview:
        end = min(off + size, self.size)
        if off >= end:
            return b""
        references = self.source.fetcher.references
        return await self.source.workers.net(references.read_current, self.uri, off, end - off,
                                             timeout=self.source.timeout)
