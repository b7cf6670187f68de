"""Inode numbers and the table of inodes the kernel currently knows about.

An inode number is derived from a stable key (xxh64 of e.g. `V:acme/vision/bikes:3:images/cat.png`),
so the same file of the same version has the same number in every listing, across remounts and
whether it was reached through `bikes:v3` or an alias pointing at v3 (which also lets the two share
the page cache). Only inodes the kernel holds are in the table, each with its lookup count: pyfuse3
answers READDIRPLUS, so both `lookup` and every entry `readdir` returns count one lookup, and `forget`
removes a node when its count drops to zero (pyfuse3 developer-notes/lookup_counts.rst). Memory
follows what the kernel holds, not the size of the versions mounted.

Entries a directory listing returns are kept as a small row (`count_listed`) and become a Node only
when the kernel asks about that inode (`get`): `find` lists every entry but asks about none of them.

Invariant (single trio thread, no await inside these methods): `remember` and `forget` are atomic with
respect to other requests, so a node is never dropped between a lookup and its reply.
"""

import logging
from dataclasses import dataclass

import pyfuse3
import xxhash

log = logging.getLogger(__name__)

ROOT_INODE = pyfuse3.ROOT_INODE
INODE_MASK = (1 << 63) - 1

# node kinds
# SEL is a `name:vN` or `name:alias` directory: its content is the version the selector names,
# resolved when needed (an alias again after its TTL), so listing a project loads no manifest.
ROOT, ENTITY, PROJECT, SEL, DIR, FILE = "root", "entity", "project", "sel", "dir", "file"


def inode_of(key: str) -> int:
    return inode_of_bytes(key.encode("utf-8"))


def inode_of_bytes(key: bytes) -> int:
    ino = xxhash.xxh64_intdigest(key) & INODE_MASK
    return ino if ino > ROOT_INODE else ino + 2


@dataclass(eq=False, slots=True)
class Node:
    """What an inode stands for. `version` is a namespace.VersionView for DIR and FILE nodes, None
    otherwise; `selector` is `vN` or an alias for SEL nodes."""

    ino: int
    kind: str
    entity: str = ""
    project: str = ""
    name: str = ""  # artifact name (SEL)
    selector: str = ""  # SEL only: vN or alias
    version: object = None
    path: str = ""  # within the version, '' for its root
    index: int = -1  # FILE: entry index in the manifest
    lookups: int = 0
    opened: bool = False  # FILE: opened at least once since the kernel looked it up

    @property
    def key(self) -> str:
        return node_key(self.kind, self.entity, self.project, self.name, self.selector, self.version, self.path)


def node_key(kind, entity="", project="", name="", selector="", version=None, path="") -> str:
    if kind == ENTITY:
        return f"E:{entity}"
    if kind == PROJECT:
        return f"P:{entity}/{project}"
    if kind == SEL:
        return f"S:{entity}/{project}/{name}:{selector}"
    if kind in (DIR, FILE):
        return f"V:{version.key}:{path}"
    return "root"


class InodeTable:
    def __init__(self):
        self._nodes: dict[int, Node] = {ROOT_INODE: Node(ROOT_INODE, ROOT, lookups=1)}
        # listed, not asked about yet: ino -> [lookups, version, directory prefix, UTF-8 name, index or -1]
        self._listed: dict[int, list] = {}

    def __len__(self) -> int:
        return len(self._nodes) + len(self._listed)

    def __contains__(self, ino: int) -> bool:
        """Whether the kernel holds `ino`, without making a listed row a Node."""
        return ino in self._nodes or ino in self._listed

    def get(self, ino: int) -> Node | None:
        node = self._nodes.get(ino)
        if node is None:
            row = self._listed.pop(ino, None)
            if row is None:
                return None
            lookups, version, prefix, name, index = row
            node = self._nodes[ino] = Node(ino, FILE if index >= 0 else DIR, version=version,
                                           path=prefix + name.decode("utf-8"), index=index, lookups=lookups)
        return node

    def count_listed(self, version, prefix: str, rows) -> None:
        """Count one lookup of each (ino, UTF-8 name, index or -1 for a directory) a listing of the
        directory `prefix` (with its trailing slash) of `version` returned."""
        nodes, listed = self._nodes, self._listed
        for ino, name, index in rows:
            row = listed.get(ino)
            if row is not None:
                row[0] += 1
            elif (node := nodes.get(ino)) is not None:
                node.lookups += 1
            else:
                listed[ino] = [1, version, prefix, name, index]

    def remember(self, node: Node) -> Node:
        """Count one kernel lookup of `node` (call right before replying to lookup)."""
        known = self.get(node.ino)
        if known is None:
            self._nodes[node.ino] = node
            known = node
        elif known.kind != node.kind or known.key != node.key:
            # Two keys hashing to one 63-bit number: astronomically rare; keep the one the kernel holds.
            log.error("inode collision between %s and %s", known.key, node.key)
        known.lookups += 1
        return known

    def forget(self, ino: int, nlookup: int) -> None:
        node = self._nodes.get(ino) or self._listed.get(ino)
        if node is None or ino == ROOT_INODE:
            return
        if type(node) is list:
            node[0] -= nlookup
            if node[0] <= 0:
                del self._listed[ino]
            return
        node.lookups -= nlookup
        if node.lookups <= 0:
            del self._nodes[ino]
