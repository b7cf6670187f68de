"""Extended attributes of the read-only view: what `artifactfs show` and `files` would tell, readable
with `getfattr -d MOUNT/...` (all names start with `user.artifactfs.`).

Everywhere inside a version: `artifact` (entity/project/name), `version` (vN), `type`.
Version directories (`name:vN`, `name:alias`, not their subdirectories): `ref` (entity/project/name:vN), `digest` (the
manifest digest, i.e. the version's content digest), `size` (total bytes), `files`, `aliases`
(comma-separated), `created_at`, `created_by`, `description`, `metadata` (JSON), `run`, `inputs`;
`alias` on an alias directory.
Files: `path`, `digest` (xxh3-128 of the content), `size`, `chunks` (number of verified chunks),
`executable`; for a reference entry `ref` (its external URI), `etag`, `version_id` (one recorded with
checksum=False has no `size` or `digest`: nothing but its URI was recorded).
Subdirectories: `path`.
The mount's root (ReadOnlyFS._mount_xattrs): `store`, `cache_dir` and `stats` (JSON: bytes fetched and
read from the cache since the mount, corrupt pieces refused, reads failed by the store, open files,
inodes the kernel holds).
"""

import json

from ..references import is_unchecked
from .inodes import DIR, FILE, SEL, Node


def xattrs_of(node: Node, view, aliases: list[str] | None, artifact_type: str) -> dict[str, str]:
    if view is None:
        return {}
    record = view.record
    out = {"artifact": str(record.artifact), "version": f"v{record.version}", "type": artifact_type}
    if node.kind == SEL:
        out.update({
            "ref": str(record.ref), "digest": record.manifest, "size": str(record.size),
            "files": str(record.file_count), "created_at": record.created_at, "created_by": record.created_by,
        })
        if aliases is not None:
            out["aliases"] = ",".join(aliases)
        if record.description:
            out["description"] = record.description
        if record.metadata:
            out["metadata"] = json.dumps(record.metadata, sort_keys=True)
        if record.run:
            out["run"] = record.run
        if record.inputs:
            out["inputs"] = ",".join(record.inputs)
        if not node.selector.startswith("v") or not node.selector[1:].isdigit():
            out["alias"] = node.selector
    elif node.kind == DIR:
        out["path"] = node.path
    elif node.kind == FILE:
        e = view.manifest[node.index]
        out.update({"path": e.path, "executable": "1" if e.executable else "0"})
        if not is_unchecked(e):
            out["size"] = str(e.size)
        if e.digest:
            out["digest"] = e.digest
        if e.chunks:
            out["chunks"] = str(len(e.chunks))
        if e.ref:
            out["ref"] = e.ref
        if e.etag:
            out["etag"] = e.etag
        if e.version_id:
            out["version_id"] = e.version_id
    return out
