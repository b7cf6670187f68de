"""Read-ahead across files: when small files of a version are opened in manifest order (what `cp -r`,
`tar`, `find -exec cat`, `du`-like scans and in-order data loaders do, since readdir lists entries in
manifest order), fetch the next ones before they are asked for.

Many small files are latency-bound: each open+read waits one store round trip. Detecting an in-order
walk turns that into a pipeline. The detector is per version and tolerant of the reordering that
parallel readers cause: an open within SLACK entries of where the walk is expected counts as in order,
and one up to STRAGGLERS behind it is ignored.
After IN_ORDER_OPENS such opens, the next `window` files are prefetched; the window doubles on each
further in-order open up to MAX_WINDOW files and MAX_BYTES, and is topped up whenever the walk comes
within half a window of its end (in batches, not file by file, so a batch of pack neighbours is one
GET). Any other open resets it, so a shuffled reader (a training loop with shuffle=True) never
triggers prefetching and fetches only what it reads.
Only files of one piece (up to the chunk size) are prefetched; large files have their own read-ahead.
Files stored back to back in a pack are prefetched as runs, one ranged GET each (ChunkSource.start_span).

Runs on the trio thread with no await: `on_open` only starts fetch tasks.
"""

import contextlib
from collections import OrderedDict

from ...errors import ArtifactfsError
from ...fetch import pieces_of

SLACK = 16
STRAGGLERS = 64  # opens this far behind the walk are ignored (slow threads of a parallel reader)
IN_ORDER_OPENS = 3
INITIAL_WINDOW = 8
MAX_WINDOW = 256
MAX_BYTES = 64 * 1024 * 1024
TRACKED_VERSIONS = 64
PACK_SHARE = 8  # a pack's files opened cold (1 in this many) before the rest of it is fetched


class _Walk:
    __slots__ = ("expected", "in_order", "window", "prefetched_to")

    def __init__(self, index: int):
        self.expected = index + 1
        self.in_order = 1
        self.window = 0
        self.prefetched_to = index + 1


class TreeReadAhead:
    def __init__(self, source):
        self.source = source  # reader.ChunkSource
        self._walks: OrderedDict[str, _Walk] = OrderedDict()

    def on_open(self, view, index: int) -> None:
        walk = self._walks.get(view.key)
        if walk is not None and walk.expected - STRAGGLERS <= index < walk.expected - SLACK:
            return  # a parallel reader lagging behind the walk: neither in order nor a reason to reset
        if walk is None or not walk.expected - SLACK <= index <= max(walk.expected, walk.prefetched_to) + SLACK:
            self._walks[view.key] = _Walk(index)
            self._walks.move_to_end(view.key)
            while len(self._walks) > TRACKED_VERSIONS:
                self._walks.popitem(last=False)
            return
        self._walks.move_to_end(view.key)
        walk.in_order += 1
        walk.expected = max(walk.expected, index + 1)
        if walk.in_order < IN_ORDER_OPENS:
            return
        walk.window = min(MAX_WINDOW, max(INITIAL_WINDOW, walk.window * 2))
        self._prefetch(view, walk, index)

    def _prefetch(self, view, walk: _Walk, index: int) -> None:
        if walk.prefetched_to - index > walk.window // 2:
            return  # still half a window ahead: top up in batches, so pack neighbours go in one GET
        m = view.manifest
        end = min(len(m), index + 1 + walk.window)
        start = max(walk.prefetched_to, index + 1)
        budget = MAX_BYTES
        i = start
        pieces = []
        while i < end and budget > 0:
            size = m.size_of(i)
            if 0 < size <= m.chunk_size:
                # e.g. a reference without checksum: its reader will report it
                with contextlib.suppress(ArtifactfsError):
                    pieces += pieces_of(m[i], m.chunk_size)
                budget -= size
            i += 1
        self.source.start_span(pieces, prefetch=True)  # neighbours in a pack: one GET per run
        walk.prefetched_to = max(walk.prefetched_to, i)


class PackReadAhead:
    """Read-ahead within a pack, for readers in no order (a shuffled epoch): small files are stored in
    packs of neighbours, and fetching them one ranged GET each costs the store several times the CPU
    of the bytes (a range inside an 8 MiB object) and the reader a round trip per file. Once cold
    opens have touched 1/PACK_SHARE of a pack's files of a version, the rest of them comes in one GET,
    into the disk cache and the memory LRU (files the disk cache holds already are left there). Before
    that each file is fetched alone, so a reader that samples a few files of a pack never pays for
    the whole of it: at most PACK_SHARE times the bytes it reads. Runs on the trio thread, no await."""

    def __init__(self, source, tracked: int = 4096):
        self.source = source  # reader.ChunkSource
        self.tracked = tracked
        # (version, pack) -> [cold opens left before the rest is fetched, first entry, end], None once fetched
        self._packs: OrderedDict[tuple[str, str], list[int] | None] = OrderedDict()

    def on_cold_open(self, view, index: int) -> None:
        m = view.manifest
        pack = m.pack_at(index)
        if pack is None:
            return
        key = (view.key, pack)
        state = self._packs.get(key, [])
        if state is None:
            return  # fetched already
        if not state:
            lo, hi = self._member_range(m, index, pack)
            state = self._packs[key] = [max(2, -(-(hi - lo) // PACK_SHARE)), lo, hi]
            while len(self._packs) > self.tracked:
                self._packs.popitem(last=False)
        state[0] -= 1
        if state[0] > 0:
            return
        self._packs[key] = None
        _, lo, hi = state
        pieces = []
        for i in range(lo, hi):
            with contextlib.suppress(ArtifactfsError):
                pieces += pieces_of(m[i], m.chunk_size)
        self.source.start_span(sorted(pieces, key=lambda p: p.start), prefetch=True, read_cached=False)

    @staticmethod
    def _member_range(m, index: int, pack: str, reach: int = 2 * MAX_WINDOW) -> tuple[int, int]:
        """Entries [lo, hi) around `index` whose bytes are in `pack`: a commit packs neighbours in path
        order, so a pack's files of a version are contiguous in its manifest."""
        lo = index
        while lo > 0 and index - lo < reach and m.pack_at(lo - 1) == pack:
            lo -= 1
        hi = index + 1
        while hi < len(m) and hi - index < reach and m.pack_at(hi) == pack:
            hi += 1
        return lo, hi
