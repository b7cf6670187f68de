"""Reusable page-aligned buffers for chunk-sized reads (used by the read-only mount).

Why: a cold sequential read through the mount is CPU-bound on a small machine, and a good part of that
CPU went into memory touched for the first time: every 8 MiB chunk received into a new bytes object
cost 2,048 page faults and as many pages cleared by the kernel, because the allocator returns big
blocks to the kernel when they are freed. A buffer from this pool is reused once nothing refers to it,
so receiving into it costs the copy and nothing else. Buffers are page-aligned, which also lets the
disk cache write them with O_DIRECT (cache.py), without a second copy into the page cache.

A buffer is a bytearray; callers get a memoryview of its page-aligned part, sliced to the size asked
for. It is free again once no view of it is alive: every view made from it holds exactly one reference
to the bytearray (through its shared managed buffer), so a reference count of "the pool's own" means
nobody is using it. (Transparent huge pages would make first touches cheaper still, but madvise did
not get any on the 2-core VM measured.) The check runs in take() only (CPython reference counts). Free buffers no longer
taken for IDLE_SECONDS are released by trim().
"""

import sys
import threading
import time
from ctypes import addressof, c_char

ALIGN = 4096
GRANULE = 1024 * 1024  # capacities are whole MiB, so the last chunk of a file can reuse a full one
IDLE_SECONDS = 30.0


def aligned_view(size: int) -> tuple[bytearray, memoryview]:
    """A new bytearray and a page-aligned memoryview of `size` bytes inside it."""
    raw = bytearray(size + ALIGN)
    return raw, _view(raw, size)


def is_aligned(data) -> bool:
    """True if `data` is a writable-or-not buffer starting on a page boundary (O_DIRECT needs it)."""
    if not isinstance(data, memoryview) or not data.c_contiguous or data.readonly:
        return False
    try:
        return addressof(c_char.from_buffer(data)) % ALIGN == 0
    except (TypeError, ValueError):
        return False


class BufferPool:
    def __init__(self, max_bytes: int, min_size: int = GRANULE):
        self.max_bytes = max_bytes  # what the pool keeps; beyond it, buffers are made and freed as usual
        self.min_size = min_size  # smaller requests are not worth pooling
        self._lock = threading.Lock()
        self._buffers: list[bytearray] = []
        self._capacity: list[int] = []
        self._kept = 0
        self._last_take = time.monotonic()
        self.reused = 0  # for tests and benchmarks
        self.made = 0

    def take(self, size: int) -> memoryview:
        """A page-aligned, writable view of `size` bytes (contents undefined)."""
        if size < self.min_size:
            return memoryview(bytearray(size))
        with self._lock:
            self._last_take = time.monotonic()
            buffers, capacity = self._buffers, self._capacity
            for i in range(len(buffers)):
                # 2 = the list's reference + getrefcount's argument: no view of it is alive
                if size <= capacity[i] <= 2 * size and sys.getrefcount(buffers[i]) == 2:
                    self.reused += 1
                    return _view(buffers[i], size)
            cap = -(-size // GRANULE) * GRANULE
            raw, _ = aligned_view(cap)  # the view is dropped at once
            self.made += 1
            if self._kept + cap <= self.max_bytes:
                buffers.append(raw)
                capacity.append(cap)
                self._kept += cap
            return _view(raw, size)

    def trim(self, idle: float = IDLE_SECONDS) -> int:
        """Release the free buffers if nothing was taken for `idle` seconds; returns bytes released."""
        with self._lock:
            if time.monotonic() - self._last_take < idle:
                return 0
            keep = [i for i in range(len(self._buffers)) if sys.getrefcount(self._buffers[i]) > 2]
            released = self._kept - sum(self._capacity[i] for i in keep)
            self._buffers = [self._buffers[i] for i in keep]
            self._capacity = [self._capacity[i] for i in keep]
            self._kept -= released
            return released

    @property
    def kept_bytes(self) -> int:
        return self._kept



def _view(raw: bytearray, size: int) -> memoryview:
    skip = -addressof(c_char.from_buffer(raw)) % ALIGN
    return memoryview(raw)[skip:skip + size]
