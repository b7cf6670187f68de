"""Packs: many small files stored as one object.

A file of up to PACK_FILE_MAX bytes that a commit has to upload goes into a pack instead of its own
blob. A pack is the plain concatenation of such files, stored at `packs/<xx>/<xxh3-128 of the pack>`;
the manifest entry of each file records the pack and the offset (docs/FORMAT.md). One PUT carries
hundreds of files instead of one each, and one ranged GET reads a run of neighbours back, which is
what makes committing and cold-reading many small files fast: per-request cost, not bandwidth, bounds
them. Each file is still verified by its own digest when read.

Packs are immutable and never rewritten in normal operation: gc deletes a pack once no live entry
names it. The one exception is `restore_pack`, which puts back the bytes a commit relies on if a
concurrent gc removed the pack (see commit.protect_commit).
"""

import threading
from dataclasses import dataclass
from typing import Any

from .errors import ObjectNotFound, PreconditionFailed
from .hashing import digest_bytes
from .layout import blob_key, pack_key
from .manifest import Entry
from .store import ObjectStore

PACK_FILE_MAX = 1024 * 1024  # files up to this size are packed
PACK_TARGET = 8 * 1024 * 1024  # a pack is sealed before it would grow past this (one lean PUT)


@dataclass
class Slot:
    """Where one file landed: `pack` is set once its pack is uploaded."""

    offset: int
    pack: str | None = None


@dataclass(frozen=True)
class Member:
    """A file a commit placed (or reuses) in a pack, with its local source for restore_pack."""

    offset: int
    size: int
    source: str | bytes  # local path, or the bytes themselves


class Packer:
    """Collects small files from any number of threads into packs, in a fixed order, and uploads each
    pack when full.

    Every file of a commit has a sequence number (its place in path order) and is either `add`ed or
    `skip`ped; files are placed in sequence order whatever order the threads deliver them in, so packs
    hold path neighbours (what readers of a directory fetch together) and are the same on every run.
    The thread that completes a pack uploads it, in parallel with further adds. Call `finish()` after
    the last add; every Slot has its pack and offset then.
    """

    def __init__(self, store: ObjectStore, target: int = PACK_TARGET):
        self.store = store
        self.target = target
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[bytes, Slot] | None] = {}  # delivered ahead of their turn
        self._next = 0
        self._buf = bytearray()
        self._slots: list[Slot] = []
        self.uploaded_bytes = 0
        self.packs = 0

    def add(self, seq: int, data: bytes) -> Slot:
        slot = Slot(-1)
        self._deliver(seq, (data, slot))
        return slot

    def skip(self, seq: int) -> None:
        """File `seq` is not packed (big, or already stored)."""
        self._deliver(seq, None)

    def _deliver(self, seq: int, item) -> None:
        full = []
        with self._lock:
            self._pending[seq] = item
            while self._next in self._pending:
                item = self._pending.pop(self._next)
                self._next += 1
                if item is None:
                    continue
                data, slot = item
                if self._buf and len(self._buf) + len(data) > self.target:
                    full.append(self._take())
                slot.offset = len(self._buf)
                self._buf += data
                self._slots.append(slot)
        for pack in full:
            self._upload(*pack)

    def finish(self) -> None:
        with self._lock:
            if self._pending:
                raise RuntimeError(f"packer: files {sorted(self._pending)[:3]}... delivered after a gap")
            rest = self._take() if self._buf else None
        if rest is not None:
            self._upload(*rest)

    def _take(self) -> tuple[bytes, list[Slot]]:
        taken = bytes(self._buf), self._slots
        self._buf, self._slots = bytearray(), []
        return taken

    def _upload(self, data: bytes, slots: list[Slot]) -> None:
        digest = digest_bytes(data)
        self.store.put(pack_key(digest), data)
        with self._lock:
            self.uploaded_bytes += len(data)
            self.packs += 1
        for slot in slots:
            slot.pack = digest


def protect_sources(entries: list[Entry], sources: list[str | bytes]) -> dict[str, object]:
    """What commit.protect_commit needs to put back each object a commit relies on: blob key -> local
    source, pack key -> [Member]. `sources[i]` is the local path (or bytes) of `entries[i]`."""
    out: dict[str, Any] = {}
    for e, source in zip(entries, sources, strict=False):
        if not e.size or e.ref is not None:
            continue
        if e.pack:
            out.setdefault(pack_key(e.pack), []).append(Member(e.offset, e.size, source))
        else:
            out[blob_key(e.digest or "")] = source  # a stored entry has a digest
    return out


def restore_pack(store: ObjectStore, key: str, members: list[Member], attempts: int = 20) -> None:
    """Make `key` hold each member's bytes at its offset, merging with whatever is there (another
    commit restoring other members of the same pack at the same time): read, overlay, write back with a
    conditional put, retry on a lost race. Bytes no member covers are zeros; only files of versions gc
    already found dead lived there."""
    for _ in range(attempts):
        try:
            current, etag = store.get(key)
        except ObjectNotFound:
            current, etag = b"", None
        buf = bytearray(current)
        for m in members:
            data = m.source if isinstance(m.source, (bytes, bytearray)) else _read(m.source, m.size)
            end = m.offset + m.size
            if len(buf) < end:
                buf.extend(bytes(end - len(buf)))
            buf[m.offset:end] = data
        if buf == current:
            return
        try:
            if etag is None:
                store.put_if_absent(key, bytes(buf))
            else:
                store.put_if_match(key, bytes(buf), etag)
            return
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"could not restore {key}: too many concurrent writers")


def _read(path: str, size: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(size + 1)
    if len(data) != size:
        raise PreconditionFailed(f"{path} changed since it was committed; cannot restore its pack")
    return data
