"""One conformance suite for every ObjectStore backend (local directory and SeaweedFS S3)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from artifactfs.errors import NotFound, ObjectNotFound, PreconditionFailed
from artifactfs.store import open_store
from tests.conftest import ALL_BACKENDS


@pytest.fixture
def store(env, store_url):
    s = open_store(store_url)
    yield s
    s.close()


def test_put_get_head_list_delete(store):
    etag = store.put("a/b/one", b"hello")
    data, got_etag = store.get("a/b/one")
    assert data == b"hello" and got_etag == etag
    store.put("a/b/two", b"x" * 10)
    store.put("a/c", b"")
    info = store.head("a/b/two")
    assert info.size == 10 and info.key == "a/b/two"
    assert [o.key for o in store.list("a/b/")] == ["a/b/one", "a/b/two"]
    assert [o.key for o in store.list("a/")] == ["a/b/one", "a/b/two", "a/c"]
    assert [o.key for o in store.list("a/b/o")] == ["a/b/one"]
    store.delete("a/b/one")
    store.delete("a/b/one")  # absent is fine
    with pytest.raises(ObjectNotFound):
        store.get("a/b/one")
    with pytest.raises(ObjectNotFound):
        store.head("nothing/here")
    assert store.exists("a/c") and not store.exists("a/b/one")


def test_list_dirs_names_each_next_segment_once(store):
    for key in ("t/a/x", "t/a/deep/er/y", "t/b/z", "t/c", "t/d/e/f", "tt/other/k"):
        store.put(key, b".")
    assert store.list_dirs("t/") == ["a", "b", "d"]  # t/c is an object, not a directory; tt/ is not under t/
    assert store.list_dirs("t/a/") == ["deep"]
    assert store.list_dirs("t/b/") == [] and store.list_dirs("nothing/") == []


def test_list_dirs_pages_and_names_that_need_encoding(store):
    odd = ["a b", "ä+ö", "x=y&z", "pct%20", "tilde~"]
    for name in odd:
        store.put(f"q r/{name}/k", b".")
    assert store.list_dirs("q r/") == sorted(odd)
    keys = [f"many/d{i:04d}/k" for i in range(1005)]  # more than one page of 1,000
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(k, b"."), keys))
    assert store.list_dirs("many/") == [f"d{i:04d}" for i in range(1005)]


def test_a_missing_bucket_is_one_clear_error(seaweed, monkeypatch):
    from artifactfs.store.s3 import S3Store
    from tests.seaweed import ADMIN

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ADMIN[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN[1])
    s = S3Store("no-such-bucket-here", "", seaweed.endpoint)
    try:
        for call in (lambda: s.list_dirs("artifacts/"), lambda: s.get("artifacts/x")):
            with pytest.raises(NotFound, match="bucket of s3://no-such-bucket-here/ does not exist"):
                call()
    finally:
        s.close()


def test_list_starts_after_a_key(store):
    for i in range(5):
        store.put(f"h/{i:03d}.json", b"{}")
    store.put("h2/x", b"")
    assert [o.key for o in store.list("h/", start_after="h/001.json")] == ["h/002.json", "h/003.json", "h/004.json"]
    assert [o.key for o in store.list("h/", start_after="h/004.json")] == []
    assert len(list(store.list("h/", start_after=""))) == 5


def test_get_range(store):
    store.put("r", bytes(range(256)) * 4)
    assert store.get_range("r", 10, 5) == bytes(range(10, 15))
    assert store.get_range("r", 1020, 100) == bytes(range(252, 256))  # short at the end
    with pytest.raises(ObjectNotFound):
        store.get_range("missing", 0, 1)


def test_put_file(store, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"abc" * 1000)
    store.put_file("files/f", str(src), 3000)
    assert store.get("files/f")[0] == b"abc" * 1000


def test_put_if_absent(store):
    store.put_if_absent("k", b"1")
    with pytest.raises(PreconditionFailed):
        store.put_if_absent("k", b"2")
    assert store.get("k")[0] == b"1"


def test_put_if_match(store):
    etag = store.put("k", b"1")
    new = store.put_if_match("k", b"2", etag)
    assert store.get("k") == (b"2", new)
    with pytest.raises(PreconditionFailed):
        store.put_if_match("k", b"3", etag)  # stale etag
    with pytest.raises(PreconditionFailed):
        store.put_if_match("absent", b"3", etag)
    assert store.get("k")[0] == b"2"


def test_racing_conditional_writes_have_one_winner(store):
    winners, barrier = [], threading.Barrier(8)

    def create(i):
        barrier.wait()
        try:
            store.put_if_absent("race", str(i).encode())
            winners.append(i)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(winners) == 1
    assert store.get("race")[0] == str(winners[0]).encode()

    etag = store.head("race").etag
    swapped, barrier = [], threading.Barrier(8)

    def swap(i):
        barrier.wait()
        try:
            store.put_if_match("race", f"s{i}".encode(), etag)
            swapped.append(i)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=swap, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(swapped) == 1
    assert store.get("race")[0] == f"s{swapped[0]}".encode()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend, moto's S3 beside SeaweedFS: what this module checks rests on the store's
    conditional writes and listings."""
    return request.param
