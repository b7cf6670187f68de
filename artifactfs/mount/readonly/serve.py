"""Wire a Client into the read-only filesystem and serve it in the foreground (what
`artifactfs mount --foreground` runs; the background daemon is the same command under daemon.py)."""

import logging
from collections.abc import Callable

import trio

from ...buffers import BufferPool
from ...cache_writer import MAX_PENDING, CacheWriter
from ...client import Client
from ..daemon import Workers, run_foreground
from ..process import check_mountpoint, readonly_fsname
from ..reader import MEMORY_BYTES, ChunkSource
from .fs import ReadOnlyFS
from .namespace import Namespace

log = logging.getLogger(__name__)

NETWORK_THREADS = 32
CPU_THREADS = 4
TRIM_EVERY = 10.0  # seconds between checks for idle pooled buffers


def serve_readonly(client: Client, mountpoint: str, *, alias_ttl: float = 2.0, allow_other: bool = False,
                   debug: bool = False, on_ready: Callable[[], None] | None = None) -> None:
    """Mount the store of `client` read-only on `mountpoint` and serve until unmounted."""
    mountpoint = check_mountpoint(mountpoint)
    client.store.check_access()  # an unreachable store or bad credentials: one clear error, no mount
    timeout = client.settings.timeout
    workers = Workers(network=NETWORK_THREADS, cpu=CPU_THREADS)
    namespace = Namespace(client.repo, workers, alias_ttl=alias_ttl, listing_ttl=alias_ttl, timeout=timeout)
    writer = CacheWriter(client.cache)
    client.fetcher.cache_writer = writer
    # chunks live in the memory LRU, the cache writer's queue and in flight: pool about that much
    pool = BufferPool(MEMORY_BYTES + MAX_PENDING + 64 * 1024 * 1024)
    use_buffers = getattr(client.store, "use_buffers", None)
    if use_buffers is not None:
        use_buffers(pool)
    client.cache.buffers = pool
    source = ChunkSource(client.fetcher, workers, timeout=timeout)
    fs = ReadOnlyFS(namespace, source)

    def services(nursery: trio.Nursery) -> None:
        source.attach(nursery)
        nursery.start_soon(_trim_buffers, pool)

    fsname = readonly_fsname(client.store.url)
    try:
        run_foreground(fs, mountpoint, fsname=fsname, subtype="artifactfs", allow_other=allow_other,
                       read_only=True, debug=debug, on_ready=on_ready, services=services)
    finally:
        writer.close()
        log.info("read buffers: %d made, %d reused; %d pieces not cached (cache writes behind); "
                 "%d small files handed to the page cache with their open", pool.made, pool.reused, writer.skipped,
                 fs.page_cache_fills)


async def _trim_buffers(pool: BufferPool) -> None:
    """Give back pooled buffers once reading has stopped for a while (trim is cheap: a list scan)."""
    while True:
        await trio.sleep(TRIM_EVERY)
        released = pool.trim()
        if released:
            log.debug("released %d MiB of idle read buffers", released >> 20)
