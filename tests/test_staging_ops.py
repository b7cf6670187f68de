"""The staging mount behaves like a local directory: the same operations give the same tree, and the
committed version reads back byte for byte through the read-only mount. Both backends."""

import errno
import io
import os
import pickle
import random
import shutil
import subprocess
import tarfile
import zipfile

import numpy as np
import pytest

from artifactfs.hashing import CHUNK_SIZE
from tests.fuse_util import Mount, run_cli
from tests.staging_util import files_only, snapshot, write_tree

NAME = "acme/vision/ds"


def base_files() -> dict:
    rnd = random.Random(3)
    return {
        "a.txt": b"hello\n",
        "empty.bin": b"",
        "images/cat.png": rnd.randbytes(300_000),
        "images/dog.png": rnd.randbytes(5_000),
        "deep/x/y/z.txt": b"deep\n",
        "big.bin": rnd.randbytes(CHUNK_SIZE + 4321),  # two chunks: copy-up and a write across a chunk
    }


@pytest.fixture
def base(stage_env, tmp_path):
    src = tmp_path / "base"
    write_tree(src, base_files())
    run_cli(["commit", "--dir", src, NAME, "-m", "base"], stage_env, check=True)
    return src


def scenario(root: str, extra: str, tarball: str) -> None:
    """What users run, applied identically to the staging mount and to a local directory."""
    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True)

    sh("cp", "-r", extra, f"{root}/copied")
    sh("rsync", "-a", f"{extra}/", f"{root}/synced/")
    os.mkdir(f"{root}/untarred")
    sh("tar", "-xf", tarball, "-C", f"{root}/untarred")
    sh("mv", f"{root}/synced", f"{root}/moved")  # directory of new files
    os.rename(f"{root}/images", f"{root}/pictures")  # directory of untouched base files
    os.rename(f"{root}/a.txt", f"{root}/pictures/a-renamed.txt")
    sh("rm", "-r", f"{root}/deep", f"{root}/copied/sub")
    np.save(f"{root}/arr.npy", np.arange(50_000, dtype=np.float32))  # numpy writer
    with zipfile.ZipFile(f"{root}/model.pt", "w") as z:  # torch.save's container: a zip, headers patched by seek
        z.writestr(zipfile.ZipInfo("model/data.pkl", (2024, 1, 1, 0, 0, 0)), pickle.dumps({"w": list(range(1000))}))
        z.writestr(zipfile.ZipInfo("model/weights", (2024, 1, 1, 0, 0, 0)), bytes(range(256)) * 400)
    with open(f"{root}/table.csv", "w") as f:  # pandas.to_csv writes text like this
        f.write("a,b\n" + "".join(f"{i},{i * i}\n" for i in range(2000)))
    with open(f"{root}/pictures/cat.png", "r+b") as f:  # overwrite in place: copy-up of a base file
        f.seek(1000)
        f.write(b"X" * 5000)
    with open(f"{root}/big.bin", "r+b") as f:  # a write straddling the chunk boundary
        f.seek(CHUNK_SIZE - 10)
        f.write(b"Y" * 100)
    with open(f"{root}/offsets.bin", "wb") as f:  # writes at offsets, a hole, a rewrite
        f.write(b"a" * 1000)
        f.seek(5000)
        f.write(b"b")
        f.seek(10)
        f.write(b"c" * 10)
    os.truncate(f"{root}/offsets.bin", 8000)  # grow
    os.truncate(f"{root}/pictures/dog.png", 100)  # shrink an untouched base file
    with open(f"{root}/empty.bin", "ab") as f:
        f.write(b"appended")
    with open(f"{root}/moved/one.txt", "w") as f:  # O_TRUNC overwrite of a file
        f.write("replaced")
    os.mkdir(f"{root}/newdir")
    os.mkdir(f"{root}/newdir/gone")
    os.rmdir(f"{root}/newdir/gone")
    os.mkdir(f"{root}/emptydir")
    sh("chmod", "+x", f"{root}/arr.npy")
    os.chmod(f"{root}/pictures/a-renamed.txt", 0o755)
    with open(f"{root}/newdir/synced.txt", "w") as f:
        f.write("fsynced")
        f.flush()
        os.fsync(f.fileno())
    os.replace(f"{root}/table.csv", f"{root}/moved/one.txt")  # rename over an existing file
    os.utime(f"{root}/big.bin", ns=(1_500_000_000 * 10**9, 1_500_000_000 * 10**9))


