"""Uploading a stage's blobs: small ones into packs, big ones only if the store lacks them, whether
found by listing or by asking."""

import os

import pytest

from artifactfs import layout
from artifactfs.hashing import digest_bytes
from artifactfs.stage import upload


def blobs(tmp_path, n):
    out = []
    for i in range(n):
        data = os.urandom(100 + i)
        path = tmp_path / f"b{i}"
        path.write_bytes(data)
        out.append((digest_bytes(data), str(path), len(data)))
    return out


@pytest.mark.parametrize("listing", [True, False])
def test_uploads_only_what_the_store_lacks(client, tmp_path, monkeypatch, listing):
    if not listing:
        monkeypatch.setattr(upload, "listed_blobs", lambda store, digests: None)
    items = blobs(tmp_path, 40)
    for digest, path, size in items[:10]:  # already there
        client.store.put_file(layout.blob_key(digest), path, size)
    seen = []
    count, size, places = upload.upload_missing(client.store, items + items[:3], progress=seen.append, pack_max=0)
    assert count == 30 and size == sum(s for _, _, s in items[10:]) and places == {}
    assert sum(seen) == sum(s for _, _, s in items)  # every blob reported once
    for digest, path, _ in items:
        data, _ = client.store.get(layout.blob_key(digest))
        assert data == open(path, "rb").read()


def test_listing_is_used_only_while_cheaper(client, tmp_path):
    digests = {os.urandom(16).hex() for _ in range(1000)}  # about every group: 256 LISTs < 1000 HEADs
    (tmp_path / "x").write_bytes(b"x")
    present = sorted(digests)[:5]
    for d in present:
        client.store.put_file(layout.blob_key(d), str(tmp_path / "x"), 1)
    assert upload.listed_blobs(client.store, digests) == set(present)
    spread = {f"{i:02x}" + os.urandom(15).hex() for i in range(40)}  # 40 groups for 40 blobs: ask each
    assert upload.listed_blobs(client.store, spread) is None


def test_small_blobs_go_into_packs_in_order(client, tmp_path):
    items = blobs(tmp_path, 40)
    known = {items[0][0]: ("ab" * 16, 7)}  # a live version stores this one already
    count, size, places = upload.upload_missing(client.store, items + items[:3], known=known.get)
    new = items[1:]
    assert count == 1 and size == sum(s for _, _, s in new)  # one PUT for 39 files
    assert places[items[0][0]] == ("ab" * 16, 7)
    pack = places[new[0][0]][0]
    data, _ = client.store.get(layout.pack_key(pack))
    assert data == b"".join(open(path, "rb").read() for _, path, _ in new)  # in the caller's order
    for digest, path, n in new:
        assert places[digest][0] == pack
        offset = places[digest][1]
        assert data[offset:offset + n] == open(path, "rb").read()
