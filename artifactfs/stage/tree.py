"""The tree of a stage: the base manifest plus the changes made since, held as nodes.

A directory's children are read from the base manifest only when first needed, so an untouched
subtree of a million-file base costs one node. Renaming a directory moves its node (the untouched
children still come from its `base_path`), so it is O(1) whatever its size. A file is either an entry
of the base (`base_index`, content in the store) or a local data file of the stage (`data`).

The same methods serve the live mount and the replay of the journal, so both build the same tree.
"""

import dataclasses
from collections.abc import Iterator

from ..errors import InvalidPath
from ..manifest import Entry, Manifest, check_link_target


class FileNode:
    """A file, or a symbolic link (`link` is its target; no data)."""
    __slots__ = ("parent", "name", "inode", "base_index", "data", "size", "digest", "chunks", "executable",
                 "mtime_ns", "dirty", "hasher", "link", "atime_ns", "ctime_ns")

    def __init__(self, parent, name, *, base_index=None, data=None, size=0, digest=None, chunks=None,
                 executable=False, mtime_ns=0, link=None):
        self.parent, self.name, self.inode = parent, name, 0
        self.base_index = base_index  # content is this entry of the base manifest (untouched)
        self.data = data  # or: content is the stage's local data file with this id
        self.size = size
        self.digest, self.chunks = digest, chunks  # known hash of the data file (None: hash at commit)
        self.executable = executable
        self.mtime_ns = mtime_ns
        self.dirty = False  # data changed since its last journal record
        self.hasher = None  # StreamHasher while writes stay sequential
        self.link = link
        self.atime_ns = self.ctime_ns = None  # None: as mtime (set by touch -a, chmod, utimes...)

    is_dir = False


class DirNode:
    __slots__ = ("parent", "name", "inode", "base_path", "entries", "mtime_ns", "atime_ns", "ctime_ns", "subdirs")

    def __init__(self, parent, name, base_path=None, mtime_ns=0):
        self.parent, self.name, self.inode = parent, name, 0
        self.base_path = base_path  # directory of the base whose entries this one started with
        self.entries = None if base_path is not None else {}  # None: not read from the base yet
        self.mtime_ns = mtime_ns
        self.atime_ns = self.ctime_ns = None
        self.subdirs = None  # how many subdirectories, once counted (None: count again)

    is_dir = True
    link = None


