"""A store in a local directory: the embedded default.

Writes go to a temp file in the target directory, are fsync'd and renamed (or hard-linked, for
put_if_absent, which fails atomically with EEXIST). put_if_match holds an flock on a per-key lock file
so that compare-and-swap is safe between processes on one machine. An etag is derived from the file's
inode, size and mtime, which every rename changes.
"""

import builtins
import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator

from ..errors import LocalIOError, ObjectNotFound, PermissionDenied, PreconditionFailed, StoreUnavailable
from ..localfs import fsync_dir, unlink_quietly
from .base import CheckedSource, ObjectInfo, ObjectStore, PendingUpload

_TMP_PREFIX = ".tmp-"
_COPY_BLOCK = 8 * 1024 * 1024


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


class LocalStore(ObjectStore):
    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise _translate(exc, self.root) from None
        if not os.path.isdir(self.root):
            raise StoreUnavailable(f"store {self.root} is not a directory")

    def _path(self, key: str) -> str:
        if not key or key.startswith("/") or "\x00" in key or any(s in ("", ".", "..") for s in key.split("/")):
            raise LocalIOError(f"refusing malformed store key {key!r}")
        return os.path.join(self.root, key)

    def _write_temp(self, target: str, data: bytes | None = None, source: CheckedSource | None = None) -> str:
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                if source is not None:
                    while block := source.read(_COPY_BLOCK):
                        f.write(block)
                    source.check()  # before the rename: wrong bytes never become the object
                elif data is not None:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            unlink_quietly(tmp)
            raise
        return tmp

    def get(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read(), _etag(os.fstat(f.fileno()))
        except OSError as exc:
            raise _translate(exc, key) from None

    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except OSError as exc:
            raise _translate(exc, key) from None
        try:
            return os.pread(fd, length, start)
        finally:
            os.close(fd)

    def put(self, key: str, data: bytes) -> str:
        return self._replace(key, data=data)

    def put_file(self, key: str, path: str, size: int, digest: str | None = None) -> None:
        with CheckedSource(path, size, digest) as source:
            self._replace(key, source=source)

    def _replace(self, key: str, data: bytes | None = None, source: CheckedSource | None = None) -> str:
        """Write `key` from bytes or a local file: temp file, fsync, rename, fsync the directory."""
        target = self._path(key)
        try:
            tmp = self._write_temp(target, data, source)
            os.rename(tmp, target)
            fsync_dir(os.path.dirname(target))
            return _etag(os.stat(target))
        except OSError as exc:
            raise _translate(exc, key) from None

    def put_if_absent(self, key: str, data: bytes) -> str:
        target = self._path(key)
        try:
            tmp = self._write_temp(target, data)
            try:
                os.link(tmp, target)  # atomic: fails if target exists
            except FileExistsError:
                raise PreconditionFailed(key) from None
            finally:
                unlink_quietly(tmp)
            fsync_dir(os.path.dirname(target))
            return _etag(os.stat(target))
        except OSError as exc:
            raise _translate(exc, key) from None

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        target = self._path(key)
        lock_path = os.path.join(self.root, ".locks", key.replace("/", "%"))
        try:
            os.makedirs(os.path.dirname(lock_path), exist_ok=True)
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    current = _etag(os.stat(target))
                except FileNotFoundError:
                    raise PreconditionFailed(key) from None
                if current != etag:
                    raise PreconditionFailed(key)
                tmp = self._write_temp(target, data)
                os.rename(tmp, target)
                fsync_dir(os.path.dirname(target))
                return _etag(os.stat(target))
        except OSError as exc:
            raise _translate(exc, key) from None

    def head(self, key: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(key))
        except OSError as exc:
            raise _translate(exc, key) from None
        return ObjectInfo(key, st.st_size, _etag(st), st.st_mtime)

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        # Walk only the directory the prefix names, filtering the last partial segment.
        base_dir, _, _ = prefix.rpartition("/")
        start = os.path.join(self.root, base_dir) if base_dir else self.root
        found = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue  # temp files and locks
                key = rel_dir + name
                if key.startswith(prefix) and key > start_after:
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue
                    found.append(ObjectInfo(key, st.st_size, _etag(st), st.st_mtime))
        found.sort(key=lambda o: o.key)
        return iter(found)

    def pending_uploads(self) -> "builtins.list[PendingUpload]":
        """The temp files of writes that never reached their rename (a killed writer's)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    path = os.path.join(dirpath, name)
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(path)
                        found.append(PendingUpload(os.path.relpath(path, self.root), path, st.st_mtime, st.st_size))
        return found

    def abort_upload(self, upload: PendingUpload) -> None:
        unlink_quietly(upload.upload_id)

    def list_dirs(self, prefix: str) -> "builtins.list[str]":  # (the method `list` shadows the type here)
        # One directory read. Deletes leave directories, so an emptied one is still listed (as SeaweedFS
        # does; AWS S3 does not): artifactfs never empties the levels it lists (artifact.json stays).
        start = os.path.join(self.root, prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            entries = list(os.scandir(start))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise _translate(exc, prefix) from None
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _translate(exc, key) from None


def _translate(exc: OSError, key: str) -> Exception:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ObjectNotFound(key)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"store refused access to {key}: {exc.strerror}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalIOError(f"store disk is full while writing {key}")
    return LocalIOError(f"store I/O error on {key}: {exc.strerror or exc}")

