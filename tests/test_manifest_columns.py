"""The columnar form of manifests: exact round trips, refusal of anything unsound, and the repository
loading versions from it (store and local cache) with the JSON manifest as the fallback."""

import gzip
import json
import logging
import os
import struct
import zlib
from array import array

import pytest
import xxhash

from artifactfs import layout
from artifactfs.client import Client
from artifactfs.errors import CorruptData
from artifactfs.hashing import digest_bytes
from artifactfs.manifest import Entry, Manifest, columnar
from artifactfs.repo import Repository

D = "0123456789abcdef" * 2
P = "fedcba9876543210" * 2


def sample() -> Manifest:
    entries = [Entry(f"d{i // 100}/f{i:05d}", i, D, pack=P if i % 2 else None, offset=7 * i) for i in range(1000)]
    entries += [Entry('q/a"b', 2, D, executable=True), Entry("r/big", 3, D, chunks=(D, D)),
                Entry("s/\u00e9t\u00e9", 4, D), Entry("t/ref", 5, None, ref="s3://b/k", etag="e"),
                Entry("u/line\nbreak", 6, D)]
    return Manifest.from_entries(entries)


@pytest.mark.parametrize("make", [sample, lambda: Manifest.from_entries([]),
                                  lambda: Manifest.from_entries([Entry("only", 1, D)])])
def test_round_trip_is_exact(make):
    m = make()
    c = columnar.decode(columnar.encode(m), m.digest)
    assert list(c) == list(m) and c.digest == m.digest and c.to_bytes() == m.to_bytes()
    assert c.chunk_size == m.chunk_size and c.total_size == m.total_size
    assert list(c.child_rows("")) == list(m.child_rows(""))


def unchecked(paths: list[bytes], pack_ids=None) -> Manifest:
    """A Manifest built straight from columns, skipping every check: what a buggy or hostile writer has."""
    ends = array("Q", [0])
    for p in paths:
        ends.append(ends[-1] + len(p))
    n = len(paths)
    m = Manifest(8 * 2**20, b"".join(paths), ends, array("Q", [1] * n), bytes.fromhex(D) * n, bytes(n), {})
    if pack_ids is not None:
        m._packs.ids, m._packs.offsets = array("I", pack_ids), array("Q", [0] * n)
    m._digest = D
    return m


@pytest.mark.parametrize("paths", [[b"../escape"], [b"/etc/evil"], [b"a/../../x"], [b"a//b"], [b"a/"], [b""],
                                   [b"b", b"a"], [b"a", b"a"], [b"a", b"a/b"], [b"a\x00b"], [b"\xff"],
                                   [b"a\xc3", b"a\xc3\xa9b"[2:]], [b"x\n/../y"], [b".hidden", b"a/./b"],
                                   [b"a/."], [b"."], [b"x/..", b"y"], [b".a", b"/x"], [b"ok/", b"p"],
                                   [b"-", b"../b"], [b"-", b".."], [b"a/b", b"b//c"]],
                         ids=repr)
def test_unsound_paths_are_refused(paths):
    data = columnar.encode(unchecked(paths))  # a valid checksum over bad content
    with pytest.raises(CorruptData):
        columnar.decode(data, D)


def test_names_with_dots_are_kept():
    paths = [b".hidden", b"a/.b/c", b"x/..y", b"x/y..", b"z.", b"\xc3\xa9/.d"]
    got = columnar.decode(columnar.encode(unchecked(paths)), D)
    assert [got._paths[i] for i in range(len(got))] == paths


def test_damage_and_mismatches_are_refused():
    m = sample()
    data = columnar.encode(m)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    for bad, digest in [(bytes(flipped), m.digest), (data[:-1], m.digest), (data[:40], m.digest), (b"", m.digest),
                        (data, P)]:  # P: the form of another manifest
        with pytest.raises(CorruptData):
            columnar.decode(bad, digest)
    with pytest.raises(CorruptData):  # a pack id outside the pack table
        columnar.decode(columnar.encode(unchecked([b"a"], pack_ids=[3])), D)
    m = unchecked([b"a"], pack_ids=[1])
    m._packs.table.append("../../escape")  # pack names become store keys
    with pytest.raises(CorruptData):
        columnar.decode(columnar.encode(m), D)
    for extras in ({0: {"evil": 1}}, {0: {"chunks": ["nope"]}}, {5: {"ref": "s3://b/k"}}):
        m = unchecked([b"a"])
        m._extras = extras
        with pytest.raises(CorruptData):
            columnar.decode(columnar.encode(m), D)


