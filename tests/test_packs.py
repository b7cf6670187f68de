"""Packs: small files committed as a few pack objects in path order, read back byte for byte (CLI, get,
mount), kept by unchanged re-commits, parsed on the fast path, and restored if a gc removed one."""

import json
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from artifactfs import layout
from artifactfs.errors import CorruptData
from artifactfs.hashing import digest_bytes
from artifactfs.manifest import Entry, Manifest
from artifactfs.packs import PACK_FILE_MAX, PACK_TARGET, Member, Packer, restore_pack
from tests.fuse_util import Mount, mount_factory
from tests.staging_util import write_tree

NAME = "acme/packs/small"


@pytest.fixture
def mounts(env, tmp_path):
    with mount_factory(Mount, env, tmp_path, "mnt") as make:
        yield make


def small_tree(seed: int, count: int) -> dict[str, bytes]:
    rnd = random.Random(seed)
    return {f"d{i // 50:02d}/f{i:04d}.bin": rnd.randbytes(rnd.randrange(1, 20_000)) for i in range(count)}


def packs_in(client) -> list[str]:
    return [info.key for info in client.store.list("packs/")]


def test_commit_packs_small_files_in_path_order(cli, client, tmp_path):
    files = small_tree(1, 300)
    files["big.bin"] = os.urandom(PACK_FILE_MAX + 1)  # over the limit: its own blob
    write_tree(tmp_path / "src", files)
    assert cli("commit", NAME, "--dir", tmp_path / "src").exit_code == 0
    manifest = client.manifest(client.resolve(NAME))
    assert len(packs_in(client)) == 1  # 300 files, ~3 MB: one PUT
    big = manifest[manifest.find("big.bin")]
    assert big.pack is None and client.store.exists(layout.blob_key(big.digest))
    entries = [manifest[i] for i in range(len(manifest)) if manifest[i].pack]
    assert [e.path for e in sorted(entries, key=lambda e: e.offset)] == sorted(e.path for e in entries)
    pack, _ = client.store.get(layout.pack_key(entries[0].pack))
    for e in entries:
        assert pack[e.offset:e.offset + e.size] == files[e.path]

    # unchanged: no version, nothing uploaded; one file changed: only it is uploaded, the rest stay put
    out = json.loads(cli("commit", NAME, "--dir", tmp_path / "src", "--json").output)
    assert out["created"] is False and len(packs_in(client)) == 1
    (tmp_path / "src" / "d00" / "f0001.bin").write_bytes(b"changed")
    assert cli("commit", NAME, "--dir", tmp_path / "src").exit_code == 0
    v1 = client.manifest(client.resolve(f"{NAME}:v1"))
    assert len(packs_in(client)) == 2
    assert v1[v1.find("d00/f0002.bin")] == manifest[manifest.find("d00/f0002.bin")]
    assert cli("get", f"{NAME}:v1", "--root", tmp_path / "out").exit_code == 0
    assert (tmp_path / "out" / "d00" / "f0001.bin").read_bytes() == b"changed"
    assert (tmp_path / "out" / "d05" / "f0299.bin").read_bytes() == files["d05/f0299.bin"]
    assert cli("verify", NAME).exit_code == 0


def test_mount_reads_packed_files_in_any_order(client, tmp_path, mounts):
    files = small_tree(2, 400)
    write_tree(tmp_path / "src", files)
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    m = mounts()
    root = m.path(f"{NAME}:v0")
    paths = sorted(files)

    def read(path):
        with open(os.path.join(root, path), "rb") as f:
            return path, f.read()

    with ThreadPoolExecutor(8) as pool:  # in order by 8 threads (neighbours fetched in runs) ...
        for path, data in pool.map(read, paths[:200]):
            assert data == files[path], path
    random.Random(3).shuffle(paths)
    with ThreadPoolExecutor(8) as pool:  # ... and shuffled
        for path, data in pool.map(read, paths):
            assert data == files[path], path


def test_mount_caches_runs_of_packed_files_and_reuses_them(env, client, tmp_path, mounts):
    """Files read in order are cached as a few runs of their pack (not one cache file per file); a new
    process then reads every file from the cache, each checked, without a request to the store."""
    files = small_tree(5, 300)
    write_tree(tmp_path / "src", files)
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    m = mounts()
    root = m.path(f"{NAME}:v0")
    for path in sorted(files):  # `cp -r`, `tar`: one file after another
        with open(os.path.join(root, path), "rb") as f:
            assert f.read() == files[path], path
    m.close()  # finishes the write-behind
    runs = [p for p in (tmp_path / "cache" / "runs").rglob("*") if p.is_file()]
    assert 1 <= len(runs) <= 10, runs  # 300 files, ~3 MB, fetched as runs
    assert not [p for p in (tmp_path / "cache" / "pieces").rglob("*") if p.is_file()]

    from artifactfs.client import Client
    fresh = Client()
    try:
        fresh.download(NAME, str(tmp_path / "out"))
        assert fresh.fetcher.fetched_bytes == 0
    finally:
        fresh.close()
    for path, data in files.items():
        assert (tmp_path / "out" / path).read_bytes() == data


