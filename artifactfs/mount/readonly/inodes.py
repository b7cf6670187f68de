"""Inode numbers and the table of inodes the kernel currently knows about.

An inode number is derived from a stable key (xxh64 of e.g. `V:acme/vision/bikes:3:images/cat.png`),
so the same file of the same version has the same number in every listing, across remounts and
whether it was reached through `bikes:v3` or an alias pointing at v3 (which also lets the two share
the page cache). Only inodes the kernel holds are in the table, each with its lookup count: pyfuse3
answers READDIRPLUS, so both `lookup` and every entry `readdir` returns count one lookup, and `forget`
removes a node when its count drops to zero (pyfuse3 developer-notes/lookup_counts.rst). Memory
follows what the kernel holds, not the size of the versions mounted.

Entries a directory listing returns are kept small (`count_listed`: a file as one int, a directory as a
short row) and become a Node only when the kernel asks about that inode (`get`): `find` lists every
entry but asks about none of them.

Invariant (single trio thread, no await inside these methods): `remember` and `forget` are atomic with
respect to other requests, so a node is never dropped between a lookup and its reply.
"""

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyfuse3
import xxhash

if TYPE_CHECKING:  # namespace.py imports nothing of this module, but the daemon needs no import for a hint
    from ...blocks import BlockedBlob
    from .namespace import VersionView

log = logging.getLogger(__name__)

ROOT_INODE = pyfuse3.ROOT_INODE
INODE_MASK = (1 << 63) - 1

# node kinds
# SEL is a `name:vN` or `name:alias` directory: its content is the version the selector names,
# resolved when needed (an alias again after its TTL), so listing a project loads no manifest.
# ARTIFACT is the colon-free `name/` directory, whose children `vN` and `alias` are the same SEL
# nodes (same inodes) as `name:vN` and `name:alias`.
ROOT, ENTITY, PROJECT, ARTIFACT, SEL, DIR, FILE = "root", "entity", "project", "artifact", "sel", "dir", "file"


def inode_of(key: str) -> int:
    return inode_of_bytes(key.encode("utf-8"))


def inode_of_bytes(key: bytes) -> int:
    ino = xxhash.xxh64_intdigest(key) & INODE_MASK
    return ino if ino > ROOT_INODE else ino + 2


@dataclass(eq=False, slots=True)
class Node:
    """What an inode stands for. `version` is a namespace.VersionView for DIR and FILE nodes and for
    a SEL node of an alias looked up by name (the version it named then), None otherwise; `selector`
    is `vN` or an alias for SEL nodes."""

    ino: int
    kind: str
    entity: str = ""
    project: str = ""
    name: str = ""  # artifact name (ARTIFACT, SEL)
    selector: str = ""  # SEL only: vN or alias
    version: "VersionView | None" = None
    path: str = ""  # within the version, '' for its root
    index: int = -1  # FILE: entry index in the manifest
    lookups: int = 0
    opened: bool = False  # FILE: opened at least once since the kernel looked it up
    opens: int = 0  # FILE: OPENs answered or under way (a first open's page-cache fill checks it)
    pieces: list | None = None  # FILE: its pieces (fetch.pieces_of), kept from its first open
    blob: "BlockedBlob | None" = None  # FILE: its blob when it has a block list (random reads by block)

    @property
    def key(self) -> str:
        return node_key(self.kind, self.entity, self.project, self.name, self.selector, self.version, self.path)


def node_key(kind, entity="", project="", name="", selector="", version=None, path="") -> str:
    if kind == ENTITY:
        return f"E:{entity}"
    if kind == PROJECT:
        return f"P:{entity}/{project}"
    if kind == ARTIFACT:
        return f"A:{entity}/{project}/{name}"
    if kind == SEL:  # an alias resolved at lookup is pinned to that version: see ReadOnlyFS._child
        return f"S:{entity}/{project}/{name}:{selector}" + (f"@{version.key}" if version is not None else "")
    if kind in (DIR, FILE):
        return f"V:{version.key}:{path}"
    return "root"


