"""Reads and writes of page-aligned buffers with O_DIRECT (buffers.py), falling back to ordinary I/O
on filesystems that refuse it (tmpfs): the disk takes a piece straight from the buffer it was
received into, instead of the CPU copying it into fresh page-cache pages."""

import errno
import fcntl
import os

from .buffers import ALIGN, is_aligned


def set_direct(fd: int, on: bool) -> bool:
    """Switch O_DIRECT on or off for an open file; False where the filesystem refuses it."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
        return True
    except OSError:
        return False


def write_file(path: str, data, trailer: bytes = b"") -> None:
    """Write `data`, then `trailer`, as the new file `path`: the aligned part of `data` with O_DIRECT
    when the buffer allows it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        done = 0
        head = len(view) - len(view) % ALIGN
        if head and is_aligned(data) and set_direct(fd, True):
            try:
                done = pwrite_all(fd, view[:head], 0)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: no O_DIRECT here after all; write it normally
                    raise
            set_direct(fd, False)
        end = pwrite_all(fd, view[done:], done)
        if trailer:
            pwrite_all(fd, memoryview(trailer), end)
    finally:
        os.close(fd)


def read_direct(fd: int, buf: memoryview, length: int):
    """The first `length` bytes of `fd` read into `buf` (at least `length` rounded up to ALIGN: O_DIRECT
    reads whole blocks), with O_DIRECT where the filesystem allows it; None if the file is shorter."""
    got = 0
    direct = set_direct(fd, True)
    while got < length:
        try:
            n = os.preadv(fd, [buf[got:]], got)
        except OSError as exc:
            if not direct or exc.errno != errno.EINVAL:
                raise
            direct = not set_direct(fd, False)  # O_DIRECT refused after all: read normally
            continue
        if not n:
            return None  # shorter than it was a moment ago
        got += n
    return buf[:length]


def pwrite_all(fd: int, data, offset: int) -> int:
    """pwrite all of `data` at `offset`; returns where the file now ends. ENOSPC if the disk takes nothing."""
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view, offset)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
        offset += n
    return offset
