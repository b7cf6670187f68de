"""Block lists: what lets a random read of a large file fetch and verify 64 KiB instead of a chunk.

A chunk (1 MiB) is the unit a manifest's digests verify, so without more a 4 KiB read of a cold file
fetches the 1 MiB around it, and an HDF5 or Parquet reader fetches several times what it uses. A
blob's *block list* is the xxh3-128 (16 bytes, binary) of each BLOCK_SIZE block of the blob, in order
(the last block may be shorter), stored as its own content-addressed object `blocks/<xx>/<digest>`;
the manifest entry names it (`blocks`: the list's own digest), so a reader that trusts the manifest
can trust a list whose digest matches, and then each block it checks against the list.

The list is an accelerator, never needed: an entry without one (written before, or by a writer that
skips it), a list missing from the store, or one that fails its digest is read by whole chunks as
before (the latter two logged). Writers add one PUT of 256 bytes per MiB to a commit of a new large
file; an unchanged file keeps the list its version already names (no request).
"""

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import xxhash

from . import layout
from .hashing import digest_bytes

log = logging.getLogger(__name__)

BLOCK_SIZE = 64 * 1024
DIGEST_BYTES = 16
_READ = 8 * 1024 * 1024


def list_length(size: int) -> int:
    """The byte length of the block list of a blob of `size` bytes."""
    return DIGEST_BYTES * -(-size // BLOCK_SIZE)


def of_bytes(data) -> bytes:
    view = memoryview(data)
    return b"".join(xxhash.xxh3_128_digest(view[i:i + BLOCK_SIZE]) for i in range(0, len(view), BLOCK_SIZE))


def _of_file(path: str | os.PathLike) -> tuple[bytes, str]:
    """(block list, whole-content digest) of a file's current content, read once 8 MiB at a time."""
    out = []
    whole = xxhash.xxh3_128()
    buf = bytearray(_READ)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            whole.update(view[:n])
            out.append(of_bytes(view[:n]))  # _READ is a multiple of BLOCK_SIZE: blocks never straddle reads
    return b"".join(out), whole.hexdigest()


def list_for(store, digest: str, source, known: str | None = None) -> str | None:
    """The digest of the block list of blob `digest`, whose bytes are `source` (in memory, or a file's
    path): `known` when a live version names one already (no request); else made from the source,
    stored (unless there) and returned, or None when the file no longer holds that content (it
    changed since it was hashed: the entry goes without a list rather than with a wrong one)."""
    if known is not None:
        return known
    if isinstance(source, (str, os.PathLike)):
        try:
            listing, whole = _of_file(source)
        except OSError as exc:
            log.warning("cannot read %s again for its block list: %s", source, exc.strerror)
            return None
        if whole != digest:
            log.warning("%s changed while it was committed: no block list for it", source)
            return None
    else:
        listing = of_bytes(source)
    listed = digest_bytes(listing)
    key = layout.blocks_key(listed)
    if not store.exists(key):
        store.put(key, listing)
    return listed


def add_lists(store, entries: list, sources: dict[str, str], known, threads: int = 4) -> list:
    """`entries` with a block list on each of several chunks that lacks one and whose bytes are the
    file `sources[digest]` (a stage's new files), made and stored in parallel."""
    todo = {e.digest for e in entries if e.chunks and not e.blocks and e.ref is None and e.digest in sources}
    with ThreadPoolExecutor(max(1, min(threads, len(todo)))) as pool:
        listed = dict(zip(todo, pool.map(lambda d: list_for(store, d, sources[d], known(d)), todo), strict=True))
    return [dataclasses.replace(e, blocks=listed[e.digest]) if e.digest in listed else e for e in entries]


@dataclass(frozen=True)
class BlockedBlob:
    """A blob a random read may fetch by blocks: its store key, content digest (the disk cache files
    fetched blocks under it, as runs), size, and the digest of its block list."""
    key: str
    digest: str
    size: int
    blocks: str

    @classmethod
    def of(cls, entry) -> "BlockedBlob | None":
        if not entry.blocks or entry.pack or entry.ref is not None or not entry.digest:
            return None
        return cls(layout.blob_key(entry.digest), entry.digest, entry.size, entry.blocks)

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """The blocks [first, last] that bytes [lo, hi) of the blob lie in."""
        return lo // BLOCK_SIZE, (hi - 1) // BLOCK_SIZE

    def block(self, i: int) -> tuple[int, int]:
        """(start, length) of block `i`."""
        start = i * BLOCK_SIZE
        return start, min(BLOCK_SIZE, self.size - start)


def usable(listing: bytes | None, blob: BlockedBlob) -> bool:
    """A fetched list is one to trust: of the right length and digest."""
    return listing is not None and len(listing) == list_length(blob.size) and digest_bytes(listing) == blob.blocks


def _digest_at(listing: bytes, i: int) -> bytes:
    return listing[DIGEST_BYTES * i:DIGEST_BYTES * (i + 1)]


def check_block(listing: bytes, i: int, data) -> bool:
    return xxhash.xxh3_128_digest(data) == _digest_at(listing, i)


def block_hex(listing: bytes, i: int) -> str:
    return _digest_at(listing, i).hex()
