"""The object store interface every backend implements.

Keys are `/`-separated strings relative to the store's root. All methods block; async callers run
them in worker threads. Failures are ArtifactfsErrors: ObjectNotFound, PreconditionFailed,
StoreUnavailable, PermissionDenied, LocalIOError.
"""

import builtins
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import xxhash

from ..errors import LocalIOError


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    mtime: float  # seconds since the epoch


@dataclass(frozen=True)
class PendingUpload:
    """An upload that was begun and never completed (a multipart upload, a local temp file): what a
    killed commit leaves. gc aborts those older than its grace period."""

    key: str
    upload_id: str  # the backend's handle: an S3 UploadId, a local store's temp file path
    started: float  # seconds since the epoch
    size: int  # bytes it holds so far


class ObjectStore(ABC):
    url: str

    def pending_uploads(self) -> "builtins.list[PendingUpload]":
        """Uploads begun and never completed; none where the backend keeps no such state."""
        return []

    def abort_upload(self, upload: PendingUpload) -> None:
        """Drop an upload pending_uploads gave (its parts and the space they take)."""
        raise NotImplementedError(f"{type(self).__name__} lists no pending uploads")

    @abstractmethod
    def get(self, key: str) -> tuple[bytes, str]:
        """Return (content, etag)."""

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        """Return up to `length` bytes from `start`."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> str:
        """Write unconditionally; return the new etag."""

    @abstractmethod
    def put_file(self, key: str, path: str, size: int, digest: str | None = None) -> None:
        """Upload a local file (multipart where the backend has it). With `digest`, the bytes sent
        are hashed as they are read (no second pass) and the object is not created unless they are
        `size` bytes of that digest: LocalIOError otherwise (the file changed or was damaged)."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create `key`; raise PreconditionFailed if it exists."""

    @abstractmethod
    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace `key` only if its etag is still `etag`; raise PreconditionFailed otherwise."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Return the object's info; raise ObjectNotFound."""

    @abstractmethod
    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order; only keys after `start_after`
        when given (S3's StartAfter: what was listed before costs nothing)."""

    def list_dirs(self, prefix: str) -> "builtins.list[str]":  # (the method `list` shadows the type here)
        """The distinct next path segments of keys under `prefix` (which ends with "/") that have a
        segment after them: the "subdirectories" of `prefix`, sorted. Backends answer it without
        listing every key below (S3: a delimiter listing); this default does list them."""
        names = {info.key[len(prefix):].split("/", 1)[0] for info in self.list(prefix)
                 if "/" in info.key[len(prefix):]}
        return sorted(names)

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; absent keys are not an error."""

    def exists(self, key: str) -> bool:
        from ..errors import ObjectNotFound

        try:
            self.head(key)
            return True
        except ObjectNotFound:
            return False

    def check_access(self) -> None:
        """Fail fast with a clear error if the store is unreachable or refuses the credentials."""
        self.list_dirs("artifacts/")  # one request, whatever the store holds

    def close(self) -> None:  # noqa: B027 - optional: a store with no connections has nothing to close
        pass


class CheckedSource:
    """A local file being uploaded, read once and hashed on the way (put_file): `check()` at the end
    says whether the bytes read are the ones recorded, before the upload is made visible."""

    def __init__(self, path: str, size: int, digest: str | None):
        self.path, self.size, self.digest = path, size, digest
        self._hasher = xxhash.xxh3_128() if digest else None
        self._read = 0
        try:
            self._file = open(path, "rb")
        except OSError as exc:
            raise LocalIOError(f"cannot read {path}: {exc.strerror}") from None

    def read(self, n: int) -> bytes:
        try:
            data = self._file.read(n)
        except OSError as exc:
            raise LocalIOError(f"cannot read {self.path}: {exc.strerror}") from None
        self._read += len(data)
        if self._hasher is not None:
            self._hasher.update(data)
        return data

    def read_all(self) -> bytes:
        data = self.read(self.size + 1)  # one byte more: a file that grew is noticed
        self.check()
        return data

    def check(self) -> None:
        if self._read != self.size or (self._hasher is not None and self._hasher.hexdigest() != self.digest):
            raise LocalIOError(f"{self.path} does not hold the bytes recorded for it (it changed or was "
                               "damaged on disk since it was hashed); nothing was stored")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "CheckedSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
