"""Seekable, verified reading of one file of a version without a mount: what `ArtifactEntry.open()`
and the files of the fsspec filesystem read through.

`EntryReader.read(start, end)` returns checked bytes (Fetcher.read_range): a random read fetches only
the pieces it touches (a cached piece reads only the cache blocks it needs). A read that starts where
the previous one ended widens a read-ahead window, doubling from one chunk up to READ_AHEAD, so a
stream costs one GET per 8 MiB instead of one per small read; the bytes read ahead are kept until a
read leaves them.
"""

import io
import threading
from collections.abc import Callable

from .blocks import BlockedBlob
from .fetch import Fetcher, Piece, pieces_of
from .hashing import READ_BLOCK
from .manifest import Entry
from .references import is_unchecked

READ_AHEAD = 2 * READ_BLOCK


class EntryReader:
    """Reads of one entry; safe to call from several threads (the window is the only shared state)."""

    def __init__(self, fetcher: Fetcher, entry: Entry, chunk_size: int, on_miss: Callable[[], None] | None = None,
                 pieces: list[Piece] | None = None):
        self._fetcher = fetcher
        self._on_miss = on_miss  # called when a read has to fetch (Fetcher.read_range)
        self._unchecked = entry.ref if is_unchecked(entry) else None
        # CorruptData if hostile; `pieces` when the caller holds them already (pieces_of of this entry)
        self._pieces = [] if self._unchecked else pieces if pieces is not None else pieces_of(entry, chunk_size)
        self._blob = None if self._unchecked else BlockedBlob.of(entry)  # random reads: by 64 KiB blocks
        self._chunk = min(chunk_size, READ_AHEAD)
        self.size = entry.size
        self._lock = threading.Lock()
        self._window, self._window_start = b"", 0  # bytes read ahead, and where they start
        self._next = 0  # where a sequential read would start
        self._ahead = 0
        if self._unchecked:  # checksum=False: only the URI is known; what it holds now is read whole
            self._window = b"".join(fetcher.references.stream(self._unchecked))
            self.size = len(self._window)

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file (cut at its end), verified."""
        end = min(end, self.size)
        if start >= end:
            return b""
        with self._lock:
            held, at = self._window, self._window_start
            if at <= start and end <= at + len(held):
                self._next = end
                return held[start - at:end - at]
            self._ahead = min(READ_AHEAD, max(2 * self._ahead, self._chunk)) if start == self._next else 0
            self._next = end
            stop = min(self.size, max(end, start + self._ahead))
        blob = self._blob if stop == end else None  # not reading ahead: a random read
        # outside the lock: reads may overlap
        data = self._fetcher.read_range(self._pieces, start, stop, self._on_miss, blob)
        if stop > end:
            with self._lock:
                self._window, self._window_start = data, start
            return data[:end - start]
        return data


class EntryFile(io.RawIOBase):
    """A raw binary file over an EntryReader (wrapped in io.BufferedReader by `open_entry`)."""

    def __init__(self, reader: EntryReader, name: str):
        self._reader, self.name, self._pos = reader, name, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._reader.read(self._pos, self._pos + len(buffer))
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        data = self._reader.read(self._pos, self._reader.size)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._reader.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def open_entry(fetcher: Fetcher, entry: Entry, chunk_size: int, name: str) -> io.BufferedReader:
    """A seekable binary file of `entry`'s verified bytes, read as they are asked for."""
    return io.BufferedReader(EntryFile(EntryReader(fetcher, entry, chunk_size), name), buffer_size=64 * 1024)