class StageTree:
    def __init__(self, base: Manifest, base_mtime_ns: int):
        self.base = base
        self.base_mtime_ns = base_mtime_ns
        self.root = DirNode(None, "", "" if len(base) else None, base_mtime_ns)

    # ---- navigation ---------------------------------------------------------------------------
    def children(self, d: DirNode) -> dict:
        if d.entries is None:
            entries: dict[str, DirNode | FileNode] = {}
            for c in self.base.children(d.base_path):
                if c.is_dir:
                    sub = f"{d.base_path}/{c.name}" if d.base_path else c.name
                    entries[c.name] = DirNode(d, c.name, sub, self.base_mtime_ns)
                else:
                    entries[c.name] = self._base_file(d, c.name, c.index, self.base.is_executable(c.index),
                                                      self.base_mtime_ns)
            d.entries = entries
        return d.entries

    def _base_file(self, parent: DirNode, name: str, index: int, executable: bool, mtime_ns: int) -> FileNode:
        return FileNode(parent, name, base_index=index, size=self.base.size_of(index), executable=executable,
                        mtime_ns=mtime_ns, link=self.base.target_of(index) or None)

    def subdir_count(self, d: DirNode) -> int:
        """Subdirectories of `d` (its link count is 2 more), counted without loading a base directory."""
        if d.subdirs is None:
            if d.entries is None:
                d.subdirs = sum(1 for c in self.base.children(d.base_path) if c.is_dir)
            else:
                d.subdirs = sum(1 for n in d.entries.values() if n.is_dir)
        return d.subdirs

    def child(self, d: DirNode, name: str):
        return self.children(d).get(name)

    def path_of(self, node) -> str | None:
        """Current path of `node`, or None once it is no longer in the tree (unlinked)."""
        parts = []
        while node.parent is not None:
            if node.parent.entries is None or node.parent.entries.get(node.name) is not node:
                return None
            parts.append(node.name)
            node = node.parent
        if node is not self.root:
            return None
        return "/".join(reversed(parts))

    def lookup_path(self, path: str):
        node = self.root
        for seg in [s for s in path.split("/") if s]:
            if not node.is_dir:
                return None
            node = self.child(node, seg)
            if node is None:
                return None
        return node

    def parent_and_name(self, path: str) -> tuple[DirNode, str]:
        head, _, name = path.rpartition("/")
        parent = self.lookup_path(head)
        if parent is None or not parent.is_dir or not name:
            raise InvalidPath(f"stage path {path!r} has no parent directory")
        return parent, name

    # ---- changes (the live mount and the replay both call these) ------------------------------
    def mkdir(self, parent: DirNode, name: str, mtime_ns: int) -> DirNode:
        d = DirNode(parent, name, None, mtime_ns)
        self.children(parent)[name] = d
        parent.subdirs = None
        parent.mtime_ns = mtime_ns
        return d

    def put(self, parent: DirNode, name: str, *, data: str, size: int, digest=None, chunks=None,
            executable=False, mtime_ns=0) -> FileNode:
        """Make `parent/name` the local data file `data` (a new file or a new content)."""
        entries = self.children(parent)
        node = entries.get(name)
        parent.subdirs = None
        if node is None or node.is_dir:
            node = FileNode(parent, name)
            entries[name] = node
        node.base_index, node.data, node.size, node.link = None, data, size, None
        node.digest, node.chunks = digest, tuple(chunks) if chunks else None
        node.executable, node.mtime_ns = executable, mtime_ns
        return node

    def symlink(self, parent: DirNode, name: str, target: str, mtime_ns: int) -> FileNode:
        node = FileNode(parent, name, mtime_ns=mtime_ns, link=check_link_target(target, name))
        self.children(parent)[name] = node
        parent.mtime_ns = mtime_ns
        return node

    def remove(self, parent: DirNode, name: str):
        node = self.children(parent).pop(name)
        parent.subdirs = None
        return node

    def rename(self, old_parent: DirNode, old_name: str, new_parent: DirNode, new_name: str):
        node = self.children(old_parent).pop(old_name)
        self.children(new_parent)[new_name] = node  # replaces what was there (checked by the caller)
        old_parent.subdirs = new_parent.subdirs = None
        node.parent, node.name = new_parent, new_name
        return node

    # ---- replay ---------------------------------------------------------------------------------
    def apply(self, op: dict) -> None:
        """Replay one journal operation (as StageFiles.record wrote it)."""
        replay = self._REPLAY.get(op["op"])
        if replay is None:
            raise InvalidPath(f"unknown journal operation {op['op']!r}")
        replay(self, op)

    def _replay_mkdir(self, op: dict) -> None:
        parent, name = self.parent_and_name(op["p"])
        if self.child(parent, name) is None:
            self.mkdir(parent, name, op.get("t", 0))

    def _replay_put(self, op: dict) -> None:
        parent, name = self.parent_and_name(op["p"])
        self.put(parent, name, data=op["d"], size=op["s"], digest=op.get("h"), chunks=op.get("c"),
                 executable=op.get("x", False), mtime_ns=op.get("t", 0))

    def _replay_ln(self, op: dict) -> None:
        parent, name = self.parent_and_name(op["p"])
        self.symlink(parent, name, op["l"], op.get("t", 0))

    def _replay_rm(self, op: dict) -> None:
        parent, name = self.parent_and_name(op["p"])
        if self.child(parent, name) is not None:
            self.remove(parent, name)

    def _replay_mv(self, op: dict) -> None:
        src_parent, src_name = self.parent_and_name(op["a"])
        dst_parent, dst_name = self.parent_and_name(op["b"])
        if self.child(src_parent, src_name) is not None:
            self.rename(src_parent, src_name, dst_parent, dst_name)

    def _replay_attr(self, op: dict) -> None:
        node = self.lookup_path(op["p"])
        if node is None:
            return
        if "x" in op and not node.is_dir:
            node.executable = op["x"]
        if "t" in op:
            node.mtime_ns = op["t"]
        node.atime_ns = op.get("a", node.atime_ns)
        node.ctime_ns = op.get("c", node.ctime_ns)

    def _replay_reset(self, op: dict) -> None:  # the start of a compacted journal: an empty root, rebuilt below
        self.root.entries, self.root.base_path = {}, None

    def _replay_graft(self, op: dict) -> None:  # an untouched base directory, placed at `p`
        parent, name = self.parent_and_name(op["p"])
        self.children(parent)[name] = DirNode(parent, name, op["b"], op.get("t", 0))
        parent.subdirs = None

    def _replay_base(self, op: dict) -> None:  # an untouched base file, placed at `p`
        parent, name = self.parent_and_name(op["p"])
        index = self.base.find(op["b"])
        if index is None:
            raise InvalidPath(f"journal names base file {op['b']!r}, which the base does not have")
        self.children(parent)[name] = self._base_file(parent, name, index, op.get("x", False), op.get("t", 0))

    _REPLAY = {"mkdir": _replay_mkdir, "put": _replay_put, "ln": _replay_ln, "rm": _replay_rm, "mv": _replay_mv,
               "attr": _replay_attr, "reset": _replay_reset, "graft": _replay_graft, "base": _replay_base}

    def snapshot_ops(self) -> list[dict]:
        """A journal that rebuilds this tree from the base in one op per loaded node (compaction)."""
        if self.root.entries is None:
            return []  # nothing loaded, nothing changed: the base itself
        ops: list[dict] = [{"op": "reset"}]
        stack = [(self.root, "")]
        while stack:
            d, path = stack.pop()
            for name, node in d.entries.items():
                full = f"{path}/{name}" if path else name
                if node.is_dir and node.entries is None:
                    ops.append({"op": "graft", "p": full, "b": node.base_path, "t": node.mtime_ns})
                elif node.is_dir:
                    ops.append({"op": "mkdir", "p": full, "t": node.mtime_ns})
                    stack.append((node, full))
                elif node.link is not None and node.base_index is None:
                    ops.append({"op": "ln", "p": full, "l": node.link, "t": node.mtime_ns})
                elif node.data is not None:
                    ops.append({"op": "put", "p": full, "d": node.data, "s": node.size, "h": node.digest,
                                "c": list(node.chunks) if node.chunks else None, "x": node.executable,
                                "t": node.mtime_ns})
                else:
                    ops.append({"op": "base", "p": full, "b": self.base.path_of(node.base_index),
                                "x": node.executable, "t": node.mtime_ns})
                times = {k: v for k, v in (("a", node.atime_ns), ("c", node.ctime_ns)) if v is not None}
                if times:
                    ops.append({"op": "attr", "p": full, **times})
        return ops

    # ---- reading the whole tree -----------------------------------------------------------------
    def walk_files(self) -> Iterator[tuple[str, FileNode | None, int | None]]:
        """(path, node, None) for stage nodes and (path, None, base index) for untouched subtrees."""
        stack = [(self.root, "")]
        while stack:
            d, path = stack.pop()
            if d.entries is None:  # untouched since the base: its entries, re-rooted at `path`
                start, end = self.base.dir_range(d.base_path)
                if start == end and d.base_path:  # an empty directory of the base: its own entry
                    own = self.base.find(d.base_path)
                    if own is not None:
                        yield path, None, own
                    continue
                cut = len(d.base_path) + 1 if d.base_path else 0
                for i in range(start, end):
                    rel = self.base.path_of(i)[cut:]
                    yield (f"{path}/{rel}" if path else rel), None, i
                continue
            for name, node in d.entries.items():
                full = f"{path}/{name}" if path else name
                if node.is_dir:
                    stack.append((node, full))
                else:
                    yield full, node, None

    def new_empty_dirs(self) -> list[str]:
        """Directories made or emptied in the stage that hold nothing (those of the base that still
        hold nothing are its entries: walk_files gives them)."""
        out = []
        stack = [(self.root, "")]
        while stack:
            d, path = stack.pop()
            if d.entries is None:
                continue
            if not d.entries and path:
                out.append(path)
            stack.extend((node, f"{path}/{name}" if path else name) for name, node in d.entries.items()
                         if node.is_dir)
        return sorted(out)

    def changes(self) -> dict:
        """Counts of files added, modified and deleted against the base (without hashing anything)."""
        added = modified = unchanged = 0
        for path, node, index in self.walk_files():
            source = index if index is not None or node is None else node.base_index
            if source is not None and self.base.path_of(source) == path:  # a base file still where it was
                unchanged += 1
            elif self.base.find(path) is not None:
                modified += 1
            else:
                added += 1
        return {"added": added, "modified": modified, "deleted": len(self.base) - unchanged - modified}

    def entry_of(self, path: str, node: FileNode | None, index: int | None) -> Entry | None:
        """The manifest entry for a base file at `path`; None for a data file (hashed by the caller)."""
        if index is not None:
            e = self.base[index]
            return e if e.path == path else dataclasses.replace(e, path=path)
        assert node is not None, "walk_files gives a node or a base index"
        if node.base_index is not None:
            return dataclasses.replace(self.base[node.base_index], path=path, executable=node.executable)
        if node.link is not None:
            return Entry.link(path, node.link)
        return None
