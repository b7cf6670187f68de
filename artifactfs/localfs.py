"""Local file writes that a crash cannot tear: temp file in the target directory, rename over."""

import contextlib
import os
import secrets
import stat
import threading

from .errors import LocalIOError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_atomic(path: str, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data`: readers see the old or the new file, never a part.

    `durable` also fsyncs the file before the rename and the directory after it, so the new file
    survives a power loss; caches that can refetch skip that cost.
    """
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    if durable:
        fsync_dir(os.path.dirname(path) or ".")


def open_dir_under(root: str, parts: list[str]) -> int:
    """An open fd of the directory root/parts[0]/parts[1]/..., each made where missing. `root` is the
    caller's to choose (it may be a link); below it no component is followed if it is a symbolic link,
    so nothing named by a manifest is ever written outside `root`. LocalIOError says what is in the way."""
    try:
        os.makedirs(root, exist_ok=True)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        why = "it is not a directory" if isinstance(exc, FileExistsError | NotADirectoryError) else exc.strerror
        raise LocalIOError(f"cannot write into {root}: {why}") from None
    try:
        for i, part in enumerate(parts):
            if part in ("", ".", "..") or "/" in part:
                raise LocalIOError(f"refusing to write {'/'.join(parts)!r}: not a plain relative path")
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise LocalIOError(f"cannot make {os.path.join(root, *parts[:i + 1])}: {exc.strerror}") from None
            try:
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                raise LocalIOError(f"cannot write into {os.path.join(root, *parts[:i + 1])}: "
                                   f"{_in_the_way(fd, part)}") from None
            os.close(fd)
            fd = sub
        return fd
    except BaseException:
        os.close(fd)
        raise


def _in_the_way(dir_fd: int, name: str) -> str:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link, which artifactfs does not write through"
    return "it is not a directory"


def temp_name(name: str) -> str:
    """A unique name for a temp file beside `name` (a hidden one, within the 255-byte name limit)."""
    return f".{name.encode()[:200].decode(errors='ignore')}.{secrets.token_hex(6)}.artifactfs-tmp"
