"""The on-disk form of a cached piece: its bytes, then a table of the digests of its blocks.

A piece (a whole small file, or one chunk of a large one) is verified against its own digest when it
is fetched. The cache file keeps, after the piece's bytes, the xxh3-64 of every BLOCK-sized block of
them, computed from those verified bytes. Every read from the cache is then checked again, at a cost
in proportion to what it reads: a whole read against the piece's digest, a ranged read (a 4 KiB
random read inside an 8 MiB chunk) against the digests of the blocks it covers only. A file of any
other length than the piece plus its table, or whose bytes fail either check, is damaged: the caller
drops it and fetches the piece again. The table is not trusted either: a damaged entry fails its
block, which is dropped the same way.

Files without a table (written by artifactfs before 0.2) are still read, checked whole every time.

BLOCK is 16 KiB: the table costs 0.1 % of the piece and ~0.4 ms of CPU per 8 MiB when it is
written (4 KiB blocks cost 1.2 ms, which matters on the cold path of a 2-core machine); a 4 KiB read
reads and hashes at most 32 KiB instead of the whole chunk.
"""

import os

import xxhash

from .hashing import digest_bytes

BLOCK = 16 * 1024
_ENTRY = 8  # bytes of one block digest in the table


def table_size(length: int) -> int:
    return -(-length // BLOCK) * _ENTRY


def block_table(data) -> bytes:
    """The table of `data`'s block digests (as stored after the piece's bytes)."""
    view, h = memoryview(data), xxhash.xxh3_64_digest
    return b"".join([h(view[i:i + BLOCK]) for i in range(0, len(view), BLOCK)])


def has_table(file_size: int, length: int) -> bool | None:
    """True if a cache file of `file_size` bytes holds a `length`-byte piece and its table, False if
    it holds the piece alone (an older cache), None if it is of neither length: damaged."""
    if file_size == length + table_size(length):
        return True
    return False if file_size == length else None


def piece_length(file_size: int) -> int:
    """The length of the piece in a cache file with a table, from the file's size (for `cache verify`,
    which has no manifest at hand); check the answer with has_table."""
    return file_size - _ENTRY * -(-file_size // (BLOCK + _ENTRY))


def whole_ok(data, digest: str) -> bool:
    return digest_bytes(data) == digest


def read_range(fd: int, length: int, start: int, size: int) -> bytes | None:
    """Bytes [start, start + size) of the piece in the open cache file `fd` (which holds a table),
    each block they touch checked against its table entry; None if one fails (damaged)."""
    first, last = start // BLOCK, (start + size - 1) // BLOCK
    lo, hi = first * BLOCK, min((last + 1) * BLOCK, length)
    data = os.pread(fd, hi - lo, lo)
    table = os.pread(fd, (last + 1 - first) * _ENTRY, length + first * _ENTRY)
    if len(data) != hi - lo or table != block_table(data):
        return None
    return data[start - lo:start - lo + size]


def file_ok(path: str, digest: str) -> bool:
    """Whether the cache file `path` holds the piece `digest` intact, table included (`cache verify`)."""
    with open(path, "rb") as f:
        raw = f.read()
    length = piece_length(len(raw))
    if has_table(len(raw), length) and whole_ok(memoryview(raw)[:length], digest):
        return raw[length:] == block_table(memoryview(raw)[:length])
    return whole_ok(raw, digest)  # an older file without a table
