"""Reused aligned read buffers (artifactfs/buffers.py), the O_DIRECT disk-cache path (cache.py) and
ranged GETs received into pooled buffers (store/s3_lean.py): the bytes are always exactly right."""

import os
import random

import pytest

from artifactfs.buffers import ALIGN, BufferPool, aligned_view, is_aligned
from artifactfs.cache import PieceCache
from artifactfs.hashing import digest_bytes

MiB = 1024 * 1024


def test_pool_reuses_a_buffer_only_once_no_view_of_it_is_left():
    pool = BufferPool(64 * MiB)
    a = pool.take(8 * MiB)
    assert len(a) == 8 * MiB and is_aligned(a)
    part = a[100:200]  # a slice handed on (e.g. a FUSE reply) keeps the buffer busy
    del a
    b = pool.take(8 * MiB)
    assert (pool.made, pool.reused) == (2, 0)
    del part
    c = pool.take(5 * MiB)  # smaller, same capacity class: the freed buffer
    assert (pool.made, pool.reused, len(c)) == (2, 1, 5 * MiB)
    small = pool.take(100)
    assert len(small) == 100 and pool.made == 2  # small requests are not pooled
    del b, c
    assert pool.trim(idle=0) == 16 * MiB and pool.kept_bytes == 0


def test_pool_keeps_at_most_max_bytes():
    pool = BufferPool(8 * MiB)
    held = [pool.take(8 * MiB) for _ in range(3)]
    assert pool.made == 3 and pool.kept_bytes == 8 * MiB
    del held


@pytest.mark.parametrize("size", [0, 5, ALIGN, 2 * MiB, 2 * MiB + 17])
def test_cache_round_trip_of_aligned_and_plain_pieces(tmp_path, size):
    data = random.Random(size).randbytes(size)
    _, view = aligned_view(size)
    view[:] = data
    writer = PieceCache(str(tmp_path / "cache"), 1 << 30)
    digest = digest_bytes(data)
    writer.put(digest, view)  # aligned: O_DIRECT for the whole blocks, the tail written normally
    writer.put(digest_bytes(data + b"x"), data + b"x")  # bytes: the ordinary write
    for buffers in (None, BufferPool(64 * MiB)):
        reader = PieceCache(str(tmp_path / "cache"), 1 << 30)
        reader.buffers = buffers
        assert bytes(reader.get(digest, size)) == data
        assert bytes(reader.get(digest_bytes(data + b"x"), size + 1)) == data + b"x"


def test_cache_read_into_pool_still_drops_a_damaged_piece(tmp_path):
    data = random.Random(1).randbytes(3 * MiB)
    cache = PieceCache(str(tmp_path / "cache"), 1 << 30)
    digest = digest_bytes(data)
    cache.put(digest, data)
    with open(cache.path(digest), "r+b") as f:
        f.seek(MiB)
        f.write(b"\0")
    fresh = PieceCache(str(tmp_path / "cache"), 1 << 30)
    fresh.buffers = BufferPool(64 * MiB)
    assert fresh.get(digest, len(data)) is None
    assert not os.path.exists(cache.path(digest))


@pytest.mark.parametrize("backend", ["s3"])  # the lean S3 path only
def test_s3_ranged_gets_into_pooled_buffers_match_plain_gets(env, backend):
    from artifactfs.store import open_store

    store = open_store(env["ARTIFACTFS_STORE"], endpoint_url=env["AWS_ENDPOINT_URL"])
    blob = random.Random(2).randbytes(3 * MiB + 5)
    store.put("blobs/x", blob)
    plain = [store.get_range("blobs/x", s, n) for s, n in ((0, 2 * MiB), (MiB + 3, 2 * MiB), (7, 100))]
    pool = BufferPool(64 * MiB)
    store.use_buffers(pool)
    for _ in range(2):  # the second round reuses the buffers of the first
        got = [store.get_range("blobs/x", s, n) for s, n in ((0, 2 * MiB), (MiB + 3, 2 * MiB), (7, 100))]
        assert [bytes(g) for g in got] == [bytes(p) for p in plain]
        assert bytes(got[0]) == blob[:2 * MiB] and isinstance(got[0], memoryview) and isinstance(got[2], bytes)
        del got
    assert pool.reused >= 2
    # a range running past the end: a short 206, read the ordinary way (the caller's length check fails it)
    assert bytes(store.get_range("blobs/x", 2 * MiB, 2 * MiB)) == blob[2 * MiB:]
