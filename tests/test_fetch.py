"""fetch.py as a module: every byte handed out is checked against its digest, bad bytes are neither
served nor cached, good ones are cached and read back from there, and `download_all` writes whole
files or nothing."""

import os

import pytest

from artifactfs import layout
from artifactfs.cache import PieceCache
from artifactfs.errors import CorruptData
from artifactfs.fetch import Fetcher, contiguous_runs, pieces_of
from artifactfs.ingest import hash_and_upload, walk_directory
from artifactfs.manifest import Manifest
from artifactfs.packs import PACK_FILE_MAX
from artifactfs.store.local import LocalStore

CHUNK = 64 * 1024
BIG_CHUNKS = PACK_FILE_MAX // CHUNK + 2  # not packed


@pytest.fixture
def stored(tmp_path):
    """A store holding three small (packed) files and one big enough for a blob of its own, in chunks."""
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.txt": b"alpha\n" * 100, "b.txt": b"beta\n" * 200, "c.txt": b"gamma\n" * 50,
             "big.bin": os.urandom(BIG_CHUNKS * CHUNK)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    store = LocalStore(str(tmp_path / "store"))
    entries, _ = hash_and_upload(store, walk_directory(str(src)), chunk_size=CHUNK)
    return store, Manifest.from_entries(entries, CHUNK), files


def fetcher(tmp_path, store) -> Fetcher:
    return Fetcher(store, PieceCache(str(tmp_path / "cache"), 1 << 30))


def test_pieces_of_a_chunked_file_cover_it_exactly(stored):
    _, manifest, files = stored
    big = manifest[manifest.find("big.bin")]
    pieces = pieces_of(big, CHUNK)
    assert [(p.start, p.length) for p in pieces] == [(i * CHUNK, CHUNK) for i in range(BIG_CHUNKS)]
    assert [p.digest for p in pieces] == list(big.chunks)


def test_a_piece_is_fetched_once_then_served_from_the_cache(tmp_path, stored):
    store, manifest, files = stored
    f = fetcher(tmp_path, store)
    piece = pieces_of(manifest[manifest.find("big.bin")], CHUNK)[2]
    assert bytes(f.piece(piece)) == files["big.bin"][2 * CHUNK:3 * CHUNK]
    fetched = f.fetched_bytes
    assert bytes(f.piece(piece)) == files["big.bin"][2 * CHUNK:3 * CHUNK]
    assert f.fetched_bytes == fetched and f.cache_read_bytes == CHUNK


def test_damaged_store_bytes_are_refused_and_never_cached(tmp_path, stored):
    store, manifest, files = stored
    big = manifest[manifest.find("big.bin")]
    path = os.path.join(store.root, layout.blob_key(big.digest))
    data = bytearray(open(path, "rb").read())
    data[CHUNK + 5] ^= 1
    os.chmod(path, 0o644)
    open(path, "wb").write(bytes(data))
    f = fetcher(tmp_path, store)
    pieces = pieces_of(big, CHUNK)
    with pytest.raises(CorruptData):
        f.piece(pieces[1])
    assert f.corrupt_pieces == 1 and f.cache.get(pieces[1].digest, CHUNK) is None
    assert bytes(f.piece(pieces[0])) == files["big.bin"][:CHUNK]  # the others are still good


def test_a_pack_run_is_one_read_and_a_bad_member_fails_alone(tmp_path, stored):
    store, manifest, files = stored
    small = [manifest[manifest.find(n)] for n in ("a.txt", "b.txt", "c.txt")]
    pieces = [pieces_of(e, CHUNK)[0] for e in small]
    assert contiguous_runs(pieces) == [pieces]  # back to back in one pack
    key = layout.pack_key(small[1].pack)
    path = os.path.join(store.root, key)
    data = bytearray(open(path, "rb").read())
    data[small[1].offset] ^= 1
    os.chmod(path, 0o644)
    open(path, "wb").write(bytes(data))
    got = fetcher(tmp_path, store).span(pieces)
    assert bytes(got[0]) == files["a.txt"] and bytes(got[2]) == files["c.txt"]
    assert isinstance(got[1], CorruptData)


def test_download_all_writes_every_file_and_keeps_what_is_there(tmp_path, stored):
    store, manifest, files = stored
    f = fetcher(tmp_path, store)
    out = tmp_path / "out"
    assert f.download_all(list(manifest), CHUNK, str(out)) == (4, 0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    (out / "a.txt").write_bytes(b"changed locally")
    assert f.download_all(list(manifest), CHUNK, str(out)) == (1, 3)  # only the changed one again
    assert (out / "a.txt").read_bytes() == files["a.txt"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left


def test_a_damaged_file_is_never_written_into_place(tmp_path, stored):
    store, manifest, files = stored
    big = manifest[manifest.find("big.bin")]
    path = os.path.join(store.root, layout.blob_key(big.digest))
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek((BIG_CHUNKS - 1) * CHUNK + 1)
        fh.write(b"\0\0\0")
    out = tmp_path / "out"
    with pytest.raises(CorruptData):
        fetcher(tmp_path, store).download_all([big], CHUNK, str(out))
    assert not (out / "big.bin").exists()


class CountingStore(LocalStore):
    """A local store that counts its ranged GETs."""

    ranged = 0

    def get_range(self, key, start, length):
        self.ranged += 1
        return super().get_range(key, start, length)


def test_a_whole_file_of_small_chunks_takes_one_get_per_read_block_each_chunk_checked(tmp_path):
    from artifactfs.hashing import READ_BLOCK

    data = os.urandom(2 * READ_BLOCK + 5 * CHUNK + 17)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(data)
    store = CountingStore(str(tmp_path / "store"))
    entries, _ = hash_and_upload(store, walk_directory(str(tmp_path / "src")), chunk_size=CHUNK)
    pieces = pieces_of(entries[0], CHUNK)
    f = fetcher(tmp_path, store)
    assert b"".join(f.read_pieces(pieces)) == data
    assert store.ranged == 3 and len(pieces) == 2 * READ_BLOCK // CHUNK + 6  # not one per chunk
    assert b"".join(f.read_pieces(pieces)) == data and store.ranged == 3  # then from the cache
    # a chunk damaged in the store: that GET's chunks fail, are neither served nor cached
    victim = pieces[len(pieces) // 2]
    blob = bytearray(data)
    blob[victim.start + 100] ^= 1
    with open(os.path.join(str(tmp_path / "store"), layout.blob_key(entries[0].digest)), "r+b") as fh:
        fh.write(bytes(blob))
    g = fetcher(tmp_path / "other", store)
    with pytest.raises(CorruptData):
        b"".join(g.read_pieces(pieces))
    assert not g.cache.holds(victim.digest)
