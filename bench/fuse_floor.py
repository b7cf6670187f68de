"""The floor of a pyfuse3 file system on this machine: a read-only FS that serves bench_mount.py's
layout from memory (no store, no cache, no checksums), mounted exactly like artifactfs (same
options, readahead, task limits, keep_cache and timeouts; FLUSH answered with ENOSYS).

Whatever it cannot reach, no pyfuse3 file system can here: bench_mount.py times its workloads on it
beside artifactfs, so each goal can be read against what the stack itself allows.

    python bench/fuse_floor.py MOUNTPOINT [--big-mib 1024] [--small-count 5000] [--tree-count 20000]
                               [--backing FILE]

With `--backing FILE`, big/big.bin is FILE read through: every read a `pread` of it in a worker thread,
as any pyfuse3 file system must do to read a local disk without blocking its loop (bench_random.py's
floor for reads served from the disk cache).

Layout (as bench_mount.py commits it): big/big.bin, small/dNNN/fNNNNN.bin (64 KiB each),
tree/dNNN/fNNNNN.bin (16 bytes each), 500 files per directory.
"""

import argparse
import errno
import os
import stat
import subprocess
import sys
import time

import pyfuse3
import trio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.mount.daemon import run_foreground  # noqa: E402

PER_DIR = 500
TIMEOUT = 86400.0
BUFFER = 8 * 1024 * 1024  # the big file repeats one buffer: reads reply from memory already touched

ROOT, BIG_DIR, BIG, SMALL, TREE = pyfuse3.ROOT_INODE, 2, 3, 4, 5
DIR_BASE = {SMALL: 1_000, TREE: 2_000}  # + directory number
FILE_BASE = {SMALL: 100_000, TREE: 1_000_000}  # + file number


class FloorFS(pyfuse3.Operations):
    def __init__(self, big_size: int, counts: dict[int, int], sizes: dict[int, int], backing: str | None = None):
        super().__init__()
        self.big_size, self.counts, self.sizes = big_size, counts, sizes
        self.backing = os.open(backing, os.O_RDONLY) if backing else None
        if backing:
            self.big_size = os.fstat(self.backing).st_size
        self.buffer = memoryview(os.urandom(BUFFER))
        self.dirs = {}  # inode of a leaf directory -> (kind, directory number)
        for kind, count in counts.items():
            for d in range((count + PER_DIR - 1) // PER_DIR):
                self.dirs[DIR_BASE[kind] + d] = (kind, d)

    # ---- attributes ------------------------------------------------------------------------------
    def _attrs(self, ino: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        a.entry_timeout = a.attr_timeout = TIMEOUT
        a.st_uid, a.st_gid = os.getuid(), os.getgid()
        a.st_blksize = 128 * 1024
        if ino in (ROOT, BIG_DIR, SMALL, TREE) or ino in self.dirs:
            a.st_mode, a.st_nlink = stat.S_IFDIR | 0o555, 2
        else:
            a.st_mode, a.st_nlink = stat.S_IFREG | 0o444, 1
            a.st_size = self._size(ino)
            a.st_blocks = (a.st_size + 511) // 512
        return a

    def _size(self, ino: int) -> int:
        if ino == BIG:
            return self.big_size
        kind = SMALL if ino < FILE_BASE[TREE] else TREE
        return self.sizes[kind]

    def _children(self, ino: int) -> list[tuple[bytes, int]]:
        if ino == ROOT:
            return [(b"big", BIG_DIR), (b"small", SMALL), (b"tree", TREE)]
        if ino == BIG_DIR:
            return [(b"big.bin", BIG)]
        if ino in (SMALL, TREE):
            return [(b"d%03d" % (i - DIR_BASE[ino]), i) for i in sorted(self.dirs) if self.dirs[i][0] == ino]
        if ino in self.dirs:
            kind, d = self.dirs[ino]
            first, end = d * PER_DIR, min((d + 1) * PER_DIR, self.counts[kind])
            return [(b"f%05d.bin" % i, FILE_BASE[kind] + i) for i in range(first, end)]
        raise pyfuse3.FUSEError(errno.ENOTDIR)

    # ---- operations ------------------------------------------------------------------------------
    async def lookup(self, parent_inode, name, ctx=None):
        for child, ino in self._children(parent_inode):
            if child == name:
                return self._attrs(ino)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def getattr(self, inode, ctx=None):
        return self._attrs(inode)

    async def opendir(self, inode, ctx):
        return inode

    async def readdir(self, fh, start_id, token):
        # the least work per entry: one attributes object per directory, refilled (readdir_reply copies)
        children = self._children(fh)
        if start_id >= len(children):
            return
        a = self._attrs(children[start_id][1])
        reply = pyfuse3.readdir_reply
        for i in range(start_id, len(children)):
            name, a.st_ino = children[i]
            if not reply(token, name, a, i + 1):
                return

    async def releasedir(self, fh):
        pass

    async def open(self, inode, flags, ctx):
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh, off, size):
        end = min(off + size, self._size(fh))
        if off >= end:
            return b""
        if fh == BIG and self.backing is not None:
            return await trio.to_thread.run_sync(os.pread, self.backing, end - off, off)
        start = off % BUFFER
        if start + end - off <= BUFFER:
            return self.buffer[start:start + end - off]
        # across the end of the buffer: still a full reply (a short one would mean end of file)
        return bytes(self.buffer[start:]) + bytes(self.buffer[:start + end - off - BUFFER])

    async def flush(self, fh):
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def release(self, fh):
        pass


class FloorMount:
    """The floor FS mounted in a child process; `close()` unmounts it and waits for the process."""

    def __init__(self, mountpoint: str, big_mib: int, small_count: int, tree_count: int, backing: str | None = None):
        self.mountpoint = mountpoint
        os.makedirs(mountpoint, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, __file__, mountpoint, "--big-mib", str(big_mib),
                                      "--small-count", str(small_count), "--tree-count", str(tree_count),
                                      *(["--backing", backing] if backing else [])],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.ismount(mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the floor file system did not mount")
            time.sleep(0.05)

    def path(self, *parts) -> str:
        return os.path.join(self.mountpoint, *parts)

    def close(self) -> None:
        if os.path.ismount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", self.mountpoint], capture_output=True)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mountpoint")
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=5000)
    parser.add_argument("--tree-count", type=int, default=20000)
    parser.add_argument("--backing")
    args = parser.parse_args()
    fs = FloorFS(args.big_mib * 2**20, {SMALL: args.small_count, TREE: args.tree_count}, {SMALL: 64 * 1024, TREE: 16},
                 args.backing)
    run_foreground(fs, args.mountpoint, fsname="floor", subtype="floor", read_only=True)


if __name__ == "__main__":
    main()