def encode_layout1(m: Manifest) -> bytes:
    """The form earlier releases wrote (layout 1): stores still hold it, so it must still load."""
    sections = [("paths", m._paths.blob), ("ends", m._paths.offsets.tobytes()), ("sizes", m._sizes.tobytes()),
                ("digests", m._digests), ("executable", m._executable)]
    if m._packs.ids is not None:
        sections += [("pack_ids", m._packs.ids.tobytes()), ("pack_offsets", m._packs.offsets.tobytes())]
    header = {"type": columnar.TYPE, "layout": 1, "manifest": m.digest, "chunk_size": m.chunk_size, "count": len(m),
              "packs": m._packs.table[1:], "extras": {str(i): e for i, e in m._extras.items()},
              "sections": [[name, len(data)] for name, data in sections]}
    body = zlib.compress(json.dumps(header).encode() + b"\n" + b"".join(d for _, d in sections), 1)
    return body + xxhash.xxh3_128_digest(body)


def test_forms_of_the_earlier_layout_still_load():
    m = sample()
    c = columnar.decode(encode_layout1(m), m.digest)
    assert list(c) == list(m) and c.to_bytes() == m.to_bytes()
    assert list(columnar.decode(encode_layout1(m), m.digest, checked=True)) == list(m)
    for paths in ([b"../escape"], [b"b", b"a"], [b"a", b"a/b"]):
        with pytest.raises(CorruptData):
            columnar.decode(encode_layout1(unchecked(paths)), D)


@pytest.fixture
def small_frames(monkeypatch):
    """Frames of a few bytes, so that every section spans many and they are inflated on threads."""
    monkeypatch.setattr(columnar, "FRAME", 40)


def test_many_frames_round_trip(small_frames):
    m = sample()
    data = columnar.encode(m)
    head = data[len(columnar.MAGIC) + 4:len(columnar.MAGIC) + 4 + struct.unpack_from("<I", data, 8)[0]]
    header = json.loads(zlib.decompress(head))
    assert all(len(frames) > 10 for _, frames in header["sections"])
    for checked in (False, True):
        c = columnar.decode(data, m.digest, checked=checked)
        assert list(c) == list(m) and c.to_bytes() == m.to_bytes()


@pytest.mark.parametrize("paths", [[b"a%03d" % i for i in range(40)] + [b"a/../x"],  # bad in a later frame
                                   [b"b%03d" % i for i in range(40)] + [b"a"],  # unsorted across frames
                                   [b"c%03d" % i for i in range(39)] + [b"c038/x"],  # file and directory
                                   [b"d%03d" % i for i in range(40)] + [b"d039"]],  # duplicate across frames
                         ids=["traversal", "unsorted", "file-and-directory", "duplicate"])
def test_unsound_paths_in_a_later_frame_are_refused(small_frames, paths):
    with pytest.raises(CorruptData):
        columnar.decode(columnar.encode(unchecked(paths)), D)


def sealed(header: dict, frames: list[bytes]) -> bytes:
    head = zlib.compress(json.dumps(header).encode())
    body = columnar.MAGIC + struct.pack("<I", len(head)) + head + b"".join(frames)
    return body + xxhash.xxh3_128_digest(body)


def hostile(change) -> bytes:
    """A one-entry form with a valid checksum, its header or frames changed by `change`."""
    frames = {"paths": b"a\0", "sizes": bytes(8), "digests": bytes(16), "executable": b"\0"}
    header = {"type": columnar.TYPE, "layout": 2, "manifest": D, "chunk_size": 8 * 2**20, "count": 1,
              "packs": [], "extras": {}}
    change(header, frames)
    packed = {name: zlib.compress(data) for name, data in frames.items()}
    header.setdefault("sections", [[name, [[len(packed[name]), len(data)]]] for name, data in frames.items()])
    return sealed(header, list(packed.values()))


def test_a_hand_made_form_loads():  # the one each hostile case below changes in one thing
    m = columnar.decode(hostile(lambda h, f: None), D)
    assert [e.path for e in m] == ["a"] and m.digest == D


@pytest.mark.parametrize("change", [
    lambda h, f: f.update(paths=b"a"),  # a frame of paths that does not end a path
    lambda h, f: f.update(paths=b"a\0b\0"),  # more paths than entries
    lambda h, f: f.update(paths=b"\0"),  # an empty path
    lambda h, f: f.update(sizes=bytes(16)),  # a section of another length
    lambda h, f: h.update(count=2),
    lambda h, f: h.update(count=-1),
    lambda h, f: h.update(layout=3),
    lambda h, f: f.pop("executable"),  # a section missing
    lambda h, f: h.update(sections=[["paths", [[10**6, 2]]]]),  # frames longer than the form
    lambda h, f: h.update(sections=[["evil", []]]),
    lambda h, f: h.update(sections="x"),
], ids=["unended", "extra-path", "empty-path", "long-section", "count", "negative-count", "layout",
        "missing", "frame-length", "unknown-section", "sections-not-a-list"])
