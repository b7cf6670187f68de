"""The read-only view: MOUNT/<entity>/<project>/<name>:<vN|alias>/<paths of the version>, and the
same directories without a colon as MOUNT/<entity>/<project>/<name>/<vN|alias>/ (same inodes).

Handlers are thin: resolve the inode's Node, delegate to Namespace (names, versions, aliases),
the version's Manifest (tree, sizes) or FileReader (contents), reply.

Caveats:
- Everything under `name:vN` is immutable: entries, attributes and negative lookups are cached by the
  kernel for VERSION_TIMEOUT, and files open with keep_cache, so re-reads come from the page cache.
- `name:alias` is re-resolved after `alias_ttl`. Its inode is that of the alias *and* the version it
  named when looked up, so when the alias has moved the next lookup answers another inode and the
  kernel drops every entry and listing it cached below the old one (whatever their timeouts): the whole
  tree under an alias path follows the alias within its TTL. Its children are the inodes of that
  version, so a file (or a directory, or a cwd) already open keeps reading the version it opened.
- A small file whose verified bytes are already in memory at its first OPEN (fetched ahead by the
  tree read-ahead) is handed to the page cache with that OPEN (notify_store): the read that follows
  needs no READ request. Only at the first open of the node: see `_fill_page_cache`.
- `.` and `..` are not listed (as in pyfuse3's hello.py); `ls -a` and `find` work without them.
- References (entries with an external URI) are read from their source through the verified fetch
  path. One recorded with checksum=False has nothing to check against: the mount shows its source's
  size now (asked again after `alias_ttl`) and reads its bytes now with direct I/O, never cached.
- Hard link counts are 1 for files and 2 for directories; directory sizes are 0.
- Every write operation fails with EROFS (the mount is also made with `-o ro`).

Invariants: the inode table is touched only on the trio thread, and `remember` runs after the last
await of a lookup, so a `forget` can never interleave between choosing a node and replying.

(Over 400 lines: the operations of one pyfuse3 filesystem; xattrs and write refusals are mixins.)
"""

import errno
import logging
import os
import stat
import time
from datetime import datetime

import pyfuse3
from xxhash import xxh64_intdigest

from ...blocks import BlockedBlob
from ...errors import NotFound
from ...fetch import pieces_of
from ...manifest import DIR as MANIFEST_DIR
from ...manifest import LINK
from ...names import LATEST, TRAVEL_RE, VERSION_RE, ArtifactName, settled, split_name, time_or_none, valid_name
from ...references import is_unchecked
from ..fuse_errors import RefuseWrites, erofs, fuse_op
from ..reader import ChunkSource, FileReader, UncheckedReader
from .inodes import (
    ARTIFACT,
    DIR,
    ENTITY,
    FILE,
    INODE_MASK,
    PROJECT,
    ROOT,
    ROOT_INODE,
    SEL,
    InodeTable,
    Node,
    inode_of,
    node_key,
)
from .namespace import Namespace, VersionView
from .readahead import PackReadAhead, TreeReadAhead
from .xattrs import XattrOps

log = logging.getLogger(__name__)

_debug_reads = os.environ.get("ARTIFACTFS_DEBUG_READS") == "1"
VERSION_TIMEOUT = 3600.0  # immutable content: as long as the kernel cares to keep it
BLOCK_SIZE = 128 * 1024
READDIR_BATCH = 512  # children taken from the manifest at a time; a 128 KiB reply holds ~780


_DIR_MODE = stat.S_IFDIR | 0o555
_FILE_MODE = stat.S_IFREG | 0o444
_EXEC_MODE = stat.S_IFREG | 0o555
_LINK_MODE = stat.S_IFLNK | 0o777


def _is_version(selector: str) -> bool:
    """A selector that names one version for good: `vN`, or a time settled in the past (`@TIME`,
    `alias@TIME`), which the kernel may cache as long as a version."""
    if VERSION_RE.match(selector) is not None:
        return True
    m = TRAVEL_RE.match(selector)
    at = time_or_none(m["at"]) if m is not None and m["at"] is not None else None
    return at is not None and settled(at)


def _enoent() -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(errno.ENOENT)


def _manifest(view: VersionView | None):
    """The manifest of a FILE or DIR node's version (which such a node always has)."""
    assert view is not None, "FILE and DIR nodes belong to a version"
    return view.manifest


