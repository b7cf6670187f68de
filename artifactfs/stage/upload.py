"""Uploading a stage's new blobs: find which ones the store lacks with as few requests as possible,
then upload those in parallel.

Asking per blob (HEAD) costs one request each: 5,000 small files are 5,000 HEADs before 5,000 PUTs,
and on a small machine the CPU per request is what bounds a commit. Blob keys are grouped by the first
two hex digits of the digest, so listing the groups the new blobs fall in answers for all of them at
~1 request per 1,000 keys in those groups. We list while that stays under half the HEADs it replaces
(a store of N blobs costs about N/1000 requests), and fall back to HEADs otherwise.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .. import layout
from ..store import ObjectStore

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
        count = 0
        for info in store.list(f"blobs/{group}/"):
            name = info.key.rsplit("/", 1)[-1]
            if name in digests:
                found.add(name)
            count += 1
            if count % KEYS_PER_LIST == 0:
                spent += 1
                if spent > budget:
                    return None
    return found


def upload_missing(store: ObjectStore, blobs: list[tuple[str, str, int]],
                   progress: Callable[[int], None] | None = None, threads: int = THREADS) -> tuple[int, int]:
    """Upload the (digest, local path, size) blobs the store lacks. Returns (blobs, bytes) uploaded."""
    unique: dict[str, tuple[str, int]] = {}
    for digest, path, size in blobs:
        unique.setdefault(digest, (path, size))
    have = listed_blobs(store, set(unique))
    counts = [0, 0]
    lock = threading.Lock()

    def one(item):
        digest, (path, size) = item
        key = layout.blob_key(digest)
        present = digest in have if have is not None else store.exists(key)
        if not present:
            store.put_file(key, path, size)
            with lock:
                counts[0] += 1
                counts[1] += size
        if progress:
            progress(size)

    # the biggest first, so one large blob does not start last and finish alone
    items = sorted(unique.items(), key=lambda kv: -kv[1][1])
    with ThreadPoolExecutor(max(1, min(threads, len(items)))) as pool:
        for _ in pool.map(one, items):
            pass
    return counts[0], counts[1]
