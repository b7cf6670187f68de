"""File contents of a staging mount: copy-up, writes hashed on the fly, reads, and durability.

- An untouched file is read from the base through the shared ChunkSource (cache, verified chunks);
  it is copied into the stage's data directory only when first written or truncated, and a truncate
  to zero (O_TRUNC) creates an empty data file without fetching anything.
- Each data file has one StreamHasher while writes arrive in order (offset == bytes hashed so far):
  copy-up feeds it the base content, appends continue it. Any other write drops it, and the file is
  hashed at commit instead. Hashing runs on the trio thread in request order (a 128 KiB-1 MiB write
  hashes in microseconds at ~15 GB/s); the pwrite runs in a worker thread beyond a file's first MiB.
- Durability: a closed (flushed) file's state is one journal line, written at once (so kill -9 loses
  nothing closed); fsync of data files and journal is grouped once a second (`sync_loop`) and forced
  by fsync(2). Local metadata syscalls (open/close of data files) are inline: microseconds on a disk.
"""

import contextlib
import errno
import logging
import os
import time

import pyfuse3
import trio

from ...direct_io import pwrite_all
from ...fetch import pieces_of
from ...hashing import StreamHasher
from ...stage.journal import Journal
from ...stage.local import Stage
from ...stage.tree import FileNode, StageTree
from ..daemon import Workers, to_thread
from ..reader import ChunkSource, FileReader

log = logging.getLogger(__name__)

SYNC_INTERVAL = 1.0
# Writes within the first MiB of a file go to the page cache inline (microseconds; a thread hop costs
# more than the write for the many-small-files case). Beyond it, a stream of writes can meet the kernel's
# dirty-page throttling, so those run in worker threads and never stall other requests.
INLINE_WRITE_LIMIT = 1024 * 1024


class Handle:
    __slots__ = ("node", "fd", "fd_data", "writable", "reader")

    def __init__(self, node: FileNode, writable: bool):
        self.node, self.writable = node, writable
        self.fd, self.fd_data = -1, None  # fd of the data file `fd_data`, opened when first needed
        self.reader: FileReader | None = None


