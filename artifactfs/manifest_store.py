"""Manifests on a store: loaded from memory (the last few), the local cache's columnar copy, the
store's columnar form or, failing those, the store's JSON (checked against its digest); stored once,
in both forms."""

import contextlib
import gzip
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from . import layout
from .errors import CorruptData, ObjectNotFound
from .hashing import digest_bytes
from .localfs import write_atomic
from .lru import LRU
from .manifest import Manifest, columnar
from .records import VersionRecord, parse_stored_manifest
from .store import ObjectStore

log = logging.getLogger(__name__)

IN_MEMORY = 8  # manifests kept parsed: a mount reads a few versions at a time


@dataclass(eq=False)
class VersionView:
    """A loaded version: its record and manifest (what the mount and fsspec read through)."""

    record: VersionRecord
    manifest: Manifest

    @property
    def key(self) -> str:
        return f"{self.record.artifact}:{self.record.version}"

    @property
    def ref(self) -> str:
        return str(self.record.ref)


class ManifestStore:
    def __init__(self, store: ObjectStore, cache_dir: str | None = None):
        self.store = store
        self.cache_dir = cache_dir  # the local columnar copies, under the piece cache's bound
        self.on_cached: Callable[[int], None] | None = None  # told the size of each copy written (the bound)
        self._manifests = LRU(IN_MEMORY)  # digest -> Manifest
        self._manifest_lock = threading.Lock()

    def get(self, digest: str) -> Manifest:
        """The manifest with this digest, from memory, the local cache, the store's columnar form or,
        failing those, the store's JSON (parsed, and its columnar form kept in the local cache)."""
        with self._manifest_lock:
            held = self._manifests.get(digest)
        if held is not None:
            return held
        manifest = self._cached_columns(digest)
        if manifest is None:
            manifest = self._columns_from_store(digest)
        if manifest is None:
            manifest = parse_stored_manifest(self.bytes_from_store(digest), digest)
            self._write_cached_columns(digest, columnar.encode(manifest))
        with self._manifest_lock:
            self._manifests.put(digest, manifest)
        return manifest

    def bytes_from_store(self, digest: str) -> bytes:
        """The canonical manifest bytes straight from the store, checked against their digest."""
        packed, _ = self.store.get(layout.manifest_key(digest))
        try:
            data = gzip.decompress(packed)
        except (OSError, EOFError):
            raise CorruptData(f"manifest {digest} in the store is not valid gzip") from None
        if digest_bytes(data) != digest:
            raise CorruptData(f"manifest {digest} in the store does not match its digest")
        return data

    def _columns_from_store(self, digest: str) -> Manifest | None:
        """The store's columnar form (written by commits since it exists); None when it is missing or
        unsound, so the JSON is parsed instead."""
        try:
            data, _ = self.store.get(layout.manifest_columns_key(digest))
            manifest = columnar.decode(data, digest)
        except ObjectNotFound:
            return None
        except CorruptData as exc:
            log.warning("%s; parsing the JSON manifest instead", exc)
            return None
        self._write_cached_columns(digest, data)
        return manifest

    def _columns_cache_path(self, digest: str) -> str | None:
        if not self.cache_dir:
            return None
        return os.path.join(self.cache_dir, digest[:2], digest + ".columns")

    def _cached_columns(self, digest: str) -> Manifest | None:
        path = self._columns_cache_path(digest)
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                manifest = columnar.decode(f.read(), digest, checked=True)  # written after checking
            os.utime(path)  # recently used: the cache's LRU eviction (cache.py) keeps it longer
            return manifest
        except OSError:
            return None
        except CorruptData:
            with contextlib.suppress(OSError):
                os.unlink(path)  # a damaged cache copy heals from the store
            return None

    def _write_cached_columns(self, digest: str, data: bytes) -> None:
        path = self._columns_cache_path(digest)
        if not path:
            return
        with contextlib.suppress(OSError):  # the cache is an optimisation; the store still has it
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            write_atomic(path, data, durable=False)  # a damaged copy is read from the store again
            if self.on_cached is not None:
                self.on_cached(len(data))

    def put(self, manifest: Manifest) -> str:
        """Store a manifest (once) and its columnar form (also added to a manifest stored before it existed)."""
        key, columns_key = layout.manifest_key(manifest.digest), layout.manifest_columns_key(manifest.digest)
        if not self.store.exists(key):
            self.store.put(key, gzip.compress(manifest.to_bytes(), compresslevel=6))
            self.store.put(columns_key, columnar.encode(manifest))  # new manifest: no HEAD needed
        elif not self.store.exists(columns_key):
            self.store.put(columns_key, columnar.encode(manifest))
        return manifest.digest
