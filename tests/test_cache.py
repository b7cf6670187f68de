"""The piece cache as a module, and the promise built on it: a damaged cache file is never served, by a
fresh reader or by one that read the piece a moment ago (a long-running mount, a `get` in the same
process), whole or by range."""

import json
import os
import pathlib
import random
import re
import subprocess

import pytest

from artifactfs import piecefile
from artifactfs.cache import PieceCache
from artifactfs.hashing import CHUNK_SIZE, digest_bytes
from tests.fault_util import af, af_ok, one_clear_line, tally, wait_for, write_files
from tests.fuse_util import Mount

MiB = 1024 * 1024
NAME = "acme/vision/cached"


def _damage(path, how: str) -> None:
    """Damage a cache file: "flip" a byte of the piece, "table" flip a byte of its block table, "cut"
    its end, "short" replace it with a shorter file, "delete" it."""
    data = bytearray(path.read_bytes())
    if how == "delete":
        path.unlink()
        return
    if how == "flip":
        data[len(data) // 3] ^= 0x40
    elif how == "table":
        data[-3] ^= 1
    elif how == "cut":
        del data[-100:]
    elif how == "short":
        data = data[:4096]
    path.write_bytes(bytes(data))


DAMAGES = ["flip", "table", "cut", "short"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_piece_is_never_served_even_after_a_good_read(tmp_path, how):
    data = random.Random(1).randbytes(3 * MiB + 77)
    cache = PieceCache(str(tmp_path / "cache"), 1 << 30)
    digest = digest_bytes(data)
    cache.put(digest, data)
    assert cache.get(digest, len(data)) == data  # read and checked once: no later read is trusted for it
    assert cache.get_range(digest, len(data), 5, 10) == data[5:15]
    _damage(pathlib.Path(cache.path(digest)), how)
    whole_first = how in ("flip", "short")
    if whole_first:
        assert cache.get(digest, len(data)) is None
    else:  # the range read that touches the damage finds it
        start = len(data) - 50 if how == "table" else len(data) - 10
        assert cache.get_range(digest, len(data), start, 10) is None
    assert not os.path.exists(cache.path(digest)) and cache.damaged == 1
    assert cache.get(digest, len(data)) is None and cache.get_range(digest, len(data), 0, 1) is None


def test_range_reads_check_only_the_blocks_they_touch(tmp_path):
    rnd = random.Random(2)
    data = rnd.randbytes(CHUNK_SIZE)
    cache = PieceCache(str(tmp_path / "cache"), 1 << 30)
    digest = digest_bytes(data)
    cache.put(digest, data)
    path = cache.path(digest)
    assert os.path.getsize(path) == len(data) + piecefile.table_size(len(data))
    for _ in range(200):
        start = rnd.randrange(len(data))
        size = rnd.randint(1, min(len(data) - start, 300_000))
        assert cache.get_range(digest, len(data), start, size) == data[start:start + size]
    # a damaged block fails the reads that touch it, and only those
    with open(path, "r+b") as f:
        f.seek(5 * piecefile.BLOCK + 7)
        f.write(b"\xff")
    assert cache.get_range(digest, len(data), 0, piecefile.BLOCK) == data[:piecefile.BLOCK]
    assert cache.get_range(digest, len(data), 5 * piecefile.BLOCK + 100, 4096) is None
    assert not os.path.exists(path)


def test_piece_without_a_table_from_an_older_cache_is_read_and_checked_whole(tmp_path):
    data = random.Random(3).randbytes(100_000)
    cache = PieceCache(str(tmp_path / "cache"), 1 << 30)
    digest = digest_bytes(data)
    os.makedirs(os.path.dirname(cache.path(digest)), exist_ok=True)
    with open(cache.path(digest), "wb") as f:
        f.write(data)
    assert cache.get(digest, len(data)) == data
    assert cache.get_range(digest, len(data), 99_000, 1000) == data[99_000:]
    assert cache.verify() == (1, [])
    with open(cache.path(digest), "r+b") as f:
        f.write(b"!")
    assert cache.get_range(digest, len(data), 99_000, 1000) is None


def test_cache_verify_finds_a_damaged_table(tmp_path):
    rnd = random.Random(4)
    cache = PieceCache(str(tmp_path / "cache"), 1 << 30)
    pieces = [rnd.randbytes(n) for n in (1, piecefile.BLOCK, piecefile.BLOCK + 1, 2 * MiB)]
    for data in pieces:
        cache.put(digest_bytes(data), data)
    assert cache.verify() == (4, [])
    bad = digest_bytes(pieces[3])
    _damage(pathlib.Path(cache.path(bad)), "table")
    assert cache.verify() == (4, [bad])
    assert cache.verify() == (3, [])


def _pieces(client, ref: str, path: str) -> list[str]:
    manifest = client.manifest(client.resolve(ref))
    entry = manifest[manifest.find(path)]
    return list(entry.chunks or [entry.digest])


def _drop_page_cache(path: str) -> None:
    """Make the kernel forget the pages it holds of a file of the mount (they were verified when they
    were read, so the next read must reach the daemon to test it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_long_running_mount_never_serves_a_damaged_cache(env, tmp_path, client):
    """Read through a mount, damage what it cached, read again through the same mount: the right bytes
    (fetched again), by whole sequential reads and by random ones, and the damage counted and logged."""
    rnd = random.Random(5)
    files = {"big.bin": rnd.randbytes(4 * CHUNK_SIZE + 5000), "blob.bin": rnd.randbytes(2 * MiB)}
    src = tmp_path / "src"
    write_files(src, files)
    af_ok(env, "commit", "--dir", src, NAME)
    cache_root = tmp_path / "cache"
    m = Mount(tmp_path / "mp", env)
    try:
        root = m.path(f"{NAME}:v0")
        for name, data in files.items():
            with open(os.path.join(root, name), "rb") as f:
                assert f.read() == data
        paths = {name: [cache_root / "pieces" / d[:2] / d for d in _pieces(client, f"{NAME}:v0", name)]
                 for name in files}
        wait_for(lambda: all(p.exists() for ps in paths.values() for p in ps))  # written behind the reads
        for path, how in zip(paths["big.bin"], ["flip", "table", "cut", "short", "delete"], strict=False):
            _damage(path, how)
        _damage(paths["blob.bin"][0], "flip")
        for name in files:
            _drop_page_cache(os.path.join(root, name))
        big = files["big.bin"]
        with open(os.path.join(root, "big.bin"), "rb") as f:  # random reads first: by range from the cache
            for chunk in (3, 0, 2, 1):
                for off in (chunk * CHUNK_SIZE + CHUNK_SIZE - 60, chunk * CHUNK_SIZE + 12345):
                    assert os.pread(f.fileno(), 4096, off) == big[off:off + 4096]
        for name, data in files.items():
            _drop_page_cache(os.path.join(root, name))
            with open(os.path.join(root, name), "rb") as f:
                assert f.read() == data
        stats = json.loads(subprocess.run(["getfattr", "--only-values", "-n", "user.artifactfs.stats", m.path()],
                                          capture_output=True, text=True, check=True).stdout)
        # (a piece still in the daemon's memory is served from there, correctly, without a look at its file)
        assert stats["damaged_cache_files"] >= 3, stats
        assert m.log_text().count("damaged on disk") == stats["damaged_cache_files"]
    finally:
        m.close()
    # a damaged table under bytes that are right is only found by a read that uses it, or by verify (as
    # is a damaged file whose piece the daemon served from memory)
    res = af(env, "cache", "verify")
    left = re.search(r"checked \d+ pieces: [12] damaged", res.stdout)
    assert res.returncode == 0 or (res.returncode == 7 and left), res.stdout
    assert af(env, "cache", "verify").returncode == 0
    tally("damaged cache under a live mount", faults=6, recoveries=6, bytes_checked=2 * sum(map(len, files.values())))


def test_get_in_one_process_refetches_a_piece_damaged_since_its_last_read(env, tmp_path, client):
    data = random.Random(6).randbytes(CHUNK_SIZE + 3 * MiB)
    write_files(tmp_path / "src", {"big.bin": data})
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    client.download(f"{NAME}:v0", str(tmp_path / "one"))
    pieces = _pieces(client, f"{NAME}:v0", "big.bin")
    for d in pieces:
        _damage(tmp_path / "cache" / "pieces" / d[:2] / d, "flip")
    client.download(f"{NAME}:v0", str(tmp_path / "two"))
    assert (tmp_path / "two" / "big.bin").read_bytes() == data
    assert client.cache.damaged == len(pieces) == 4


def test_a_foreign_cache_directory_is_refused_and_left_alone(env, tmp_path):
    """--cache-dir naming a directory with someone else's files: one clear line, exit 2, the files and
    the directory's mode untouched (no chmod, no clean); an empty directory or an older artifactfs cache
    is taken and marked with CACHEDIR.TAG."""
    write_files(tmp_path / "src", {"a.txt": b"a\n" * 1000})
    af_ok(env, "commit", "--dir", tmp_path / "src", NAME)
    home = tmp_path / "home"
    write_files(home, {"notes.txt": b"mine\n", "tmp/draft.txt": b"mine too\n"})
    os.chmod(home, 0o755)
    for args in (("get", NAME, "--root", tmp_path / "out"), ("cache", "clean"), ("cache", "info"),
                 ("cache", "warm", NAME), ("mount", tmp_path / "mp")):
        (tmp_path / "mp").mkdir(exist_ok=True)
        res = af({**env, "ARTIFACTFS_CACHE_DIR": str(home)}, *args)
        line = one_clear_line(res, 2, "holds files artifactfs did not put there", "notes.txt")
        assert str(home) in line, line
    assert sorted(os.listdir(home)) == ["notes.txt", "tmp"] and (home / "tmp" / "draft.txt").exists()
    assert os.stat(home).st_mode & 0o777 == 0o755
    empty = tmp_path / "empty"
    empty.mkdir()
    af_ok({**env, "ARTIFACTFS_CACHE_DIR": str(empty)}, "get", NAME, "--root", tmp_path / "out2")
    assert (empty / "CACHEDIR.TAG").read_bytes().startswith(b"Signature: 8a477f597d28d172789f06886806bc55")
    old = tmp_path / "old"  # a cache an older artifactfs made: its own directories, no tag
    (old / "pieces").mkdir(parents=True)
    (old / "runs").mkdir()
    af_ok({**env, "ARTIFACTFS_CACHE_DIR": str(old)}, "cache", "clean")
    assert (old / "CACHEDIR.TAG").exists()


def test_a_table_of_16_kib_blocks_from_an_earlier_cache_is_still_read_by_range(tmp_path):
    data = random.Random(5).randbytes(3 * MiB + 123)
    cache = PieceCache(str(tmp_path / "cache"), 1 << 30)
    digest = digest_bytes(data)
    os.makedirs(os.path.dirname(cache.path(digest)), exist_ok=True)
    with open(cache.path(digest), "wb") as f:
        f.write(data + piecefile.block_table(data, piecefile.OLD_BLOCK))
    assert cache.get_range(digest, len(data), 2 * MiB + 5, 4096) == data[2 * MiB + 5:2 * MiB + 4101]
    assert cache.get(digest, len(data)) == data
    assert cache.verify() == (1, [])
    with open(cache.path(digest), "r+b") as f:  # one flipped byte in block 5 of the old table's blocks
        f.seek(5 * piecefile.OLD_BLOCK + 9)
        f.write(b"\x00" if data[5 * piecefile.OLD_BLOCK + 9] else b"\x01")
    assert cache.get_range(digest, len(data), 0, 4096) == data[:4096]
    assert cache.get_range(digest, len(data), 5 * piecefile.OLD_BLOCK, 100) is None
    assert not os.path.exists(cache.path(digest))


def test_a_full_cache_keeps_what_was_read_recently(tmp_path):
    """New data does not push out data read within KEEP_RECENT: it is served uncached (bypassed). Data
    idle for longer makes room, and `make_room` (cache warm) evicts by LRU alone. The bound holds."""
    cache = PieceCache(str(tmp_path / "cache"), 1_000_000)
    pieces = [random.Random(i).randbytes(300_000) for i in range(6)]
    digests = [digest_bytes(p) for p in pieces]
    for d, p in zip(digests[:3], pieces[:3], strict=True):
        cache.put(d, p)
    cache.put(digests[3], pieces[3])  # no room, and all three read just now
    assert not cache.holds(digests[3]) and cache.bypassed == 1
    assert all(cache.get(d, len(p)) == p for d, p in zip(digests[:3], pieces[:3], strict=True))
    os.utime(cache.path(digests[0]), (1, 1))  # idle for long: it makes room
    cache._all_recent_until = 0  # (the cache waits up to a minute before it looks for idle files again)
    cache.put(digests[4], pieces[4])
    assert cache.holds(digests[4]) and not cache.holds(digests[0]) and cache.bypassed == 1
    cache.make_room = True
    cache.put(digests[5], pieces[5])
    assert cache.holds(digests[5]) and cache.info()["bytes"] <= 1_000_000
    assert sum(map(cache.holds, digests)) == 2  # LRU evicted down to 80 % of the bound


def _cached_pieces(cache_root, chunks: set[str]) -> set[str]:
    """The chunks of `chunks` the disk cache holds (not the small block lists read beside them)."""
    return {p.name for p in (cache_root / "pieces").glob("*/*")} & chunks


def test_epochs_over_a_dataset_larger_than_the_cache_find_the_same_part_cached(env, tmp_path, client):
    """A second job reading a dataset twice the cache's size, shuffled: every byte right, the cache
    within its bound, and the part the first job cached still cached (not replaced piece by piece,
    which would leave the next job a cache of whatever it read last), served from the cache."""
    rnd = random.Random(7)
    files = {f"f{i}.bin": rnd.randbytes(2 * MiB) for i in range(6)}  # 12 MiB, 2 chunks each: 5 fit in 6M
    write_files(tmp_path / "src", files)
    af_ok(env, "commit", "--dir", tmp_path / "src", NAME)
    chunks = {c for e in client.manifest(client.resolve(f"{NAME}:v0")) for c in e.chunks}
    env = dict(env, ARTIFACTFS_CACHE_SIZE="6M")
    cache_root = tmp_path / "cache"
    held, stats = [], []
    for epoch in range(3):
        m = Mount(tmp_path / "mp", env)
        try:
            order = list(files)
            rnd.shuffle(order)
            for name in order:
                with open(m.path(f"{NAME}:v0", name), "rb") as f:
                    assert f.read() == files[name], name
            stats.append(json.loads(subprocess.run(
                ["getfattr", "--only-values", "-n", "user.artifactfs.stats", m.path()],
                capture_output=True, text=True, check=True).stdout))
        finally:
            m.close()  # waits for the cache writes
        size = sum(p.stat().st_size for p in cache_root.rglob("*") if p.is_file() and "tmp" not in p.parts)
        assert size <= 6 * MiB, (epoch, size)
        held.append(_cached_pieces(cache_root, chunks))
    # the first epoch may leave room a write in flight had reserved, which the next fills; from then
    # on every epoch finds the same chunks (LRU would have replaced them all each epoch)
    assert len(held[0]) >= 4 and held[0] <= held[1] == held[2]
    assert stats[0]["cache_bypassed"] > 0
    for s in stats[1:]:
        assert s["cache_read_bytes"] >= 4 * MiB and s["cache_bypassed"] > 0, s  # two thirds of the bound


def test_copies_written_beside_the_pieces_count_against_the_bound(tmp_path):
    """A local manifest copy is written outside put (manifest_store.py): the cache is told its size, and
    a full cache makes room for it even from recent pieces (the bound is hard; recency only decides
    what new data is admitted)."""
    cache = PieceCache(str(tmp_path / "cache"), 1_000_000)
    pieces = [random.Random(i).randbytes(300_000) for i in range(3)]
    for p in pieces:
        cache.put(digest_bytes(p), p)
    copy = tmp_path / "cache" / "manifests" / "ab" / "ab.columns"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(os.urandom(200_000))
    cache.account(200_000)
    info = cache.info()
    assert info["bytes"] + info["manifest_bytes"] <= 1_000_000 and info["manifests"] == 1


def test_runs_written_by_threads_at_once_are_all_found(tmp_path):
    """The run index is updated by every writer thread: none may lose another's run (a lost one was
    not found again until the pack's directory changed, so its files were fetched a second time)."""
    import threading

    cache = PieceCache(str(tmp_path / "cache"), 1 << 30)
    pack = "ab" * 16
    cache.put_run(pack, 0, b"x" * 100)
    assert cache.holds_packed(pack, [(0, 100)]) == [True]  # the index exists: writers update it
    starts = list(range(1000, 1000 + 400 * 1000, 1000))

    def write(mine):
        for start in mine:
            cache.put_run(pack, start, random.Random(start).randbytes(500))

    threads = [threading.Thread(target=write, args=(starts[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(cache.holds_packed(pack, [(start, 500) for start in starts]))