class StageFiles:
    def __init__(self, stage: Stage, tree: StageTree, source: ChunkSource, workers: Workers):
        self.stage, self.tree, self.source, self.workers = stage, tree, source, workers
        self.chunk_size = tree.base.chunk_size
        self.journal = Journal(stage.journal_path)
        self.disk = trio.CapacityLimiter(8)
        self.unsynced: set[str] = set()  # data ids written since the last grouped fsync
        self.doomed: set[str] = set()  # data files of removed files, deleted once the journal says so
        self._copying: dict[int, trio.Event] = {}  # id(node) -> done, one copy-up per file at a time

    # ---- journal --------------------------------------------------------------------------------
    def record(self, op: dict) -> None:
        self.journal.append(op)

    def record_put(self, node: FileNode) -> None:
        """Journal the file's current content (if it changed and is still in the tree)."""
        if not node.dirty or node.data is None:
            return
        path = self.tree.path_of(node)
        if path is None:
            node.dirty = False  # unlinked while open: nothing to keep
            return
        if node.hasher is not None and node.hasher.size == node.size:
            _, node.digest, chunks = node.hasher.finish()
            node.chunks = tuple(chunks) if chunks else None
        else:
            node.digest = node.chunks = None
        self.record({"op": "put", "p": path, "d": node.data, "s": node.size, "h": node.digest,
                     "c": list(node.chunks) if node.chunks else None, "x": node.executable, "t": node.mtime_ns})
        node.dirty = False

    def sync_now(self) -> None:
        """fsync everything pending (at exit, on the calling thread)."""
        self._sync_files(*self._take_pending())

    def _take_pending(self) -> tuple[set, set]:
        """Swap the pending sets on the trio thread, so the worker thread owns what it gets."""
        ids, self.unsynced = self.unsynced, set()
        doomed, self.doomed = self.doomed, set()
        return ids - doomed, doomed

    def _sync_files(self, ids: set, doomed: set) -> None:
        """fsync written data files, then the journal that names them. Blocking: run in a thread."""
        for data_id in ids:
            try:
                fd = os.open(self.stage.data_path(data_id), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.journal.sync()
        for data_id in doomed:  # only now: a journal without the removal must still find the file
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.stage.data_path(data_id))

    def drop(self, node) -> None:
        """`node` left the tree and no handle has it open: its data file can go (at the next sync)."""
        if not node.is_dir and node.data is not None:
            self.doomed.add(node.data)
            node.data = None

    async def sync(self) -> None:
        await to_thread(self._sync_files, *self._take_pending(), limiter=self.disk)

    async def sync_loop(self) -> None:
        while True:
            await trio.sleep(SYNC_INTERVAL)
            if self.unsynced or self.journal.dirty or self.doomed:
                try:
                    await self.sync()
                except OSError as exc:
                    log.warning("grouped fsync of stage %s failed: %s", self.stage.id, exc)

    # ---- data files -----------------------------------------------------------------------------
    def _touch(self, node: FileNode) -> None:
        node.dirty = True
        node.digest = node.chunks = None
        node.mtime_ns = time.time_ns()
        self.unsynced.add(node.data)

    def new_data_file(self) -> str:
        """A fresh empty data file; returns its id."""
        data_id = self.stage.new_data_id()
        os.close(os.open(self.stage.data_path(data_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return data_id

    def started(self, node: FileNode) -> None:
        """`node` was just created empty on a new data file: hash it from the first byte."""
        node.hasher = StreamHasher(self.chunk_size)
        self._touch(node)

    async def new_file(self, node: FileNode) -> None:
        node.data = self.new_data_file()
        node.base_index, node.size = None, 0
        self.started(node)

    async def make_empty(self, node: FileNode) -> None:
        if node.data is None:
            await self.new_file(node)
            return
        await to_thread(os.truncate, self.stage.data_path(node.data), 0, limiter=self.disk)
        node.size, node.hasher = 0, StreamHasher(self.chunk_size)
        self._touch(node)

    async def copy_up(self, node: FileNode) -> None:
        """Copy an untouched base file into the stage (hashing it on the way) before its first change."""
        while id(node) in self._copying:
            await self._copying[id(node)].wait()
        if node.data is not None:
            return
        done = self._copying[id(node)] = trio.Event()
        try:
            entry = self.tree.base[node.base_index]
            data_id = self.stage.new_data_id()
            path = self.stage.data_path(data_id)
            hasher = StreamHasher(self.chunk_size)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                at = 0  # offset in the file (a piece's `start` is its offset in the stored object)
                for piece in pieces_of(entry, self.tree.base.chunk_size):
                    data = await self.source.get(piece)
                    hasher.update(data)
                    await to_thread(pwrite_all, fd, data, at, limiter=self.disk)
                    at += len(data)
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
            os.close(fd)
            node.data, node.base_index, node.hasher = data_id, None, hasher
            node.digest, node.chunks = entry.digest, entry.chunks
            node.dirty = True
            self.unsynced.add(data_id)
        finally:
            del self._copying[id(node)]
            done.set()

    def _fd(self, h: Handle) -> int:
        if h.fd_data != h.node.data:  # first use, or the file got a data file since open
            if h.fd >= 0:
                os.close(h.fd)
            h.fd = os.open(self.stage.data_path(h.node.data), os.O_RDWR if h.writable else os.O_RDONLY)
            h.fd_data = h.node.data
        return h.fd

    def close(self, h: Handle) -> None:
        if h.fd >= 0:
            os.close(h.fd)
            h.fd = -1

    # ---- I/O ------------------------------------------------------------------------------------
    async def read(self, h: Handle, off: int, size: int) -> bytes | memoryview:
        node = h.node
        if node.data is not None:
            return await to_thread(os.pread, self._fd(h), size, off, limiter=self.disk)
        if h.reader is None:
            entry = self.tree.base[node.base_index]
            h.reader = FileReader(self.source, pieces_of(entry, self.tree.base.chunk_size), entry.size,
                                  self.tree.base.chunk_size)
        return await h.reader.read(off, size)

    async def write(self, h: Handle, off: int, buf: bytes) -> int:
        node = h.node
        if node.data is None:
            await self.copy_up(node)
        fd = self._fd(h)
        hasher = node.hasher
        if hasher is not None:
            if off == hasher.size:
                hasher.update(buf)  # before any await: requests are hashed in the order they came
            else:
                node.hasher = hasher = None
        try:
            if off + len(buf) <= INLINE_WRITE_LIMIT:
                pwrite_all(fd, buf, off)
            else:
                await to_thread(pwrite_all, fd, buf, off, limiter=self.disk)
        except OSError as exc:
            node.hasher = None
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                log.warning("stage %s: %s while writing %s", self.stage.id, exc.strerror, node.name)
            # what the failed write added past the file's end is not the file's (the writer was told
            # it failed): cut it off, so the data file and the journal agree and a commit takes it
            with contextlib.suppress(OSError):
                await to_thread(os.ftruncate, fd, node.size, limiter=self.disk)
            raise
        node.size = max(node.size, off + len(buf))
        self._touch(node)
        return len(buf)

    async def truncate(self, node: FileNode, size: int) -> None:
        if size == 0:
            await self.make_empty(node)
        else:
            if node.data is None:
                await self.copy_up(node)
            await to_thread(os.truncate, self.stage.data_path(node.data), size, limiter=self.disk)
            if node.hasher is not None and node.hasher.size != size:
                node.hasher = None
            node.size = size
            self._touch(node)

    async def fsync(self, h: Handle) -> None:
        self.record_put(h.node)
        if h.node.data is not None:
            await to_thread(os.fsync, self._fd(h), limiter=self.disk)
        await self.sync()


def statvfs_of(path: str) -> pyfuse3.StatvfsData:
    st = os.statvfs(path)
    out = pyfuse3.StatvfsData()
    for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
                 "f_namemax"):
        setattr(out, name, getattr(st, name))
    return out