def test_hostile_layouts_are_refused(change):
    with pytest.raises(CorruptData):
        columnar.decode(hostile(change), D)


def test_a_frame_is_never_inflated_past_its_stated_length():
    bomb = zlib.compress(bytes(50 * 2**20))  # 50 KB that inflate to 50 MiB of sizes
    header = {"type": columnar.TYPE, "layout": 2, "manifest": D, "chunk_size": 8 * 2**20, "count": 1,
              "packs": [], "extras": {},
              "sections": [["paths", [[len(zlib.compress(b"a\0")), 2]]], ["sizes", [[len(bomb), 8]]],
                           ["digests", [[len(zlib.compress(bytes(16))), 16]]],
                           ["executable", [[len(zlib.compress(b"\0")), 1]]]]}
    data = sealed(header, [zlib.compress(b"a\0"), bomb, zlib.compress(bytes(16)), zlib.compress(b"\0")])
    with pytest.raises(CorruptData, match="stated length"):
        columnar.decode(data, D)


def commit_tree(client: Client, root, files: dict, name="acme/p/cols"):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return client.commit_dir(str(root), name, "dataset")


class CountingStore:
    """The real store, with the keys read through it counted."""

    def __init__(self, store):
        self._store, self.gets = store, []

    def get(self, key, *args, **kwargs):
        self.gets.append(key)
        return self._store.get(key, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_repository_loads_versions_from_the_columnar_form(client, tmp_path, caplog):
    files = {f"d{i % 7}/f{i}.txt": f"file {i}".encode() for i in range(300)}
    record = commit_tree(client, tmp_path / "src", files).record
    digest = record.manifest
    columns_key = layout.manifest_columns_key(digest)
    assert client.store.exists(columns_key) and client.store.exists(layout.manifest_key(digest))
    expected = list(client.repo.manifest(digest))
    assert sorted(e.path for e in expected) == sorted(files)

    def load(cache_dir=None):
        store = CountingStore(client.store)
        return list(Repository(store, cache_dir).manifest(digest)), store.gets

    entries, gets = load()  # a fresh reader: the columnar form only, no JSON
    assert entries == expected and gets == [columns_key]

    cache = str(tmp_path / "manifests")
    load(cache)
    entries, gets = load(cache)  # the local cache answers; the store is not asked
    assert entries == expected and gets == []

    client.store.delete(columns_key)  # a version committed before columnar forms existed
    entries, gets = load()
    assert entries == expected and gets == [columns_key, layout.manifest_key(digest)]

    data = columnar.encode(unchecked([b"../escape"]))  # an unsound form: refused, the JSON is read
    client.store.put(columns_key, data)
    with caplog.at_level(logging.WARNING, logger="artifactfs.repo"):
        entries, _ = load()
    assert entries == expected and "columnar manifest" in caplog.text

    cached = os.path.join(cache, digest[:2], digest + ".columns")
    with open(cached, "r+b") as f:  # a damaged local copy is dropped and read again
        f.seek(20)
        f.write(b"\x00" * 8)
    entries, _ = load(cache)
    assert entries == expected


def test_recommit_adds_the_columnar_form_to_an_older_manifest(client, tmp_path):
    files = {"a.txt": b"a", "b/c.txt": b"c"}
    digest = commit_tree(client, tmp_path / "src", files).record.manifest
    key = layout.manifest_columns_key(digest)
    client.store.delete(key)
    client.repo.put_manifest(Manifest.parse(gzip.decompress(client.store.get(layout.manifest_key(digest))[0])))
    assert columnar.decode(client.store.get(key)[0], digest).digest == digest
    assert digest_bytes(client.repo.manifest_bytes_from_store(digest)) == digest


def test_a_header_that_is_not_zlib_is_refused():
    header = json.dumps({"type": columnar.TYPE, "layout": 2, "manifest": D}).encode()
    with pytest.raises(CorruptData):
        columnar.decode(columnar.MAGIC + struct.pack("<I", len(header)) + header + xxhash.xxh3_128_digest(
            columnar.MAGIC + struct.pack("<I", len(header)) + header), D)
