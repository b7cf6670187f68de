"""Wire a Client into the read-only filesystem and serve it in the foreground (what
`artifactfs mount --foreground` runs; the background daemon is the same command under daemon.py)."""

import logging
from typing import Callable

from ..client import Client
from .cache_writer import CacheWriter
from .daemon import Workers, check_mountpoint, run_foreground
from .namespace import Namespace
from .reader import ChunkSource
from .readonly import ReadOnlyFS

log = logging.getLogger(__name__)

NETWORK_THREADS = 32
CPU_THREADS = 4


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
    source = ChunkSource(client.fetcher, workers, timeout=timeout)
    fs = ReadOnlyFS(namespace, source)
    fsname = "artifactfs:" + client.store.url.replace(",", "_")
    try:
        run_foreground(fs, mountpoint, fsname=fsname, subtype="artifactfs", allow_other=allow_other,
                       read_only=True, debug=debug, on_ready=on_ready, services=source.attach)
    finally:
        writer.close()
