"""Extended attributes of the read-only view: what `artifactfs show` and `files` would tell, readable
with `getfattr -d MOUNT/...` (all names start with `user.artifactfs.`).

Everywhere inside a version: `artifact` (entity/project/name), `version` (vN), `type`.
The colon-free artifact directory `name/`: `artifact`, `type`.
Version directories (`name:vN`, `name:alias`, and `name/vN`, `name/alias`; not their subdirectories):
`ref` (entity/project/name:vN), `digest` (the manifest digest, i.e. the version's content digest),
`size` (total bytes), `files`, `aliases` (comma-separated), `created_at`, `created_by`, `description`,
`metadata` (JSON), `run`, `inputs`; `alias` on an alias directory.
Files: `path`, `digest` (xxh3-128 of the content), `size`, `chunks` (number of verified chunks),
`executable`; for a reference entry `ref` (its external URI), `etag`, `version_id` (one recorded with
checksum=False has no `size` or `digest`: nothing but its URI was recorded).
Subdirectories: `path`.
The mount's root (XattrOps._mount_xattrs): `store`, `cache_dir` and `stats` (JSON: bytes fetched and
read from the cache since the mount, corrupt pieces refused, reads failed by the store, open files,
inodes the kernel holds).
"""

import errno
import json

import pyfuse3

from ...names import ArtifactName
from ...references import is_unchecked
from ..fuse_errors import fuse_op
from ..reader import ChunkSource
from .inodes import ARTIFACT, DIR, FILE, ROOT, SEL, InodeTable, Node
from .namespace import Namespace, VersionView

XATTR_PREFIX = "user.artifactfs."
_XATTR_PREFIX_BYTES = XATTR_PREFIX.encode()


class XattrOps:
    """The xattr operations of ReadOnlyFS (a mixin: it uses the filesystem's nodes, namespace and source)."""

    ns: "Namespace"
    source: "ChunkSource"
    inodes: "InodeTable"
    _files: dict
    page_cache_fills: int

    async def _sel_view(self, node: Node) -> "VersionView":
        raise NotImplementedError  # ReadOnlyFS's

    async def _xattrs(self, node: Node) -> dict[str, str]:
        if node.kind == ROOT:
            return self._mount_xattrs()
        if node.kind == ARTIFACT:
            artifact = ArtifactName(node.entity, node.project, node.name)
            return {"artifact": str(artifact), "type": await self.ns.artifact_type(artifact)}
        view = await self._sel_view(node) if node.kind == SEL else node.version
        if view is None:
            return {}
        aliases = await self.ns.aliases_of(view) if node.kind == SEL else None
        return xattrs_of(node, view, aliases, await self.ns.artifact_type(view.record.artifact))

    def _mount_xattrs(self) -> dict[str, str]:
        """The mount root's: where it reads from and what it has done since it was mounted."""
        fetcher = self.source.fetcher
        stats = {"fetched_bytes": fetcher.fetched_bytes, "cache_read_bytes": fetcher.cache_read_bytes,
                 "corrupt_pieces": fetcher.corrupt_pieces, "damaged_cache_files": fetcher.cache.damaged,
                 "cache_bypassed": fetcher.cache.bypassed, "cache_bytes": fetcher.cache.size,
                 "store_errors": self.source.store_errors,
                 "open_files": len(self._files), "inodes": len(self.inodes),
                 "small_files_prefilled": self.page_cache_fills, "chunks_prefilled": self.source.chunks_filled}
        return {"store": self.ns.repo.store.url, "cache_dir": fetcher.cache.dir,
                "stats": json.dumps(stats, sort_keys=True)}

    async def getxattr(self, inode, name, ctx):
        if not name.startswith(_XATTR_PREFIX_BYTES):
            # `ls -l` asks for the ACL and SELinux label of every file: answered at once (no @fuse_op
            # layer: nothing here can raise but FUSEError) and without making the entry a Node (a
            # million-file `ls -l` would otherwise hold a million of them)
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR if inode in self.inodes else errno.ENOENT)
        return await self._getxattr(inode, name)

    @fuse_op
    async def _getxattr(self, inode, name):
        values = await self._xattrs(self._node(inode))
        value = values.get(name[len(_XATTR_PREFIX_BYTES):].decode("utf-8", "replace"))
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value.encode("utf-8")

    @fuse_op
    async def listxattr(self, inode, ctx):
        return [(XATTR_PREFIX + k).encode("utf-8") for k in await self._xattrs(self._node(inode))]


def xattrs_of(node: Node, view, aliases: list[str] | None, artifact_type: str) -> dict[str, str]:
    if view is None:
        return {}
    record = view.record
    out = {"artifact": str(record.artifact), "version": f"v{record.version}", "type": artifact_type}
    if node.kind == SEL:
        out.update(_version_xattrs(record, aliases))
        if not node.selector.startswith("v") or not node.selector[1:].isdigit():
            out["alias"] = node.selector
    elif node.kind == DIR:
        out["path"] = node.path
    elif node.kind == FILE:
        out.update(_file_xattrs(view.manifest[node.index]))
    return out


def _present(pairs) -> dict[str, str]:
    """The pairs whose value is set (an empty description or no run is no attribute)."""
    return {k: v for k, v in pairs if v}


def _version_xattrs(record, aliases: list[str] | None) -> dict[str, str]:
    out = {"ref": str(record.ref), "digest": record.manifest, "size": str(record.size),
           "files": str(record.file_count), "created_at": record.created_at, "created_by": record.created_by}
    if aliases is not None:
        out["aliases"] = ",".join(aliases)
    return out | _present([
        ("description", record.description),
        ("metadata", record.metadata and json.dumps(record.metadata, sort_keys=True)),
        ("run", record.run), ("inputs", ",".join(record.inputs or ()))])


def _file_xattrs(e) -> dict[str, str]:
    out = {"path": e.path, "executable": "1" if e.executable else "0"}
    if not is_unchecked(e):
        out["size"] = str(e.size)
    return out | _present([("digest", e.digest), ("chunks", e.chunks and str(len(e.chunks))), ("ref", e.ref),
                           ("etag", e.etag), ("version_id", e.version_id)])