# (mypy: pyfuse3's stubs type listxattr's names as its own alias; the bytes given are those names)
class ReadOnlyFS(XattrOps, RefuseWrites, pyfuse3.Operations):  # type: ignore[misc]
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, namespace: Namespace, source: ChunkSource):
        super().__init__()
        self.ns = namespace
        self.source = source
        self.inodes = InodeTable()
        self.tree_readahead = TreeReadAhead(source)
        self.pack_readahead = PackReadAhead(source)
        self.uid, self.gid = os.getuid(), os.getgid()
        self.mount_time_ns = time.time_ns()
        self._files: dict[int, FileReader | UncheckedReader] = {}
        self._dirs: dict[int, tuple] = {}
        self._next_fh = 1
        self._mtimes: dict[str, int] = {}
        self.page_cache_fills = 0  # small files handed to the page cache with their open

    # ---- helpers ---------------------------------------------------------------------------------
    def _node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise _enoent()
        return node

    def _new_fh(self) -> int:
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        return fh

    def _mtime_ns(self, view: VersionView | None) -> int:
        if view is None:
            return self.mount_time_ns
        ns = self._mtimes.get(view.key)
        if ns is None:
            try:
                ns = int(datetime.fromisoformat(view.record.created_at.replace("Z", "+00:00")).timestamp() * 1e9)
            except ValueError:
                ns = self.mount_time_ns
            self._mtimes[view.key] = ns
        return ns

    def _attrs(self, node: Node, entry_timeout: float, view: VersionView | None = None) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.entry_timeout = entry_timeout
        view = view or node.version
        if node.kind == FILE:
            m = _manifest(view)
            if m.kind_of(node.index) == LINK:
                a.st_mode, a.st_nlink = _LINK_MODE, 1
                a.st_size = len(os.fsencode(m.target_of(node.index)))
            else:
                a.st_mode = stat.S_IFREG | (0o555 if m.is_executable(node.index) else 0o444)
                a.st_size = m.size_of(node.index)
                a.st_nlink = 1
        else:
            a.st_mode = stat.S_IFDIR | 0o555
            a.st_nlink = 2
        a.attr_timeout = self._timeout(node)
        a.st_uid, a.st_gid = self.uid, self.gid
        a.st_blksize = BLOCK_SIZE
        a.st_blocks = (a.st_size + 511) // 512
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self._mtime_ns(view)
        return a

    async def _attrs_now(self, node: Node, entry_timeout: float, view: VersionView | None = None):
        """`_attrs`, with the size of an unchecked reference as its source has it now."""
        a = self._attrs(node, entry_timeout, view)
        if node.kind == FILE and a.st_size == 0 and self._unchecked(_manifest(node.version), node.index):
            a.st_size = await self._current_size(node)
            a.st_blocks = (a.st_size + 511) // 512
            a.attr_timeout = self.ns.alias_ttl
        return a

    @staticmethod
    def _unchecked(manifest, index: int) -> bool:
        return manifest.size_of(index) == 0 and is_unchecked(manifest[index])

    async def _current_size(self, node: Node) -> int:
        return await self.ns.current_size(_manifest(node.version)[node.index].ref or "", self.source.fetcher.references)

    def _timeout(self, node: Node) -> float:
        """How long the kernel may trust this node's entry and attributes."""
        if node.kind in (FILE, DIR) or (node.kind == SEL and _is_version(node.selector)):
            return VERSION_TIMEOUT
        return self.ns.alias_ttl if node.kind == SEL else self.ns.listing_ttl

    def _negative(self, timeout: float) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = 0  # "does not exist", cached by the kernel for entry_timeout
        a.entry_timeout = timeout
        return a

    # ---- lookup / getattr ------------------------------------------------------------------------
    @fuse_op
    async def lookup(self, parent_inode, name, ctx=None):
        parent = self._node(parent_inode)
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            raise _enoent() from None
        node, entry_timeout, negative_timeout, view = await self._child(parent, text)
        if node is None:
            return self._negative(negative_timeout)
        attrs = await self._attrs_now(node, entry_timeout, view)
        self.inodes.remember(node)  # after the last await (see the invariants)
        return attrs

    async def _child(self, parent: Node, name: str):
        """(node or None, entry timeout, negative timeout, version for attributes)."""
        ns, short = self.ns, self.ns.listing_ttl
        if parent.kind == ROOT:
            node = self._name_node(ENTITY, "", "", name)
            return (node if await ns.has_entity(name) else None), short, short, None
        if parent.kind == ENTITY:
            node = self._name_node(PROJECT, parent.entity, "", name)
            return (node if await ns.has_project(parent.entity, name) else None), short, short, None
        if parent.kind == PROJECT and ":" not in name and "@" not in name:
            node = self._name_node(ARTIFACT, parent.entity, parent.project, name)
            found = valid_name(name) and await ns.has_artifact(ArtifactName(parent.entity, parent.project, name))
            return (node if found else None), short, short, None
        if parent.kind in (PROJECT, ARTIFACT):
            spelled = f"{parent.name}:{name}" if parent.kind == ARTIFACT else name
            node = self._name_node(SEL, parent.entity, parent.project, spelled)
            try:
                view = await self._sel_view(node)  # proves it exists
            except NotFound:
                return None, short, short, None
            if not _is_version(node.selector):
                # An alias is a directory of the version it names now, with an inode of that version:
                # once the alias moves, the next lookup (after its TTL) answers another inode, so the
                # kernel drops everything it cached below the old one, listings included.
                node.version = view
                node.ino = inode_of(node.key)
            return node, self._timeout(node), short, view
        if parent.kind == SEL:
            view = await self._sel_view(parent)
            timeout = self._timeout(parent)
            return self._in_version(view, "", name), timeout, timeout, None
        if parent.kind == DIR:
            assert parent.version is not None, "a DIR node belongs to a version"
            return self._in_version(parent.version, parent.path, name), VERSION_TIMEOUT, VERSION_TIMEOUT, None
        raise pyfuse3.FUSEError(errno.ENOTDIR)

    def _name_node(self, kind: str, entity: str, project: str, name: str) -> Node:
        """ENTITY/PROJECT/ARTIFACT/SEL node for a directory name (not checked against the store); in a
        project, a name without a colon is the ARTIFACT directory."""
        if kind == ENTITY:
            return Node(inode_of(node_key(ENTITY, name)), ENTITY, name)
        if kind == PROJECT:
            return Node(inode_of(node_key(PROJECT, entity, name)), PROJECT, entity, name)
        if ":" not in name and "@" not in name:
            return Node(inode_of(node_key(ARTIFACT, entity, project, name)), ARTIFACT, entity, project, name)
        artifact, selector = split_name(name)
        assert selector is not None, "a name with ':' or '@' has a selector"
        return Node(inode_of(node_key(SEL, entity, project, artifact, selector)), SEL, entity, project, artifact,
                    selector)

    async def _sel_view(self, node: Node) -> VersionView:
        """The version a SEL node shows (an alias looked up by name: the one it named then); NotFound
        if the name or selector does not exist."""
        if node.version is not None:
            return node.version
        ref = self.ns.parse(node.entity, node.project, f"{node.name}:{node.selector}")
        if ref.travels:
            return await self.ns.travel_version(ref)
        if ref.version is not None:
            return await self.ns.version(ref.artifact, ref.version)
        return await self.ns.alias_version(ref.artifact, ref.alias or LATEST)

    def _version_node(self, view: VersionView, path: str, index: int = -1) -> Node:
        kind = FILE if index >= 0 else DIR
        return Node(inode_of(node_key(kind, version=view, path=path)), kind, version=view, path=path, index=index)

    def _in_version(self, view: VersionView, dirpath: str, name: str) -> Node | None:
        if not name or "/" in name or name in (".", ".."):
            return None
        path = f"{dirpath}/{name}" if dirpath else name
        index = view.manifest.find(path)
        if index is not None and view.manifest.kind_of(index) != MANIFEST_DIR:
            return self._version_node(view, path, index)
        if view.manifest.is_dir(path):
            return self._version_node(view, path)
        return None

    @fuse_op
    async def getattr(self, inode, ctx=None):
        node = self._node(inode)
        view = await self._sel_view(node) if node.kind == SEL else None
        return await self._attrs_now(node, 0, view)

    @fuse_op
    async def forget(self, inode_list):
        for ino, nlookup in inode_list:
            self.inodes.forget(ino, nlookup)

    # ---- directories -----------------------------------------------------------------------------
    @fuse_op
    async def opendir(self, inode, ctx):
        node = self._node(inode)
        ns = self.ns
        if node.kind == ROOT:
            listing = ("names", ENTITY, "", "", await ns.entities())
        elif node.kind == ENTITY:
            listing = ("names", PROJECT, node.entity, "", await ns.projects(node.entity))
        elif node.kind == PROJECT:
            listing = ("names", SEL, node.entity, node.project, await ns.selectors(node.entity, node.project))
        elif node.kind == ARTIFACT:
            selectors = await ns.artifact_selectors(ArtifactName(node.entity, node.project, node.name))
            listing = ("names", SEL, node.entity, node.project, selectors, f"{node.name}:")
        elif node.kind == SEL:
            listing = ("tree", await self._sel_view(node), "")  # one version for the whole listing
        elif node.kind == DIR:
            listing = ("tree", node.version, node.path)
        else:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = self._new_fh()
        self._dirs[fh] = listing
        return fh

    @fuse_op
    async def readdir(self, fh, start_id, token):
        listing = self._dirs.get(fh)
        if listing is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if listing[0] == "names":
            self._readdir_names(listing, start_id, token)
        else:
            self._readdir_tree(listing[1], listing[2], start_id, token)

    # pyfuse3 answers READDIRPLUS: each entry returned carries full attributes and counts as one
    # lookup, so it is remembered only once readdir_reply has accepted it.
    def _readdir_names(self, listing, start_id, token) -> None:
        _, kind, entity, project, names, *prefix = listing  # an ARTIFACT's `vN` is the SEL `name:vN`
        for i in range(start_id, len(names)):
            node = self._name_node(kind, entity, project, "".join(prefix) + names[i])
            # An alias listed is not pinned to a version (that would load it): its entry expires at once,
            # so a path through it is looked up and answered with the inode of the version it names now
            # (a listing repeated after the alias moved must not keep the old tree alive under it).
            alias = node.kind == SEL and not _is_version(node.selector)
            attrs = self._attrs(node, 0 if alias else self._timeout(node))
            if not pyfuse3.readdir_reply(token, names[i].encode("utf-8"), attrs, i + 1):
                return
            self.inodes.remember(node)

    def _readdir_tree(self, view: VersionView, dirpath: str, start_id, token) -> None:
        """Work proportional to the entries returned: the offset token is the manifest index to resume at.
        The hot loop of `find`/`ls -R` (a reply holds ~500 entries): the manifest hands out children in
        batches of plain tuples, one attributes object is refilled per entry (readdir_reply copies it),
        and the inode table gets one call per reply."""
        m = view.manifest
        prefix = dirpath + "/" if dirpath else ""
        key_prefix = f"V:{view.key}:{prefix}".encode()
        a = self._listing_attrs(view)
        reply, hash64 = pyfuse3.readdir_reply, xxh64_intdigest
        replied = []  # every entry the reply holds counts one lookup, and only those
        start = start_id - 1 if start_id else None
        mode, specials = 0, m.specials
        while True:
            rows = m.child_rows(dirpath, start, READDIR_BATCH)
            full = False
            for name, is_dir, index, next_index, size, executable in rows:
                ino = hash64(key_prefix + name) & INODE_MASK  # inode_of(node_key(...)), inlined
                if ino <= ROOT_INODE:
                    ino += 2
                a.st_ino = ino
                if is_dir:
                    index = -1
                    if mode != _DIR_MODE:
                        a.st_mode, a.st_nlink, mode = _DIR_MODE, 2, _DIR_MODE
                elif specials and m.kind_of(index) == LINK:
                    a.st_mode, a.st_nlink, mode = _LINK_MODE, 1, _LINK_MODE
                    size = len(os.fsencode(m.target_of(index)))
                elif mode != (_EXEC_MODE if executable else _FILE_MODE):
                    mode = a.st_mode = _EXEC_MODE if executable else _FILE_MODE
                    a.st_nlink = 1
                a.st_size = size
                a.st_blocks = (size + 511) >> 9
                if size or is_dir or not self._unchecked(m, index):
                    accepted = reply(token, name, a, next_index + 1)
                else:  # an unchecked reference: its size is the source's, asked for when stat'ed
                    a.attr_timeout = 0
                    accepted = reply(token, name, a, next_index + 1)
                    a.attr_timeout = VERSION_TIMEOUT
                if not accepted:
                    full = True
                    break
                replied.append((ino, name, index))
            if full or len(rows) < READDIR_BATCH:
                break
            start = rows[-1][3]
        self.inodes.count_listed(view, prefix, replied)

    def _listing_attrs(self, view: VersionView) -> pyfuse3.EntryAttributes:
        """Attributes every entry of a version listing shares; the per-entry fields are set in the loop."""
        a = pyfuse3.EntryAttributes()
        a.entry_timeout = a.attr_timeout = VERSION_TIMEOUT
        a.st_uid, a.st_gid, a.st_blksize = self.uid, self.gid, BLOCK_SIZE
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self._mtime_ns(view)
        return a

    @fuse_op
    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    # ---- files -----------------------------------------------------------------------------------
    @fuse_op
    async def readlink(self, inode, ctx):
        node = self._node(inode)
        if node.kind != FILE or node.version.manifest.kind_of(node.index) != LINK:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.fsencode(_manifest(node.version).target_of(node.index))  # as committed: never followed here

    @fuse_op
    async def open(self, inode, flags, ctx):
        node = self._node(inode)
        if node.kind != FILE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.version.manifest.kind_of(node.index) == LINK:
            raise pyfuse3.FUSEError(errno.ELOOP)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise erofs()
        m = node.version.manifest
        if node.pieces is None:  # the first open: the entry's pieces, kept for the next opens
            entry = m[node.index]
            if is_unchecked(entry):
                fh = self._new_fh()
                self._files[fh] = UncheckedReader(self.source, entry.ref or "", await self._current_size(node))
                return pyfuse3.FileInfo(fh=fh, direct_io=True)
            node.pieces = pieces_of(entry, m.chunk_size)
            node.blob = BlockedBlob.of(entry)
        reader = FileReader(self.source, node.pieces, m.size_of(node.index), m.chunk_size, ino=node.ino,
                            blob=node.blob)
        first_open, node.opened = not node.opened, True
        node.opens += 1
        if len(reader.pieces) == 1 and first_open:
            # A re-open starts nothing: the kernel keeps the file's pages (keep_cache); reading it back
            # from the disk cache and checking it again for every open would cost as much as the read.
            piece = reader.pieces[0]
            opens = node.opens
            data = self.source.cached(piece) or await self.source.get_from_disk(piece)
            if data is None:
                self.source.start(piece)  # from the store: the read follows at once, start its fetch now
                self.pack_readahead.on_cold_open(node.version, node.index)
            self.tree_readahead.on_open(node.version, node.index)
            if data is None:
                data = await self.source.get(piece)
            if node.opens == opens:
                self._fill_page_cache(node, data)
        fh = self._new_fh()
        self._files[fh] = reader
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    def _fill_page_cache(self, node: Node, data) -> None:
        """Hand a small file's verified bytes to the kernel's page cache with its first OPEN, so that no
        READ request follows: one round trip of four per small file saved. The OPEN waits for them
        (from memory, the disk cache: a second job, or the store), as the READ would have; a piece that
        fails its check or does not come within the timeout fails the OPEN with EIO, as it would have
        failed the READ. Only at the node's first open, and only if no other OPEN of it came while
        this one waited: a READ of such an open may hold a page locked, which would block this write,
        and with it the loop, for good."""
        try:
            pyfuse3.notify_store(node.ino, 0, data)
            self.page_cache_fills += 1
        except OSError as exc:  # the kernel does not have the inode (anymore): the READ path serves it
            log.debug("page cache fill of %s failed: %s", node.path, exc)

    @fuse_op
    async def read(self, fh, off, size):
        reader = self._files.get(fh)
        if reader is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if _debug_reads:
            log.debug("read fh %d: %d bytes at %d", fh, size, off)
        return await reader.read(off, size)

    @fuse_op
    async def release(self, fh):
        self._files.pop(fh, None)

    @fuse_op
    async def flush(self, fh):
        # Nothing to flush on a read-only file. ENOSYS makes the kernel stop sending FLUSH for the
        # whole mount (it counts as success): one request less per close(), ~20 % of a small-file read.
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @fuse_op
    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = BLOCK_SIZE
        s.f_namemax = 255
        s.f_files = len(self.inodes)
        return s
