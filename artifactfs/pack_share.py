"""When to fetch the rest of a pack, for readers in no order (a shuffled epoch), through the mount or
fsspec alike.

Small files are stored in packs of neighbours, and fetching them one ranged GET each costs the store
several times the CPU of the bytes (a range inside an 8 MiB object) and the reader a round trip per
file. Once cold reads have touched 1/PACK_SHARE of a pack's files of a version, the rest of them is
worth one GET into the disk cache. Before that each file is fetched alone, so a reader that samples a
few files of a pack never pays for the whole of it: at most PACK_SHARE times the bytes it reads.
"""

import contextlib
import threading

from .errors import ArtifactfsError
from .fetch import Piece, pieces_of
from .lru import LRU

PACK_SHARE = 8  # a pack's files read cold (1 in this many) before the rest of it is fetched
REACH = 512  # entries looked at either side of a file for the rest of its pack


class PackShare:
    """Counts cold reads per (version, pack); thread-safe (fsspec readers), cheap on the trio thread."""

    def __init__(self, tracked: int = 4096):
        # (version, pack) -> [cold reads left before the rest is fetched, first entry, end], None once due
        self._packs = LRU(tracked)
        self._lock = threading.Lock()

    def on_cold_read(self, version: str, manifest, index: int) -> list[Piece]:
        """The pieces of the rest of `index`'s pack (in store order) when this cold read of entry
        `index` of `version` makes it due; [] otherwise, and for every later read of that pack."""
        pack = manifest.pack_at(index)
        if pack is None:
            return []
        key = (version, pack)
        with self._lock:
            state = self._packs.get(key, [])
            if state is None:
                return []  # fetched already
            if not state:
                lo, hi = _member_range(manifest, index, pack)
                state = self._packs.put(key, [max(2, -(-(hi - lo) // PACK_SHARE)), lo, hi])
            state[0] -= 1
            if state[0] > 0:
                return []
            self._packs[key] = None
        _, lo, hi = state
        pieces: list[Piece] = []
        for i in range(lo, hi):
            with contextlib.suppress(ArtifactfsError):  # a hostile entry: its own read reports it
                pieces += pieces_of(manifest[i], manifest.chunk_size)
        return sorted(pieces, key=lambda p: p.start)


def _member_range(m, index: int, pack: str) -> tuple[int, int]:
    """Entries [lo, hi) around `index` whose bytes are in `pack`: a commit packs neighbours in path
    order, so a pack's files of a version are contiguous in its manifest."""
    lo = index
    while lo > 0 and index - lo < REACH and m.pack_at(lo - 1) == pack:
        lo -= 1
    hi = index + 1
    while hi < len(m) and hi - index < REACH and m.pack_at(hi) == pack:
        hi += 1
    return lo, hi
