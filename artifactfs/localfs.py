"""Local file writes that a crash cannot tear: temp file in the target directory, rename over."""

import os
import threading


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


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