# A listed file is one int instead of a row of objects (after listing a directory of a million files
# the daemon holds 256 MiB instead of 398): its lookup count above _LOOKUPS_AT, a slot naming its version
# in the bits below that (`InodeTable._views`), its manifest index in the low 40 bits. Its path comes
# from the manifest when the kernel asks about it. A listed directory keeps a small row: its name is not
# a manifest entry.
_LOOKUPS_AT = 72
_ONE_LOOKUP = 1 << _LOOKUPS_AT
_SLOT_AT = 40
_SLOT_MASK = (1 << (_LOOKUPS_AT - _SLOT_AT)) - 1
_INDEX_MASK = (1 << _SLOT_AT) - 1


class InodeTable:
    def __init__(self):
        self._nodes: dict[int, Node] = {ROOT_INODE: Node(ROOT_INODE, ROOT, lookups=1)}
        # listed, not asked about yet: files packed into an int (above), directories as
        # ino -> [lookups, version, directory prefix, UTF-8 name]
        self._files: dict[int, int] = {}
        self._dirs: dict[int, list] = {}
        self._views: dict[int, list] = {}  # slot -> [version, listed files naming it]
        self._slot_of: dict[int, int] = {}  # id(version) -> its slot (the version is held in _views)
        self._next_slot = 0

    def __len__(self) -> int:
        return len(self._nodes) + len(self._files) + len(self._dirs)

    def __contains__(self, ino: int) -> bool:
        """Whether the kernel holds `ino`, without making a listed entry a Node."""
        return ino in self._nodes or ino in self._files or ino in self._dirs

    def get(self, ino: int) -> Node | None:
        node = self._nodes.get(ino)
        if node is not None:
            return node
        packed = self._files.pop(ino, None)
        if packed is not None:
            version = self._release(packed >> _SLOT_AT & _SLOT_MASK)
            index = packed & _INDEX_MASK
            node = Node(ino, FILE, version=version, path=version.manifest[index].path, index=index,
                        lookups=packed >> _LOOKUPS_AT)
        else:
            row = self._dirs.pop(ino, None)
            if row is None:
                return None
            lookups, version, prefix, name = row
            node = Node(ino, DIR, version=version, path=prefix + name.decode("utf-8"), lookups=lookups)
        self._nodes[ino] = node
        return node

    def count_listed(self, version, prefix: str, rows) -> None:
        """Count one lookup of each (ino, UTF-8 name, manifest index or -1 for a directory) a listing of
        the directory `prefix` (with its trailing slash) of `version` returned."""
        nodes, files, dirs = self._nodes, self._files, self._dirs
        slot = new_file = None  # this version's slot and a new file's bits but its index, once needed
        added = 0
        for ino, name, index in rows:
            if index >= 0 and (packed := files.get(ino)) is not None:
                files[ino] = packed + _ONE_LOOKUP
            elif (node := nodes.get(ino)) is not None:
                node.lookups += 1
            elif index >= 0:
                if slot is None:
                    slot = self._slot(version)
                    new_file = _ONE_LOOKUP | slot << _SLOT_AT
                files[ino] = new_file | index
                added += 1
            elif (row := dirs.get(ino)) is not None:
                row[0] += 1
            else:
                dirs[ino] = [1, version, prefix, name]
        if added and slot is not None:
            self._views[slot][1] += added

    def _slot(self, version) -> int:
        slot = self._slot_of.get(id(version))
        if slot is None:
            slot = self._slot_of[id(version)] = self._next_slot
            self._next_slot = (self._next_slot + 1) & _SLOT_MASK  # 4 billion versions before one is reused
            self._views[slot] = [version, 0]
        return slot

    def _release(self, slot: int):
        """A listed file naming `slot` is gone; returns its version (let go once no file names it)."""
        held = self._views[slot]
        held[1] -= 1
        if held[1] <= 0:
            del self._views[slot], self._slot_of[id(held[0])]
        return held[0]

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
        if ino == ROOT_INODE:
            return
        node = self._nodes.get(ino)
        if node is not None:
            node.lookups -= nlookup
            if node.lookups <= 0:
                del self._nodes[ino]
            return
        packed = self._files.get(ino)
        if packed is not None:
            if packed >> _LOOKUPS_AT <= nlookup:
                del self._files[ino]
                self._release(packed >> _SLOT_AT & _SLOT_MASK)
            else:
                self._files[ino] = packed - nlookup * _ONE_LOOKUP
            return
        row = self._dirs.get(ino)
        if row is not None:
            row[0] -= nlookup
            if row[0] <= 0:
                del self._dirs[ino]
