"""Repository semantics on both backends: versions, aliases, types, dedup, edits, manifests."""

import gzip

import pytest

from artifactfs import layout
from artifactfs.errors import Conflict, CorruptData, InvalidName, InvalidPath, NotFound
from artifactfs.hashing import digest_bytes
from artifactfs.manifest import Entry, Manifest
from artifactfs.names import ArtifactName, Ref, parse_ref
from tests.conftest import ALL_BACKENDS

NAME = ArtifactName("acme", "vision", "bikes")


def write_tree(root, files: dict):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_versions_latest_and_dedup(client, tmp_path):
    d = write_tree(tmp_path / "d", {"a.txt": b"one", "sub/b.bin": b"\0" * 1000})
    r0 = client.commit_dir(str(d), "acme/vision/bikes", "dataset", description="first")
    assert r0.created and r0.record.version == 0
    again = client.commit_dir(str(d), "acme/vision/bikes", "dataset", aliases=["best"])
    assert not again.created and again.record.version == 0
    assert client.repo.aliases(NAME) == {"best": 0, "latest": 0}
    (d / "a.txt").write_bytes(b"two")
    r1 = client.commit_dir(str(d), "acme/vision/bikes", "dataset")
    assert r1.created and r1.record.version == 1
    assert client.resolve("acme/vision/bikes:latest").version == 1
    assert client.resolve("acme/vision/bikes").version == 1
    assert client.resolve("acme/vision/bikes:best").version == 0
    assert client.resolve("acme/vision/bikes:v0").description == "first"
    assert client.repo.list_versions(NAME) == [0, 1]


def test_type_is_fixed_at_creation(client, tmp_path):
    d = write_tree(tmp_path / "d", {"a": b"1"})
    client.commit_dir(str(d), "acme/vision/cats", "dataset")
    with pytest.raises(Conflict, match="is a dataset, not a model"):
        client.commit_dir(str(d), "acme/vision/cats", "model")


def test_aliases_move_and_remove(client, tmp_path):
    d = write_tree(tmp_path / "d", {"a": b"1"})
    client.commit_dir(str(d), "acme/vision/bikes", "dataset")
    (d / "a").write_bytes(b"2")
    client.commit_dir(str(d), "acme/vision/bikes", "dataset")
    client.repo.set_alias(NAME, "prod", 0)
    client.repo.set_alias(NAME, "prod", 1)
    assert client.repo.aliases(NAME)["prod"] == 1
    assert client.repo.remove_alias(NAME, "prod") == 1
    assert "prod" not in client.repo.aliases(NAME)
    with pytest.raises(NotFound):
        client.repo.set_alias(NAME, "prod", 7)
    with pytest.raises(InvalidName):
        client.repo.set_alias(NAME, "latest", 0)
    with pytest.raises(InvalidName):
        client.repo.set_alias(NAME, "v3", 0)


def test_update_description_and_metadata(client, tmp_path):
    d = write_tree(tmp_path / "d", {"a": b"1"})
    client.commit_dir(str(d), "acme/vision/bikes", "dataset", metadata={"acc": 0.5, "k": "x"})
    rec = client.repo.update(Ref(NAME, version=0), "better", {"acc": 0.9})
    assert rec.description == "better" and rec.metadata == {"acc": 0.9, "k": "x"}
    again = client.resolve("acme/vision/bikes:v0")
    assert again.metadata == {"acc": 0.9, "k": "x"} and again.digest == rec.digest


def test_unknown_things_are_not_found(client, tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        client.resolve("acme/vision/nothing:latest")
    d = write_tree(tmp_path / "d", {"a": b"1"})
    client.commit_dir(str(d), "acme/vision/bikes", "dataset")
    with pytest.raises(NotFound, match="v9"):
        client.resolve("acme/vision/bikes:v9")
    with pytest.raises(NotFound, match="no alias"):
        client.resolve("acme/vision/bikes:nope")


def test_manifest_in_store_is_canonical_and_verified(client, tmp_path):
    d = write_tree(tmp_path / "d", {"z": b"last", "a/b": b"first"})
    rec = client.commit_dir(str(d), "acme/vision/bikes", "dataset").record
    packed, _ = client.store.get(layout.manifest_key(rec.digest))
    raw = gzip.decompress(packed)
    assert digest_bytes(raw) == rec.digest
    lines = raw.decode().splitlines()
    assert lines[1].startswith('{"digest":') and '"path":"a/b"' in lines[1] and '"path":"z"' in lines[2]
    # a damaged manifest in the store is refused, never parsed (readers get to the JSON when the
    # columnar form is missing: tests/test_manifest_columns.py)
    client.store.delete(layout.manifest_columns_key(rec.digest))
    client.store.put(layout.manifest_key(rec.digest), gzip.compress(raw.replace(b"\"path\":\"z\"", b"\"path\":\"y\"")))
    from artifactfs.repo import Repository

    with pytest.raises(CorruptData):
        Repository(client.store).manifest(rec.digest)


def test_large_file_gets_chunk_digests(client, tmp_path):
    from artifactfs.hashing import CHUNK_SIZE

    big = bytes(range(256)) * (CHUNK_SIZE // 256) + b"tail"
    d = write_tree(tmp_path / "d", {"big.bin": big})
    rec = client.commit_dir(str(d), "acme/vision/bikes", "dataset").record
    (entry,) = list(client.manifest(rec))
    assert entry.size == len(big) and len(entry.chunks) == 2
    assert entry.chunks[1] == digest_bytes(b"tail")
    out = tmp_path / "out"
    client.download("acme/vision/bikes:v0", str(out))
    assert (out / "big.bin").read_bytes() == big


def test_manifest_rejects_bad_paths():
    for bad in ("../x", "/abs", "a//b", "a/../b", "a\x00b", ""):
        with pytest.raises(InvalidPath):
            Manifest.from_entries([Entry(bad, 1, "0" * 32)])
    with pytest.raises(InvalidPath, match="duplicate"):
        Manifest.from_entries([Entry("a", 1, "0" * 32), Entry("a", 2, "1" * 32)])


def test_parse_ref_defaults():
    assert str(parse_ref("e/p/n:v3")) == "e/p/n:v3"
    assert str(parse_ref("p/n:best", entity="e")) == "e/p/n:best"
    assert str(parse_ref("n", entity="e", project="p")) == "e/p/n:latest"
    with pytest.raises(InvalidName, match="no entity"):
        parse_ref("p/n:best")
    with pytest.raises(InvalidName):
        parse_ref("e/p/n:bad alias")


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend, moto's S3 beside SeaweedFS: what this module checks rests on the store's
    conditional writes and listings."""
    return request.param
