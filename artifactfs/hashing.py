"""Content digests: xxh3-128 of a file's bytes, and of each fixed-size chunk of a large file."""

import os

import xxhash

# The chunk size new manifests are written with: the unit of verification and of the disk cache. 1 MiB,
# so that a random read (sqlite, HDF5, parquet footers) and the first byte of a file wait for 1 MiB, not
# 8; sequential readers still GET READ_BLOCK at a time (runs of chunks, each checked). Manifests written
# with 8 MiB chunks (OLD_CHUNK_SIZE) stay as they are: the chunk size is the manifest's (FORMAT.md).
CHUNK_SIZE = 1024 * 1024
OLD_CHUNK_SIZE = 8 * 1024 * 1024  # what artifactfs wrote before; also the chunk size of drafts begun then
READ_BLOCK = 8 * 1024 * 1024  # one ranged GET of a sequential or whole-object read: the size S3 favours
DIGEST_HEX_LEN = 32


def digest_bytes(data: bytes | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def is_digest(text: str) -> bool:
    return len(text) == DIGEST_HEX_LEN and all(c in "0123456789abcdef" for c in text)


class StreamHasher:
    """Hashes a byte stream as it is written: whole-content digest plus one digest per chunk."""

    def __init__(self, chunk_size: int = CHUNK_SIZE):
        self.chunk_size = chunk_size
        self.size = 0
        self._whole = xxhash.xxh3_128()
        self._chunk = xxhash.xxh3_128()
        self._chunk_fill = 0
        self.chunk_digests: list[str] = []

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._whole.update(view)
        self.size += len(view)
        while len(view):
            take = min(len(view), self.chunk_size - self._chunk_fill)
            self._chunk.update(view[:take])
            self._chunk_fill += take
            view = view[take:]
            if self._chunk_fill == self.chunk_size:
                self.chunk_digests.append(self._chunk.hexdigest())
                self._chunk.reset()
                self._chunk_fill = 0

    def finish(self) -> tuple[int, str, list[str] | None]:
        """Return (size, digest, chunk digests or None when the content fits in one chunk)."""
        chunks = list(self.chunk_digests)
        if self._chunk_fill:
            chunks.append(self._chunk.hexdigest())
        return self.size, self._whole.hexdigest(), (chunks if self.size > self.chunk_size else None)


def hash_bytes(data: bytes, chunk_size: int = CHUNK_SIZE) -> tuple[int, str, list[str] | None]:
    """(size, digest, chunk digests or None) of content held in memory."""
    if len(data) <= chunk_size:
        return len(data), digest_bytes(data), None
    hasher = StreamHasher(chunk_size)
    hasher.update(data)
    return hasher.finish()


def hash_file(path: str | os.PathLike | int, chunk_size: int = CHUNK_SIZE) -> tuple[int, str, list[str] | None]:
    hasher = StreamHasher(chunk_size)
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size < chunk_size:  # a small file: one read, no chunk-sized buffer to allocate
            return hash_bytes(f.read(), chunk_size)
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            hasher.update(view[:n])
    return hasher.finish()
