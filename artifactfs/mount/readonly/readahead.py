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

from ...errors import ArtifactfsError
from ...fetch import pieces_of
from ...lru import LRU
from ...pack_share import PackShare

SLACK = 16
STRAGGLERS = 64  # opens this far behind the walk are ignored (slow threads of a parallel reader)
IN_ORDER_OPENS = 3
INITIAL_WINDOW = 8
MAX_WINDOW = 256
MAX_BYTES = 64 * 1024 * 1024
TRACKED_VERSIONS = 64


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
        self._walks = LRU(TRACKED_VERSIONS)  # version key -> its walk

    def on_open(self, view, index: int) -> None:
        walk = self._walks.get(view.key)
        if walk is not None and walk.expected - STRAGGLERS <= index < walk.expected - SLACK:
            return  # a parallel reader lagging behind the walk: neither in order nor a reason to reset
        if walk is None or not walk.expected - SLACK <= index <= max(walk.expected, walk.prefetched_to) + SLACK:
            self._walks.put(view.key, _Walk(index))
            return
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
    """The rest of a pack fetched in one GET once enough of its files were opened cold (pack_share.py),
    into the disk cache and the memory LRU (files the disk cache holds already are left there). Runs
    on the trio thread, no await."""

    def __init__(self, source, tracked: int = 4096):
        self.source = source  # reader.ChunkSource
        self.share = PackShare(tracked)

    def on_cold_open(self, view, index: int) -> None:
        pieces = self.share.on_cold_read(view.key, view.manifest, index)
        if pieces:
            self.source.start_span(pieces, prefetch=True, read_cached=False)
