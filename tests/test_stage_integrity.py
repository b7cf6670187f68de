"""A staging commit publishes only what it verified: the objects of a base deleted (and collected) while
the stage was open, and staged bytes damaged on disk after they were written, are refused with one clear
line and no new version; a stage's record in the store keeps its base from gc. Both backends."""

import os
import random

import xxhash

from artifactfs import layout, stage_records
from artifactfs.packs import PACK_FILE_MAX
from tests.fault_util import af, af_ok, one_clear_line, tally, write_files
from tests.staging_util import StageMount

NAME = "acme/vision/staged"


def _base(env, tmp_path) -> dict:
    rnd = random.Random(11)
    files = {"keep/big.bin": rnd.randbytes(PACK_FILE_MAX + 5000), "keep/small.txt": b"small\n" * 50,
             "edit.txt": b"before\n"}
    write_files(tmp_path / "src", files)
    af_ok(env, "commit", "--dir", tmp_path / "src", NAME)
    return files


def _stage(env, tmp_path, name="mp") -> StageMount:
    return StageMount(tmp_path / name, env, f"{NAME}:v0")


def _versions(env) -> list[str]:
    return [line.split("\t")[0] for line in af_ok(env, "ls", NAME).splitlines()[1:]]  # below the header


def test_open_stage_keeps_its_deleted_base_from_gc(env, tmp_path, monkeypatch, client):
    monkeypatch.setenv("ARTIFACTFS_STAGE_DIR", str(tmp_path / "stages"))
    env = dict(os.environ)
    files = _base(env, tmp_path)
    st = _stage(env, tmp_path)
    try:
        assert client.store.exists(stage_records.key_of(st.id))
        write_files(st.mountpoint, {"edit.txt": b"after\n"})
        af_ok(env, "rm", f"{NAME}:v0")
        af_ok(env, "gc", "--grace", "0")
        af_ok(env, "commit", st.mountpoint)
    finally:
        st.close()
    af_ok(env, "get", f"{NAME}:v1", "--root", tmp_path / "out")
    for rel, data in {**files, "edit.txt": b"after\n"}.items():
        assert (tmp_path / "out" / rel).read_bytes() == data, rel
    assert af(env, "verify", f"{NAME}:v1").returncode == 0
    sid = st.id
    af_ok(env, "stage", "discard", sid)
    assert not client.store.exists(stage_records.key_of(sid))
    tally("base deleted and collected under an open stage", faults=1, recoveries=1,
          bytes_checked=sum(map(len, files.values())))


def test_commit_refuses_a_base_whose_objects_are_gone(env, tmp_path, monkeypatch, client):
    """A gc that does not see the stage's record (one of an older artifactfs, or a store that refused the
    record) collects the deleted base: the commit says so, publishes nothing, and the stage is intact."""
    monkeypatch.setenv("ARTIFACTFS_STAGE_DIR", str(tmp_path / "stages"))
    env = dict(os.environ)
    _base(env, tmp_path)
    st = _stage(env, tmp_path)
    try:
        write_files(st.mountpoint, {"edit.txt": b"after\n"})
        client.store.delete(stage_records.key_of(st.id))
        af_ok(env, "rm", f"{NAME}:v0")
        af_ok(env, "gc", "--grace", "0")
        res = af(env, "commit", st.mountpoint)
        one_clear_line(res, 3, "was deleted", "keep/")
        assert not [k for k in (i.key for i in client.store.list("artifacts/")) if "/versions/1" in k]
        assert open(st.path("edit.txt"), "rb").read() == b"after\n"  # the stage still holds its change
    finally:
        st.close()
    tally("commit from a collected base", faults=1)


def _data_file_of(stage_dir, data: bytes):
    for name in os.listdir(stage_dir / "data"):
        path = stage_dir / "data" / name
        if path.read_bytes() == data:
            return path
    raise AssertionError("no data file holds the staged bytes")


def test_commit_refuses_staged_bytes_damaged_on_disk(env, tmp_path, monkeypatch, client):
    monkeypatch.setenv("ARTIFACTFS_STAGE_DIR", str(tmp_path / "stages"))
    env = dict(os.environ)
    _base(env, tmp_path)
    rnd = random.Random(12)
    cases = {"packed.bin": rnd.randbytes(40_000), "blob.bin": rnd.randbytes(PACK_FILE_MAX + 100),
             "multipart.bin": rnd.randbytes(20 * 1024 * 1024 + 7)}
    for rel, data in cases.items():
        st = _stage(env, tmp_path, f"mp-{rel}")
        try:
            write_files(st.mountpoint, {rel: data})  # written in order, closed: its digest is recorded
            path = _data_file_of(tmp_path / "stages" / st.id, data)
            with open(path, "r+b") as f:  # same size, other bytes: only the digest can tell
                f.seek(len(data) // 2)
                f.write(bytes([data[len(data) // 2] ^ 0xFF]))
            res = af(env, "commit", st.mountpoint)
            one_clear_line(res, 8, "does not hold the bytes recorded", "nothing was stored")
            assert _versions(env) == ["v0"], rel
            digest = xxhash.xxh3_128_hexdigest(data)
            assert not client.store.exists(layout.blob_key(digest)), rel
        finally:
            st.close()
        af_ok(env, "stage", "discard", st.id)
    assert af(env, "verify", "--all").returncode == 0
    tally("staged bytes damaged on disk", faults=len(cases))
