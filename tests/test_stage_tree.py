"""The stage tree and its journal, without FUSE: replay gives the tree the live mount had."""

import pytest

from artifactfs.errors import LocalIOError
from artifactfs.manifest import Entry, Manifest
from artifactfs.stage.journal import Journal, read_journal
from artifactfs.stage.tree import StageTree

D = "0" * 32


def base() -> Manifest:
    return Manifest.from_entries([Entry(p, 1, D) for p in ("a.txt", "d/x.txt", "d/sub/y.txt", "e/z.txt")])


def replay(ops) -> StageTree:
    tree = StageTree(base(), 0)
    for op in ops:
        tree.apply(op)
    return tree


def paths(tree) -> dict:
    return {p: (i is not None or node.base_index is not None) for p, node, i in tree.walk_files()}


def test_replay_of_renames_removes_and_puts():
    tree = replay([
        {"op": "mv", "a": "d", "b": "moved"},  # an untouched directory moves as one node
        {"op": "mkdir", "p": "new"},
        {"op": "put", "p": "new/f.bin", "d": "id1", "s": 5},
        {"op": "rm", "p": "e/z.txt"},
        {"op": "put", "p": "a.txt", "d": "id2", "s": 7, "h": "1" * 32},
        {"op": "mkdir", "p": "empty"},
        {"op": "attr", "p": "moved/x.txt", "x": True},
    ])
    assert paths(tree) == {"a.txt": False, "moved/x.txt": True, "moved/sub/y.txt": True, "new/f.bin": False}
    assert tree.changes() == {"added": 3, "modified": 1, "deleted": 3}
    assert tree.new_empty_dirs() == ["e", "empty"]
    assert tree.entry_of("moved/x.txt", tree.lookup_path("moved/x.txt"), None).executable


def test_untouched_subtrees_are_not_loaded():
    tree = replay([{"op": "mv", "a": "d", "b": "moved"}])
    assert tree.lookup_path("moved").entries is None
    assert sorted(p for p, _, _ in tree.walk_files()) == ["a.txt", "e/z.txt", "moved/sub/y.txt", "moved/x.txt"]


def test_journal_torn_last_line_is_ignored_and_a_torn_middle_is_an_error(tmp_path):
    path = str(tmp_path / "j.jsonl")
    j = Journal(path)
    j.append({"op": "mkdir", "p": "x"})
    j.sync()
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"op":"mkd')
    assert read_journal(path) == [{"op": "mkdir", "p": "x"}]
    with open(path, "ab") as f:
        f.write(b'\n{"op":"mkdir","p":"y"}\n{"op":"mkdir","p":"z"}\n')
    with pytest.raises(LocalIOError):
        read_journal(path)


def test_compacted_journal_rebuilds_the_same_tree():
    ops = [{"op": "mv", "a": "d", "b": "moved"}, {"op": "mkdir", "p": "new"},
           {"op": "put", "p": "new/f.bin", "d": "id1", "s": 5}, {"op": "rm", "p": "e/z.txt"},
           {"op": "mkdir", "p": "empty"}, {"op": "attr", "p": "a.txt", "x": True},
           {"op": "put", "p": "new/g.bin", "d": "id2", "s": 1}, {"op": "rm", "p": "new/g.bin"}]
    tree = replay(ops)
    snap = tree.snapshot_ops()
    again = replay(snap)
    assert paths(again) == paths(tree) and again.new_empty_dirs() == tree.new_empty_dirs()
    assert again.changes() == tree.changes()
    assert again.lookup_path("a.txt").executable
    assert replay([]).snapshot_ops() == []