def test_packer_places_in_sequence_and_bounds_pack_size(client):
    rnd = random.Random(4)
    items = [rnd.randbytes(rnd.randrange(1, 300_000)) for _ in range(60)]
    packer = Packer(client.store, target=1_000_000)
    slots = {}
    order = list(range(len(items)))
    rnd.shuffle(order)  # threads deliver in any order

    def deliver(i):
        if i % 7 == 0:
            packer.skip(i)
        else:
            slots[i] = packer.add(i, items[i])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(deliver, order))
    packer.finish()
    keys = packs_in(client)
    assert packer.packs == len(keys) > 1
    for key in keys:
        data, _ = client.store.get(key)
        assert len(data) <= 1_000_000 and key == layout.pack_key(digest_bytes(data))
    placed = sorted(slots.items())
    previous = None
    for i, slot in placed:  # sequence order is storage order
        data, _ = client.store.get(layout.pack_key(slot.pack))
        assert data[slot.offset:slot.offset + len(items[i])] == items[i]
        if previous is not None and previous.pack == slot.pack:
            assert slot.offset > previous.offset
        previous = slot
    assert PACK_TARGET <= 8 * 1024 * 1024  # one lean PUT each


def test_restore_pack_merges_concurrent_restorers(client, tmp_path):
    a, b, c = b"A" * 1000, b"B" * 500, b"C" * 2000
    (tmp_path / "c").write_bytes(c)
    key = layout.pack_key("cd" * 16)
    errors = []

    def restore(members):
        try:
            restore_pack(client.store, key, members)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=restore, args=([Member(0, 1000, a)],)),
               threading.Thread(target=restore,
                                args=([Member(1000, 500, b), Member(1500, 2000, str(tmp_path / "c"))],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    data, _ = client.store.get(key)
    assert data == a + b + c
    restore_pack(client.store, key, [Member(1000, 500, b)])  # already right: nothing written
    assert client.store.get(key)[0] == a + b + c


def test_packed_manifest_lines_parse_on_the_fast_path():
    entries = [Entry(f"dir/f{i:05d}", 10 + i, digest_bytes(str(i).encode()), pack=("ab" * 16 if i % 3 else "cd" * 16),
                     offset=i * 100) for i in range(3000)]
    entries.append(Entry("plain", 5, digest_bytes(b"plain")))
    entries.append(Entry("a-first", 3, digest_bytes(b"first")))  # unpacked entries before the first packed one
    entries.append(Entry("x/exec", 7, digest_bytes(b"exec"), executable=True, pack="ef" * 16, offset=9))
    m = Manifest.from_entries(entries)
    parsed = Manifest.parse(m.to_bytes())
    assert parsed.digest == m.digest and list(parsed) == list(m)
    assert parsed.location(digest_bytes(b"7")) == ("ab" * 16, 700)
    assert parsed.location(digest_bytes(b"plain")) == (None, 0)
    assert parsed.location(digest_bytes(b"first")) == (None, 0) and parsed[0].pack is None
    assert parsed.location(digest_bytes(b"nothing")) is None
    assert b'"offset":700,"pack":"' in m.to_bytes()


def test_invalid_pack_locations_are_refused():
    d = digest_bytes(b"x")
    head = b'{"chunk_size":8388608,"format":1,"type":"artifactfs-manifest"}\n'
    for line in (f'{{"digest":"{d}","offset":5,"path":"a","size":1}}',  # offset without pack
                 f'{{"digest":"{d}","offset":-1,"pack":"{d}","path":"a","size":1}}',
                 f'{{"digest":"{d}","offset":0,"pack":"../../etc","path":"a","size":1}}',
                 f'{{"chunks":["{d}"],"digest":"{d}","offset":0,"pack":"{d}","path":"a","size":1}}'):
        with pytest.raises(CorruptData):
            Manifest.parse(head + line.encode() + b"\n")


def test_a_shuffled_reader_gets_each_pack_in_one_fetch_and_every_byte_right(env, client, tmp_path, mounts):
    """Opened in no order, the cold files of a pack bring the rest of it into the disk cache with one GET
    once an eighth of them were opened: reading every file costs about one pass over the packs, not a
    request per file, and a reader that samples a few files of a pack fetches only those."""
    files = small_tree(11, 400)
    write_tree(tmp_path / "src", files)
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    m = mounts()
    root = m.path(f"{NAME}:v0")

    def stats():
        return json.loads(os.getxattr(m.mountpoint, "user.artifactfs.stats"))

    order = sorted(files)
    random.Random(3).shuffle(order)
    for path in order[:20]:
        with open(os.path.join(root, path), "rb") as f:
            assert f.read() == files[path]
    assert stats()["fetched_bytes"] == sum(len(files[p]) for p in order[:20])  # a sample: only what it read
    for path in order[20:]:
        with open(os.path.join(root, path), "rb") as f:
            assert f.read() == files[path], path
    total = sum(map(len, files.values()))
    fetched = stats()["fetched_bytes"]
    assert total <= fetched <= 1.1 * total, (fetched, total)  # each byte about once: no per-file refetching
    assert stats()["corrupt_pieces"] == 0
