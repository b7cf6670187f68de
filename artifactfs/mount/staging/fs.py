"""The staging filesystem: a writable tree over a base version (see stage/tree.py for the model and
staging/files.py for contents and durability).

Every change is applied to the in-memory tree and appended to the journal at once (one write, so
kill -9 keeps it). What the format cannot hold fails with EPERM and a log line: hard links, symlinks,
device files, FIFOs, sockets. Permission bits other than the owner's executable bit are not kept
(a file shows 0644 or 0755, a directory 0755); ownership changes are accepted and ignored.

Commit control: `setxattr(ROOT, "user.artifactfs.freeze", PID)` journals every open file's state,
fsyncs, and holds every further change (writes wait) until `user.artifactfs.thaw` or until PID dies
(staging/freeze.py); `user.artifactfs.frozen` reads "1" meanwhile.
"""

import errno
import logging
import os
import stat
import time

import pyfuse3

from ...errors import InvalidPath
from ...manifest import check_link_target
from ...paths import MAX_SEGMENT_BYTES
from ...stage.commit import FREEZE_XATTR, THAW_XATTR
from ...stage.local import Stage
from ...stage.tree import DirNode, StageTree
from ..fuse_errors import fuse_op
from .files import Handle, StageFiles, statvfs_of
from .freeze import FreezeControl

log = logging.getLogger(__name__)

TIMEOUT = 1.0  # entry/attr cache: every change comes through this daemon, so the kernel can keep them


def _name(raw: bytes) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("refusing file name %r: artifact paths must be UTF-8", raw)
        raise pyfuse3.FUSEError(errno.EINVAL) from None
    if len(raw) > MAX_SEGMENT_BYTES:
        raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
    return name


def _unsupported(what: str) -> pyfuse3.FUSEError:
    log.warning("refused: %s cannot be stored in an artifact version", what)
    return pyfuse3.FUSEError(errno.EPERM)


