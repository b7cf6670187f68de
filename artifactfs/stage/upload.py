"""Uploading a stage's new blobs: small ones into packs (packs.py), big ones only if the store lacks
them, found with as few requests as possible, then uploaded in parallel.

Asking per blob (HEAD) costs one request each: 5,000 small files are 5,000 HEADs before 5,000 PUTs,
and on a small machine the CPU per request is what bounds a commit. Blob keys are grouped by the first
two hex digits of the digest, so listing the groups the new blobs fall in answers for all of them at
~1 request per 1,000 keys in those groups. We list while that stays under half the HEADs it replaces
(a store of N blobs costs about N/1000 requests), and fall back to HEADs otherwise.
"""

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .. import layout
from ..packs import PACK_FILE_MAX, Packer, Slot
from ..store import ObjectStore
from ..store.base import CheckedSource

THREADS = 16
KEYS_PER_LIST = 1000


def listed_blobs(store: ObjectStore, digests: set[str]) -> set[str] | None:
    """Which of `digests` the store has, by listing; None when listing would cost more than asking."""
    groups = sorted({d[:2] for d in digests})
    budget = len(digests) // 2
    if len(groups) > budget:
        return None
    found: set[str] = set()
    spent = 0
    for group in groups:
        spent += 1
        for count, info in enumerate(store.list(f"blobs/{group}/"), 1):
            name = info.key.rsplit("/", 1)[-1]
            if name in digests:
                found.add(name)
            if count % KEYS_PER_LIST == 0:
                spent += 1
                if spent > budget:
                    return None
    return found


def upload_missing(store: ObjectStore, blobs: list[tuple[str, str, int]],
                   progress: Callable[[int], None] | None = None, threads: int = THREADS,
                   known: Callable[[str], tuple | None] = lambda digest: None,
                   pack_max: int = PACK_FILE_MAX) -> tuple[int, int, dict[str, tuple[str | None, int]]]:
    """Upload the (digest, local path, size) blobs the store lacks: up to `pack_max` bytes into packs,
    bigger ones as blobs. Content `known(digest)` locates in a live version is not uploaded again.
    Returns (objects uploaded, bytes uploaded, digest -> (pack, offset) of every placed or known blob
    that is in a pack)."""
    unique: dict[str, tuple[str, int]] = {}
    for digest, path, size in blobs:
        unique.setdefault(digest, (path, size))
    located = {d: loc for d in unique if (loc := known(d)) is not None}
    small = [d for d, (_, size) in unique.items() if d not in located and 0 < size <= pack_max]
    big = {d: v for d, v in unique.items() if d not in located and not 0 < v[1] <= pack_max}
    have = listed_blobs(store, set(big)) if big else set()
    counts = [0, 0]
    lock = threading.Lock()
    packer = Packer(store)
    slots: dict[str, Slot] = {}

    def pack_one(seq, digest):
        path, size = unique[digest]
        with CheckedSource(path, size, digest) as source:
            data = source.read_all()  # the bytes packed are the bytes recorded, or nothing is committed
        slots[digest] = packer.add(seq, data)
        if progress:
            progress(size)

    def one(item):
        digest, (path, size) = item
        key = layout.blob_key(digest)
        present = digest in have if have is not None else store.exists(key)
        if not present:
            store.put_file(key, path, size, digest)  # hashed as it is sent: damage on disk is refused
            with lock:
                counts[0] += 1
                counts[1] += size
        if progress:
            progress(size)

    # the biggest first, so one large blob does not start last and finish alone; small files in
    # path order (the caller's), so neighbours share a pack
    items = sorted(big.items(), key=lambda kv: -kv[1][1])
    tasks = ([functools.partial(one, item) for item in items]
             + [functools.partial(pack_one, i, d) for i, d in enumerate(small)])
    with ThreadPoolExecutor(max(1, min(threads, len(tasks)))) as pool:
        for _ in pool.map(lambda task: task(), tasks):
            pass
    packer.finish()
    if progress:
        for digest in located:
            progress(unique[digest][1])
    places = {d: (slot.pack, slot.offset) for d, slot in slots.items()}
    places.update((d, loc) for d, loc in located.items() if loc[0])
    return counts[0] + packer.packs, counts[1] + packer.uploaded_bytes, places
