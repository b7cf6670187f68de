"""Block lists (blocks.py): a random read of a cold large file fetches and checks the 64 KiB blocks it
needs, not the 1 MiB chunks around them, through the mount and artifactfs://; every write path records
a list for each file of several chunks; a missing or damaged list costs speed, never bytes; a damaged
block is never served; gc keeps the lists of live versions and frees the rest."""

import json
import os
import random
import subprocess

import pytest

from artifactfs import blocks, layout
from artifactfs.errors import CorruptData
from artifactfs.manifest import Entry
from tests.fault_util import af, af_ok, write_files
from tests.fuse_util import Mount, run_cli

MiB = 1024 * 1024
NAME = "acme/vision/blocks"


def _entries(client, ref: str) -> dict[str, Entry]:
    return {e.path: e for e in client.manifest(client.resolve(ref))}


def _stats(m: Mount) -> dict:
    out = subprocess.run(["getfattr", "--only-values", "-n", "user.artifactfs.stats", m.path()],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _block_keys(client) -> set[str]:
    return {info.key for info in client.store.list("blocks/")}


def test_every_write_path_records_a_block_list_for_files_of_several_chunks(env, stage_env, stages, client, tmp_path,
                                                                           fs):
    rnd = random.Random(1)
    files = {"data.h5": rnd.randbytes(5 * MiB + 123), "two.bin": rnd.randbytes(MiB + 1), "small.txt": b"small"}
    write_files(tmp_path / "src", files)
    af_ok(env, "commit", "--dir", tmp_path / "src", NAME)
    entries = _entries(client, f"{NAME}:v0")
    for path in ("data.h5", "two.bin"):
        e = entries[path]
        listing, _ = client.store.get(layout.blocks_key(e.blocks))
        assert listing == blocks.of_bytes(files[path]), path
    assert entries["small.txt"].blocks is None
    stored = _block_keys(client)
    assert len(stored) == 2

    af_ok(env, "commit", "--dir", tmp_path / "src", NAME, "--alias", "again")  # unchanged: no new list, no PUT
    assert _block_keys(client) == stored

    def check_latest(path: str, content: bytes) -> None:
        e = _entries(client, f"{NAME}:latest")[path]
        assert client.store.get(layout.blocks_key(e.blocks))[0] == blocks.of_bytes(content), path

    written = rnd.randbytes(2 * MiB)
    fs.pipe(f"{NAME}:latest/fsspec.bin", written)  # artifactfs:// writes
    check_latest("fsspec.bin", written)
    check_latest("data.h5", files["data.h5"])  # kept from the version it was written on
    st = stages(NAME)  # a stage
    staged = rnd.randbytes(3 * MiB + 5)
    with open(st.path("staged.bin"), "wb") as f:
        f.write(staged)
    run_cli(["commit", st.mountpoint], stage_env, check=True)
    check_latest("staged.bin", staged)
    drafted = rnd.randbytes(2 * MiB + 7)
    write_files(tmp_path / "part", {"drafted.bin": drafted})  # a draft
    af_ok(env, "draft", "add", NAME, "d1", "--dir", tmp_path / "part")
    af_ok(env, "draft", "finish", NAME, "d1")
    check_latest("drafted.bin", drafted)


def _random_reads(read, data: bytes, count: int, seed: int) -> int:
    """`count` reads of 4 KiB at random offsets through `read(offset, size)`, each compared with
    `data`; returns the distinct 64 KiB blocks they touched."""
    rnd = random.Random(seed)
    touched = set()
    for _ in range(count):
        off = rnd.randrange(0, len(data) - 4096)
        assert read(off, 4096) == data[off:off + 4096], off
        touched |= {off // blocks.BLOCK_SIZE, (off + 4095) // blocks.BLOCK_SIZE}
    return len(touched)


def test_random_reads_of_a_cold_file_fetch_the_blocks_they_need(env, client, tmp_path, fs):
    data = random.Random(2).randbytes(16 * MiB)
    write_files(tmp_path / "src", {"data.h5": data})
    af_ok(env, "commit", "--dir", tmp_path / "src", NAME)
    listing = blocks.list_length(len(data))
    m = Mount(tmp_path / "mp", env)
    try:
        fd = os.open(m.path(f"{NAME}:v0", "data.h5"), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no kernel readahead around each read
            touched = _random_reads(lambda off, n: os.pread(fd, n, off), data, 40, seed=3)
        finally:
            os.close(fd)
        fetched = _stats(m)["fetched_bytes"]
    finally:
        m.close()
    # by chunks the 40 reads would fetch most of the 16 chunks (~16 MiB)
    assert fetched <= touched * blocks.BLOCK_SIZE + listing, (fetched, touched)

    fs.client.cache.clean()
    before = fs.client.fetcher.fetched_bytes
    with fs.open(f"{NAME}:v0/data.h5", "rb", block_size=4096) as f:
        def read(off, n):
            f.seek(off)
            return f.read(n)
        touched = _random_reads(read, data, 40, seed=4)
    # (fsspec's own read-ahead buffer may ask for the next block too)
    assert fs.client.fetcher.fetched_bytes - before <= 2 * touched * blocks.BLOCK_SIZE + listing


@pytest.mark.parametrize("how", ["missing", "damaged"])
def test_without_a_usable_block_list_a_file_is_read_by_chunks(env, client, tmp_path, how):
    data = random.Random(5).randbytes(4 * MiB)
    write_files(tmp_path / "src", {"data.h5": data})
    af_ok(env, "commit", "--dir", tmp_path / "src", NAME)
    key = layout.blocks_key(_entries(client, f"{NAME}:v0")["data.h5"].blocks)
    if how == "missing":
        client.store.delete(key)
    else:
        client.store.put(key, bytes(blocks.list_length(len(data))))  # right length, wrong digests
    m = Mount(tmp_path / "mp", env)
    try:
        with open(m.path(f"{NAME}:v0", "data.h5"), "rb") as f:
            _random_reads(lambda off, n: os.pread(f.fileno(), n, off), data, 10, seed=6)
            f.seek(0)
            assert f.read() == data
        assert f"is {how}: reading it by whole chunks" in m.log_text()
    finally:
        m.close()
    res = af(env, "verify", "--all")
    assert res.returncode == 7 and f"is {how} (random reads of it fall back to whole chunks)" in res.stdout + res.stderr


def test_a_damaged_block_of_a_blob_is_never_served(env, client, tmp_path, backend):
    if backend != "local":
        pytest.skip("damages the blob file of the local store")
    data = random.Random(7).randbytes(4 * MiB)
    write_files(tmp_path / "src", {"data.h5": data})
    af_ok(env, "commit", "--dir", tmp_path / "src", NAME)
    entry = _entries(client, f"{NAME}:v0")["data.h5"]
    blob = os.path.join(env["ARTIFACTFS_STORE"], layout.blob_key(entry.digest))
    with open(blob, "r+b") as f:
        f.seek(3 * MiB + 100_000)
        f.write(b"\xff" * 8)
    m = Mount(tmp_path / "mp", env)
    try:
        with open(m.path(f"{NAME}:v0", "data.h5"), "rb") as f:
            assert os.pread(f.fileno(), 4096, 100_000) == data[100_000:104_096]  # a sound block
            with pytest.raises(OSError):
                os.pread(f.fileno(), 4096, 3 * MiB + 98_000)
        assert "do not match their block digest" in m.log_text()
    finally:
        m.close()


def test_gc_keeps_the_block_lists_of_live_versions_and_frees_the_rest(env, client, tmp_path):
    rnd = random.Random(8)
    write_files(tmp_path / "a", {"x.bin": rnd.randbytes(2 * MiB)})
    write_files(tmp_path / "b", {"x.bin": rnd.randbytes(2 * MiB)})
    af_ok(env, "commit", "--dir", tmp_path / "a", NAME)
    af_ok(env, "commit", "--dir", tmp_path / "b", NAME)
    old = layout.blocks_key(_entries(client, f"{NAME}:v0")["x.bin"].blocks)
    new = layout.blocks_key(_entries(client, f"{NAME}:v1")["x.bin"].blocks)
    af_ok(env, "gc", "--grace", "0s")
    assert _block_keys(client) == {old, new}
    af_ok(env, "rm", f"{NAME}:v0")
    res = af(env, "gc", "--grace", "0s", "--json")
    assert res.returncode == 0, res.stderr
    assert _block_keys(client) == {new}
    assert json.loads(res.stdout)["deleted"] >= 3  # v0's manifest (two forms), blob and block list


def test_a_hostile_block_list_field_is_refused():
    base = {"path": "x", "size": 3 * MiB, "digest": "0" * 32, "chunks": ["1" * 32] * 3}
    assert Entry.from_json({**base, "blocks": "2" * 32}).blocks == "2" * 32
    for bad in ("zz", 5, ["2" * 32], "2" * 31):
        with pytest.raises(CorruptData, match="invalid block list"):
            Entry.from_json({**base, "blocks": bad})
    with pytest.raises(CorruptData, match="invalid block list"):  # only a blob of several chunks has one
        Entry.from_json({"path": "x", "size": 5, "digest": "0" * 32, "blocks": "2" * 32})
