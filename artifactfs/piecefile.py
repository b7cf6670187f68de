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

BLOCK is 4 KiB, the page size, so that a 4 KiB random read (sqlite, fio) reads and hashes 4 KiB plus
one 8-byte table entry: read amplification ~1 instead of ~4 with the 16 KiB blocks of earlier caches
(still read: a file's size says which block size its table has). Writing the table costs ~0.6 ms of
CPU per 8 MiB, against ~0.3 ms at 16 KiB; a cold read spends ~10 ms per 8 MiB elsewhere.
"""

import os

import xxhash

from .hashing import digest_bytes

BLOCK = 4 * 1024
OLD_BLOCK = 16 * 1024  # the block of tables written by earlier releases
_ENTRY = 8  # bytes of one block digest in the table


def table_size(length: int, block: int = BLOCK) -> int:
    return -(-length // block) * _ENTRY


def block_table(data, block: int = BLOCK) -> bytes:
    """The table of `data`'s block digests (as stored after the piece's bytes)."""
    view, h = memoryview(data), xxhash.xxh3_64_digest
    return b"".join([h(view[i:i + block]) for i in range(0, len(view), block)])


def table_block(file_size: int, length: int) -> int | None:
    """The block size of the table in a cache file of `file_size` bytes holding a `length`-byte piece;
    0 if it holds the piece alone (an older cache), None if it is of no such length: damaged. (Up to
    4 KiB both block sizes give the same one-entry table.)"""
    for block in (BLOCK, OLD_BLOCK):
        if _holds(file_size, length, block):
            return block
    return 0 if file_size == length else None


def layouts(file_size: int) -> list[tuple[int, int]]:
    """What a cache file of `file_size` bytes may hold, from its size alone (for `cache verify`, which
    has no manifest at hand): (length of the piece, block size of its table) for each block size the
    size fits, then (file_size, 0), a piece without a table. Only the digest tells which one it is."""
    out = []
    for block in (BLOCK, OLD_BLOCK):
        length = file_size - _ENTRY * -(-file_size // (block + _ENTRY))
        if _holds(file_size, length, block):
            out.append((length, block))
    return [*out, (file_size, 0)]


def _holds(file_size: int, length: int, block: int) -> bool:
    """Whether a cache file of `file_size` bytes is a `length`-byte piece and its table of `block`s."""
    return file_size == length + table_size(length, block)


def whole_ok(data, digest: str) -> bool:
    return digest_bytes(data) == digest


def read_range(fd: int, length: int, start: int, size: int, block: int = BLOCK) -> bytes | None:
    """Bytes [start, start + size) of the piece in the open cache file `fd` (which holds a table of
    `block`-sized blocks), each block they touch checked against its table entry; None if one fails."""
    first, last = start // block, (start + size - 1) // block
    lo, hi = first * block, min((last + 1) * block, length)
    data = os.pread(fd, hi - lo, lo)
    table = os.pread(fd, (last + 1 - first) * _ENTRY, length + first * _ENTRY)
    if len(data) != hi - lo or table != block_table(data, block):
        return None
    return data[start - lo:start - lo + size]


def file_ok(path: str, digest: str) -> bool:
    """Whether the cache file `path` holds the piece `digest` intact, table included (`cache verify`)."""
    with open(path, "rb") as f:
        raw = f.read()
    view = memoryview(raw)
    for length, block in layouts(len(raw)):
        if whole_ok(view[:length], digest):
            return not block or raw[length:] == block_table(view[:length], block)
    return False