class StagingFS(FreezeControl, pyfuse3.Operations):
    def __init__(self, stage: Stage, tree: StageTree, files: StageFiles):
        super().__init__()
        self.stage, self.tree, self.files = stage, tree, files
        self.inodes = {pyfuse3.ROOT_INODE: tree.root}
        tree.root.inode = pyfuse3.ROOT_INODE
        self._next_inode = pyfuse3.ROOT_INODE + 1
        self.handles: dict[int, Handle] = {}
        self.dirs: dict[int, list] = {}
        self._next_fh = 1
        self.uid, self.gid = os.getuid(), os.getgid()
        self.init_freeze()

    # ---- helpers --------------------------------------------------------------------------------
    def _ino(self, node) -> int:
        if not node.inode:
            node.inode = self._next_inode
            self._next_inode += 1
            self.inodes[node.inode] = node
        return node.inode

    def _node(self, inode: int):
        node = self.inodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return node

    def _dir(self, inode: int) -> DirNode:
        node = self._node(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return node

    def _attrs(self, node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = self._ino(node)
        if node.is_dir:  # as on ext4: a directory's links are its own two and one per subdirectory
            a.st_mode, a.st_nlink, a.st_size = stat.S_IFDIR | 0o755, 2 + self.tree.subdir_count(node), 0
        elif node.link is not None:
            a.st_mode, a.st_size = stat.S_IFLNK | 0o777, len(os.fsencode(node.link))
        else:
            a.st_mode = stat.S_IFREG | (0o755 if node.executable else 0o644)
            a.st_size = node.size
        if not node.is_dir:  # a file still open after its unlink has no name left
            a.st_nlink = 0 if node.parent is not None and self.tree.path_of(node) is None else 1
        a.st_blocks = (a.st_size + 511) // 512 if node.link is None or node.is_dir else 0
        a.st_blksize = 128 * 1024
        a.st_uid, a.st_gid = self.uid, self.gid
        a.st_mtime_ns = node.mtime_ns
        a.st_atime_ns = node.atime_ns if node.atime_ns is not None else node.mtime_ns
        a.st_ctime_ns = max(node.ctime_ns or 0, node.mtime_ns)  # never before the last change of content
        a.entry_timeout = a.attr_timeout = TIMEOUT
        return a

    def _path(self, node) -> str | None:  # None once unlinked
        return self.tree.path_of(node)

    def _join(self, parent: DirNode, name: str) -> str:
        p = self._path(parent)
        return f"{p}/{name}" if p else name

    # ---- lookups --------------------------------------------------------------------------------
    @fuse_op
    async def lookup(self, parent_inode, name, ctx):
        parent = self._dir(parent_inode)
        if name == b".":
            return self._attrs(parent)
        if name == b"..":
            return self._attrs(parent.parent or parent)
        node = self.tree.child(parent, _name(name))
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(node)

    @fuse_op
    async def getattr(self, inode, ctx):
        return self._attrs(self._node(inode))

    @fuse_op
    async def opendir(self, inode, ctx):
        d = self._dir(inode)
        fh = self._next_fh
        self._next_fh += 1
        self.dirs[fh] = list(self.tree.children(d).items())  # a snapshot: `rm -r` may unlink while listing
        return fh

    @fuse_op
    async def readdir(self, fh, start_id, token):
        entries = self.dirs.get(fh, [])
        for i in range(start_id, len(entries)):
            name, node = entries[i]
            if not pyfuse3.readdir_reply(token, name.encode("utf-8"), self._attrs(node), i + 1):
                return

    @fuse_op
    async def releasedir(self, fh):
        self.dirs.pop(fh, None)

    @fuse_op
    async def statfs(self, ctx):
        return statvfs_of(self.stage.root)

    # ---- files ----------------------------------------------------------------------------------
    def _new_handle(self, node, writable: bool) -> pyfuse3.FileInfo:
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = Handle(node, writable)
        fi = pyfuse3.FileInfo(fh=fh)
        fi.keep_cache = True  # every change to a file's bytes passes through the kernel's page cache
        return fi

    @fuse_op
    async def open(self, inode, flags, ctx):
        node = self._node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.link is not None:
            raise pyfuse3.FUSEError(errno.ELOOP)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable and flags & os.O_TRUNC:
            async with self.change():
                await self.files.make_empty(node)
        return self._new_handle(node, writable)

    @fuse_op
    async def create(self, parent_inode, name, mode, flags, ctx):
        async with self.change():
            parent = self._dir(parent_inode)
            name = _name(name)
            if not stat.S_ISREG(mode) and stat.S_IFMT(mode):
                raise _unsupported(f"{self._join(parent, name)} (not a regular file)")
            node = self.tree.child(parent, name)
            if node is not None and node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if node is not None and node.link is not None:
                raise pyfuse3.FUSEError(errno.EEXIST)
            if node is None:
                data_id = self.files.new_data_file()  # before the tree changes: a failure leaves no trace
                node = self.tree.put(parent, name, data=data_id, size=0, executable=bool(mode & 0o100),
                                     mtime_ns=time.time_ns())
                self.files.started(node)
                parent.mtime_ns = node.mtime_ns
            elif flags & os.O_TRUNC:
                await self.files.make_empty(node)
            fi = self._new_handle(node, True)
            return fi, self._attrs(node)

    @fuse_op
    async def read(self, fh, off, size):
        return await self.files.read(self.handles[fh], off, size)

    @fuse_op
    async def write(self, fh, off, buf):
        async with self.change():
            return await self.files.write(self.handles[fh], off, buf)

    @fuse_op
    async def flush(self, fh):
        h = self.handles.get(fh)
        if h is not None and h.writable and h.node.dirty:
            async with self.change():
                self.files.record_put(h.node)  # close(2) is the durability point

    @fuse_op
    async def release(self, fh):
        h = self.handles.pop(fh, None)
        if h is None:
            return
        self.files.close(h)
        if h.writable and h.node.dirty:
            async with self.change():
                self.files.record_put(h.node)
        if self.tree.path_of(h.node) is None:
            self._forget_data(h.node)

    @fuse_op
    async def fsync(self, fh, datasync):
        async with self.change():
            await self.files.fsync(self.handles[fh])

    @fuse_op
    async def fsyncdir(self, fh, datasync):
        await self.files.sync()  # also frees the data files of removed files

    @fuse_op
    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self._node(inode)
        async with self.change():
            path = self._path(node)
            if fields.update_size:
                if node.is_dir:
                    raise pyfuse3.FUSEError(errno.EISDIR)
                await self.files.truncate(node, attr.st_size)
                if path is not None:
                    self.files.record_put(node)  # truncate(1) has no close to record it at
            change: dict = {}
            if fields.update_mode and not node.is_dir and node.link is None:
                executable = bool(attr.st_mode & 0o100)
                if executable != node.executable:
                    node.executable = change["x"] = executable
            if fields.update_mtime:
                node.mtime_ns = change["t"] = attr.st_mtime_ns
            if fields.update_atime:
                node.atime_ns = change["a"] = attr.st_atime_ns
            if fields.update_mode or fields.update_mtime or fields.update_atime or fields.update_uid \
                    or fields.update_gid:
                node.ctime_ns = change["c"] = time.time_ns()  # as on ext4: any attribute change is a change
            if change and path is not None:
                self.files.record({"op": "attr", "p": path, **change})
            return self._attrs(node)

    # ---- directories and names ------------------------------------------------------------------
    def _free_name(self, parent_inode: int, raw: bytes) -> tuple[DirNode, str]:
        """The directory and name a new entry goes to; EEXIST if the name is taken."""
        parent, name = self._dir(parent_inode), _name(raw)
        if self.tree.child(parent, name) is not None:
            raise pyfuse3.FUSEError(errno.EEXIST)
        return parent, name

    @fuse_op
    async def mkdir(self, parent_inode, name, mode, ctx):
        async with self.change():
            parent, name = self._free_name(parent_inode, name)
            now = time.time_ns()
            path = self._join(parent, name)
            self.files.record({"op": "mkdir", "p": path, "t": now})
            d = self.tree.mkdir(parent, name, now)
            return self._attrs(d)

    async def _remove(self, parent_inode, name, want_dir: bool):
        async with self.change():
            parent = self._dir(parent_inode)
            name = _name(name)
            node = self.tree.child(parent, name)
            if node is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            if want_dir and not node.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            if not want_dir and node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if want_dir and self.tree.children(node):
                raise pyfuse3.FUSEError(errno.ENOTEMPTY)
            self.files.record({"op": "rm", "p": self._join(parent, name)})
            self.tree.remove(parent, name)
            self._forget_data(node)
            parent.mtime_ns = time.time_ns()

    def _forget_data(self, node) -> None:
        """A file left the tree: free its data file now, or at the last close if it is open."""
        if not node.is_dir and not any(h.node is node for h in self.handles.values()):
            self.files.drop(node)

    @fuse_op
    async def unlink(self, parent_inode, name, ctx):
        await self._remove(parent_inode, name, False)

    @fuse_op
    async def rmdir(self, parent_inode, name, ctx):
        await self._remove(parent_inode, name, True)

    @fuse_op
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags & pyfuse3.RENAME_EXCHANGE:
            log.warning("rename: RENAME_EXCHANGE is not supported")
            raise pyfuse3.FUSEError(errno.EINVAL)
        async with self.change():
            src_parent, dst_parent = self._dir(parent_inode_old), self._dir(parent_inode_new)
            src_name, dst_name = _name(name_old), _name(name_new)
            node = self.tree.child(src_parent, src_name)
            if node is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            target = self.tree.child(dst_parent, dst_name)
            if target is node:
                return
            self._check_rename(node, target, dst_parent, flags)
            self.files.record({"op": "mv", "a": self._join(src_parent, src_name),
                               "b": self._join(dst_parent, dst_name)})
            self.tree.rename(src_parent, src_name, dst_parent, dst_name)
            if target is not None:
                self._forget_data(target)
            src_parent.mtime_ns = dst_parent.mtime_ns = node.ctime_ns = time.time_ns()

    def _check_rename(self, node, target, dst_parent: DirNode, flags: int) -> None:
        """rename(2)'s refusals: what the target may be replaced by, and no directory into its own subtree."""
        if target is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise pyfuse3.FUSEError(errno.EEXIST)
            if node.is_dir and not target.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            if not node.is_dir and target.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if target.is_dir and self.tree.children(target):
                raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        up = dst_parent if node.is_dir else None
        while up is not None:
            if up is node:
                raise pyfuse3.FUSEError(errno.EINVAL)  # into its own subtree
            up = up.parent

    @fuse_op
    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise _unsupported(f"hard link {new_name!r}")

    @fuse_op
    async def symlink(self, parent_inode, name, target, ctx):
        async with self.change():
            parent, name = self._free_name(parent_inode, name)
            try:
                text = target.decode("utf-8")
                check_link_target(text, name)
            except (UnicodeDecodeError, InvalidPath) as exc:
                raise _unsupported(f"symlink {name!r} -> {target!r} ({exc})") from None
            now = time.time_ns()
            self.files.record({"op": "ln", "p": self._join(parent, name), "l": text, "t": now})
            return self._attrs(self.tree.symlink(parent, name, text, now))

    @fuse_op
    async def readlink(self, inode, ctx):
        node = self._node(inode)
        if node.is_dir or node.link is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.fsencode(node.link)

    @fuse_op
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise _unsupported(f"special file {name!r} (mode {oct(mode)})")

    # ---- extended attributes: stage info and commit control -------------------------------------
    @fuse_op
    async def getxattr(self, inode, name, ctx):
        info = self.stage.info
        values = {b"user.artifactfs.stage": info.id, b"user.artifactfs.artifact": info.artifact,
                  b"user.artifactfs.base": self.stage.base_label(),
                  b"user.artifactfs.frozen": "1" if self.frozen else "0"}  # "1" while a commit runs
        if inode == pyfuse3.ROOT_INODE and name in values:
            return values[name].encode()
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    @fuse_op
    async def listxattr(self, inode, ctx):
        if inode == pyfuse3.ROOT_INODE:
            return [b"user.artifactfs.stage", b"user.artifactfs.artifact", b"user.artifactfs.base",
                    b"user.artifactfs.frozen"]
        return []

    @fuse_op
    async def setxattr(self, inode, name, value, ctx):
        if inode == pyfuse3.ROOT_INODE and name == FREEZE_XATTR.encode():
            await self.freeze(int(value or b"0"))
            return
        if inode == pyfuse3.ROOT_INODE and name == THAW_XATTR.encode():
            self.thaw()
            return
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    @fuse_op
    async def removexattr(self, inode, name, ctx):
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    def flush_all(self) -> None:
        """At exit: journal every file still open for writing."""
        for h in list(self.handles.values()):
            if h.writable:
                self.files.record_put(h.node)
        self.files.sync_now()

