"""ingest.py as a module: what a directory walk turns into entries, and what hashing and uploading
sends to the store (each content once, small files packed in path order, nothing the store holds)."""

import os

import pytest

from artifactfs import layout
from artifactfs.errors import InvalidPath, LocalIOError
from artifactfs.hashing import digest_bytes
from artifactfs.ingest import LocalFile, hash_and_upload, local_file, walk_directory
from artifactfs.manifest import DIR, LINK
from artifactfs.packs import PACK_FILE_MAX
from artifactfs.store.local import LocalStore


def tree(root, files: dict[str, bytes]):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_walk_lists_regular_files_with_their_executable_bit(tmp_path):
    tree(tmp_path, {"a.txt": b"a", "sub/b.bin": b"b", "sub/deep/c": b"c"})
    os.chmod(tmp_path / "sub/b.bin", 0o755)
    files = walk_directory(str(tmp_path), "data")
    assert sorted((f.path, f.executable) for f in files) == [
        ("data/a.txt", False), ("data/sub/b.bin", True), ("data/sub/deep/c", False)]
    assert all(os.path.isfile(f.source) for f in files)


def test_walk_for_a_commit_records_links_and_empty_directories_without_following(tmp_path):
    tree(tmp_path, {"a.txt": b"a"})
    (tmp_path / "empty").mkdir()
    os.symlink("a.txt", tmp_path / "to-a")
    os.symlink("/etc", tmp_path / "outside")
    specials = []
    files = walk_directory(str(tmp_path), None, specials)
    assert [f.path for f in files] == ["a.txt"]
    assert sorted((e.path, e.kind, e.target) for e in specials) == [
        ("empty", DIR, None), ("outside", LINK, "/etc"), ("to-a", LINK, "a.txt")]


def test_walk_for_a_reference_follows_links_only_inside_the_root(tmp_path):
    root = tmp_path / "root"
    tree(root, {"a.txt": b"a"})
    os.symlink("a.txt", root / "inside")
    assert sorted(f.path for f in walk_directory(str(root))) == ["a.txt", "inside"]
    os.symlink("/etc/hostname", root / "escape")
    with pytest.raises(InvalidPath, match="outside the committed directory"):
        walk_directory(str(root))


def test_walk_refuses_special_files_and_names_that_are_not_utf8(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(LocalIOError, match="not a regular file"):
        walk_directory(str(tmp_path))
    os.unlink(tmp_path / "fifo")
    (tmp_path / os.fsdecode(b"bad\xff")).write_bytes(b"x")
    with pytest.raises(InvalidPath, match="not valid UTF-8"):
        walk_directory(str(tmp_path))


def test_local_file_is_named_by_its_base_name_and_must_be_regular(tmp_path):
    tree(tmp_path, {"x.csv": b"1,2\n"})
    assert local_file(str(tmp_path / "x.csv")).path == "x.csv"
    assert local_file(str(tmp_path / "x.csv"), "tables/y.csv").path == "tables/y.csv"
    with pytest.raises(LocalIOError):
        local_file(str(tmp_path))


def test_upload_sends_each_content_once_and_packs_small_files_in_path_order(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    big = os.urandom(PACK_FILE_MAX + 1)
    tree(tmp_path / "src", {"b.txt": b"same", "a.txt": b"same", "c.txt": b"other", "big.bin": big})
    files = walk_directory(str(tmp_path / "src"))
    entries, uploaded = hash_and_upload(store, files)
    assert [e.path for e in entries] == [f.path for f in files]  # in the order given
    by_path = {e.path: e for e in entries}
    assert by_path["a.txt"].digest == by_path["b.txt"].digest == digest_bytes(b"same")
    assert by_path["a.txt"].pack and by_path["a.txt"].pack == by_path["c.txt"].pack
    assert by_path["a.txt"].offset < by_path["c.txt"].offset  # path order inside the pack
    assert by_path["big.bin"].pack is None and store.exists(layout.blob_key(by_path["big.bin"].digest))
    pack = store.get(layout.pack_key(by_path["a.txt"].pack))[0]
    for e in (by_path["a.txt"], by_path["c.txt"]):
        assert pack[e.offset:e.offset + e.size] == (tmp_path / "src" / e.path).read_bytes()
    assert uploaded == len(big) + len(pack)  # "same" once


def test_upload_skips_what_a_live_version_already_stores(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    tree(tmp_path / "src", {"a.txt": b"kept", "big.bin": os.urandom(PACK_FILE_MAX + 1)})
    first, _ = hash_and_upload(store, walk_directory(str(tmp_path / "src")))
    where = {e.digest: (e.pack, e.offset) for e in first}
    again, uploaded = hash_and_upload(store, walk_directory(str(tmp_path / "src")), known=where.get)
    assert uploaded == 0
    assert [(e.pack, e.offset) for e in again] == [(e.pack, e.offset) for e in first]


def test_upload_of_a_vanished_file_is_one_clear_error(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    with pytest.raises(LocalIOError, match="cannot read"):
        hash_and_upload(store, [LocalFile("gone.txt", str(tmp_path / "gone.txt"))])