def make_inputs(tmp_path):
    rnd = random.Random(5)
    extra = tmp_path / "extra"
    write_tree(extra, {"one.txt": b"one\n", "sub/two.bin": rnd.randbytes(70_000), "sub/three.txt": b"3\n",
                       "big-new.bin": rnd.randbytes(3 * 1024 * 1024)})
    tarball = tmp_path / "in.tar"
    with tarfile.open(tarball, "w") as t:
        for name, data in {"t/one.txt": b"tar one\n", "t/deeper/two.txt": b"tar two\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith("one.txt") else 0o644
            t.addfile(info, io.BytesIO(data))
    return str(extra), str(tarball)


def test_operations_match_a_local_directory(stage_env, base, stages, tmp_path):
    extra, tarball = make_inputs(tmp_path)
    local = tmp_path / "local"
    shutil.copytree(base, local)
    scenario(str(local), extra, tarball)

    st = stages(NAME)
    assert snapshot(st.mountpoint) == snapshot(base)  # starts as the base version
    scenario(st.mountpoint, extra, tarball)
    assert snapshot(st.mountpoint) == snapshot(local)
    assert os.stat(st.path("big.bin")).st_mtime_ns == 1_500_000_000 * 10**9

    res = run_cli(["commit", st.mountpoint, "-m", "edited", "--alias", "best", "--metadata", "k=1"], stage_env)
    assert res.returncode == 0, res.stderr
    assert f"{NAME}:v1 committed" in res.stdout
    assert "the stage continues from v1" in res.stdout
    assert snapshot(st.mountpoint) == snapshot(local)  # the stage continues, unchanged

    ro = Mount(tmp_path / "ro", stage_env)
    try:
        for sel in ("v1", "best"):
            assert files_only(snapshot(ro.path("acme", "vision", f"ds:{sel}"))) == files_only(snapshot(local))
    finally:
        ro.close()


def test_what_the_format_cannot_hold_is_refused(stage_env, base, stages):
    st = stages(NAME)
    for call in (lambda: os.link(st.path("a.txt"), st.path("hard")),
                 lambda: os.mkfifo(st.path("fifo"))):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EPERM
    with pytest.raises(OSError) as info:
        open(os.path.join(st.mountpoint.encode(), b"bad-\xff"), "wb")
    assert info.value.errno == errno.EINVAL
    assert "cannot be stored in an artifact version" in st.log_text()
    assert sorted(os.listdir(st.mountpoint)) == ["a.txt", "big.bin", "deep", "empty.bin", "images"]


def test_untouched_files_are_never_copied(stage_env, base, stages, tmp_path):
    st = stages(NAME)
    for rel in ("a.txt", "images/cat.png", "big.bin"):
        with open(st.path(rel), "rb") as f:
            assert f.read() == (base / rel).read_bytes()
    os.rename(st.path("images"), st.path("pics"))
    os.chmod(st.path("big.bin"), 0o755)
    data_dir = tmp_path / "stages" / st.id / "data"
    assert os.listdir(data_dir) == []
    with open(st.path("pics/dog.png"), "r+b") as f:  # opened for writing, written: copied up
        f.write(b"!")
    assert len(os.listdir(data_dir)) == 1


def test_unchanged_content_creates_no_version(stage_env, base, stages):
    st = stages(NAME)
    os.rename(st.path("a.txt"), st.path("b.txt"))
    os.rename(st.path("b.txt"), st.path("a.txt"))
    res = run_cli(["commit", st.mountpoint], stage_env)
    assert res.returncode == 0, res.stderr
    assert "content equals v0: latest stays v0; no new version" in res.stdout
    assert run_cli(["ls", NAME], stage_env).stdout.count("\n") == 2  # the header and one version


def test_stage_list_mount_again_and_discard(stage_env, base, stages, tmp_path):
    st = stages(NAME)
    with open(st.path("new.txt"), "w") as f:
        f.write("new")
    os.unlink(st.path("a.txt"))
    with open(st.path("images/dog.png"), "ab") as f:
        f.write(b"more")
    out = run_cli(["stage", "list"], stage_env, check=True).stdout
    assert st.id in out and "from v0" in out and "+1 ~1 -1" in out and f"mounted on {st.mountpoint}" in out
    res = run_cli(["stage", "discard", st.id], stage_env)
    assert res.returncode == 4 and "unmount it first" in res.stderr
    run_cli(["umount", st.mountpoint], stage_env, check=True)
    assert "not mounted" in run_cli(["stage", "list"], stage_env, check=True).stdout
    again = stages(remount_id=st.id)
    assert open(again.path("new.txt")).read() == "new"
    assert not os.path.exists(again.path("a.txt"))
    run_cli(["umount", again.mountpoint], stage_env, check=True)
    res = run_cli(["stage", "discard", st.id], stage_env)
    assert res.returncode == 0, res.stderr
    assert st.id not in run_cli(["stage", "list"], stage_env, check=True).stdout


def test_new_artifact_from_empty_stage(stage_env, stages):
    res = run_cli(["stage", "acme/vision/fresh", "/nonexistent-mp"], stage_env)
    assert res.returncode == 2  # the mountpoint is checked first
    st = stages("acme/vision/model", "--empty", "--type", "model")
    assert os.listdir(st.mountpoint) == []
    with open(st.path("weights.bin"), "wb") as f:
        f.write(b"w" * 1000)
    res = run_cli(["commit", st.mountpoint], stage_env)
    assert res.returncode == 0, res.stderr
    assert "acme/vision/model:v0 committed" in res.stdout
    assert "(model)" in run_cli(["show", "acme/vision/model:v0"], stage_env, check=True).stdout


def test_errors_are_one_clear_line(stage_env, base, stages, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    cases = [
        (["commit", plain], 2, "is not a staging mount"),
        (["stage", "discard", "nope"], 2, "invalid stage id"),
        (["stage", "discard", "0123456789ab"], 3, "no stage 0123456789ab"),
        (["stage", "mount", "0123456789ab", plain], 3, "no stage"),
        (["stage", "acme/vision/Bad Name!", plain], 2, "invalid"),
        (["stage", "acme/vision/missing", plain], 3, "use --empty"),
        (["stage", NAME, plain, "--from", "v9"], 3, "v9"),
        (["stage", NAME, plain, "--type", "model"], 4, "is a dataset"),
        (["stage", NAME, plain, "--from", "v0", "--empty"], 2, "exclude each other"),
        (["commit", "--stage", "0123456789ab"], 3, "no stage"),
    ]
    for args, code, text in cases:
        res = run_cli(args, stage_env)
        assert res.returncode == code, (args, res.stderr)
        assert text in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    # failed `stage` commands leave nothing behind
    assert not os.path.exists(tmp_path / "stages") or os.listdir(tmp_path / "stages") == []


def test_sequential_writes_are_hashed_while_written(stage_env, base, stages, tmp_path):
    import json

    from artifactfs.hashing import hash_file

    st = stages(NAME)
    seq = os.urandom(CHUNK_SIZE + 1000)
    with open(st.path("seq.bin"), "wb") as f:  # in order: hashed on the fly, chunks included
        f.write(seq)
    with open(st.path("rnd.bin"), "wb") as f:  # out of order: left for the commit to hash
        f.write(b"b" * 1000)
        f.seek(0)
        f.write(b"a")
    with open(st.path("big.bin"), "ab") as f:  # copy-up hashes the base content, the append continues it
        f.write(b"tail")
    journal = [json.loads(line) for path in (tmp_path / "stages" / st.id).glob("journal-*.jsonl")
               for line in path.read_text().splitlines()]
    puts = {op["p"]: op for op in journal if op["op"] == "put"}
    for name in ("seq.bin", "big.bin"):
        size, digest, chunks = hash_file(st.path(name))
        assert (puts[name]["h"], puts[name]["c"]) == (digest, chunks)
    assert puts["rnd.bin"]["h"] is None
    assert run_cli(["commit", st.mountpoint], stage_env).returncode == 0
    listed = run_cli(["files", f"{NAME}:v1"], stage_env, check=True).stdout
    assert f"{hash_file(st.path('rnd.bin'))[1]}\trnd.bin" in listed
