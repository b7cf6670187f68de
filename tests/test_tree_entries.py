"""A version holds the tree as committed: empty directories and symbolic links included (manifest
format 2), through commit --dir, the staging mount (tar, cp -a, rsync -a into it), get, the mount and
diff; a link is stored as written and never followed by artifactfs. And a stage's metadata behaves
as on ext4 (atime kept, ctime advancing, link counts)."""

import json
import os
import stat
import subprocess
import tarfile
import time

import pytest

from artifactfs import layout
from artifactfs.errors import CorruptData
from artifactfs.hashing import digest_bytes
from artifactfs.manifest import Entry, Manifest
from tests.fault_util import af, af_ok, plant_version, write_files
from tests.fuse_util import Mount
from tests.staging_util import StageMount

NAME = "acme/p/tree"


def tree_of(root) -> dict:
    """{path: ("dir",) | ("link", target) | ("file", bytes, executable)} of everything below `root`,
    links never followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                with open(full, "rb") as f:
                    out[rel] = ("file", f.read(), bool(st.st_mode & stat.S_IXUSR))
    return out


def make_model_tree(root, outside) -> None:
    """A model folder: checkpoints, `latest -> ckpt-100`, an empty logs/ and cache/, a link out of the
    tree, a dangling one, a link to a directory."""
    write_files(root, {"ckpt-90/weights.bin": b"ninety" * 100, "ckpt-100/weights.bin": b"hundred" * 100,
                       "config.json": b'{"layers": 3}\n'})
    for d in ("logs", "cache/empty/deeper"):
        os.makedirs(root / d)
    os.symlink("ckpt-100", root / "latest")
    os.symlink("../config.json", root / "ckpt-100" / "config.json")
    os.symlink(str(outside), root / "outside")
    os.symlink("nowhere/at/all", root / "dangling")


def test_commit_get_and_mount_hold_links_and_empty_directories(cli, client, env, tmp_path):
    outside = tmp_path / "outside-secret"
    outside.write_bytes(b"never copied\n")
    src = tmp_path / "src"
    make_model_tree(src, outside)
    committed = cli("commit", NAME, "--dir", src)
    assert committed.exit_code == 0
    expected = tree_of(src)
    manifest = client.manifest(client.resolve(NAME))
    kinds = [e.kind for e in manifest]
    counts = (kinds.count("file"), kinds.count("link"), kinds.count("dir"))
    assert counts[1] and counts[2]
    # files, links and empty directories are counted apart wherever a version's size is said
    said = f"{counts[0]} files, {counts[1]} link{'s' * (counts[1] > 1)}, {counts[2]} empty director"
    assert said in committed.stdout and said in cli("show", NAME).stdout
    shown = json.loads(cli("show", NAME, "--json").stdout)
    assert (shown["file_count"], shown["link_count"], shown["dir_count"]) == counts

    listed = cli("files", NAME).stdout
    assert "latest -> ckpt-100" in listed and "logs/\n" in listed and "cache/empty/deeper/" in listed
    manifest = client.manifest(client.resolve(NAME))
    assert manifest.header()["format"] == 2
    assert b"never copied" not in client.store.get(layout.manifest_key(manifest.digest))[0]

    out = tmp_path / "out"
    assert cli("get", NAME, "--root", out).exit_code == 0
    assert tree_of(out) == expected
    files = sum(1 for e in manifest if e.kind == "file")
    again = cli("get", NAME, "--root", out)  # again: everything already there, links and directories not counted
    assert again.exit_code == 0 and f"(0 files written, {files} already there)" in again.stdout, again.stdout
    assert tree_of(out) == expected
    os.unlink(out / "latest")
    (out / "latest").write_bytes(b"a file where the link was")
    assert cli("get", NAME, "--root", out).exit_code == 0
    assert os.readlink(out / "latest") == "ckpt-100" and outside.read_bytes() == b"never copied\n"

    m = Mount(tmp_path / "mp", env)
    try:
        root = m.path(f"{NAME}:v0")
        assert tree_of(root) == expected
        assert os.readlink(os.path.join(root, "latest")) == "ckpt-100"
        with open(os.path.join(root, "latest", "weights.bin"), "rb") as f:  # the kernel follows, inside
            assert f.read() == b"hundred" * 100
        assert os.listdir(os.path.join(root, "cache", "empty", "deeper")) == []
        assert subprocess.run(["diff", "-r", "--no-dereference", src, root]).returncode == 0
    finally:
        m.close()

    os.unlink(src / "latest")
    os.symlink("ckpt-90", src / "latest")
    os.rmdir(src / "logs")
    assert cli("commit", NAME, "--dir", src).exit_code == 0
    assert sorted(cli("diff", f"{NAME}:v0", f"{NAME}:v1").stdout.splitlines()) == ["- logs", "M latest"]


def test_a_bare_git_repository_clones_from_the_mount(cli, env, tmp_path):
    """After `git pack-refs`, refs/heads and refs/tags of a bare repository are empty directories:
    without them git says the mount 'does not appear to be a git repository'."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    work = tmp_path / "work"
    write_files(work, {"README": b"hello\n"})
    for args in (["init", "-q", str(work)], ["-C", str(work), "add", "."], ["-C", str(work), "commit", "-qm", "one"],
                 ["clone", "-q", "--bare", str(work), str(tmp_path / "bare.git")],
                 ["-C", str(tmp_path / "bare.git"), "pack-refs", "--all", "--prune"]):
        subprocess.run(git + args, check=True, capture_output=True)
    assert os.listdir(tmp_path / "bare.git" / "refs" / "heads") == []
    assert cli("commit", "acme/p/repo", "--dir", tmp_path / "bare.git").exit_code == 0
    m = Mount(tmp_path / "mp", env)
    try:
        res = subprocess.run(git + ["clone", "-q", m.path("acme/p/repo:latest"), str(tmp_path / "clone")],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "clone" / "README").read_bytes() == b"hello\n"
    finally:
        m.close()


def test_tar_cp_a_and_rsync_into_a_stage_commit_the_tree(stage_env, stages, tmp_path, client):
    outside = tmp_path / "outside-secret"
    outside.write_bytes(b"never copied\n")
    src = tmp_path / "src"
    make_model_tree(src, outside)
    archive = tmp_path / "model.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname="model")
    st = stages(NAME, "--empty")
    subprocess.run(["tar", "-xf", archive, "-C", st.mountpoint], check=True)
    subprocess.run(["cp", "-a", str(src), st.path("copied")], check=True)
    subprocess.run(["rsync", "-a", f"{src}/", st.path("synced")], check=True)
    os.symlink("copied/latest", st.path("top-link"))
    expected = tree_of(src)
    for sub in ("model", "copied", "synced"):
        assert tree_of(st.path(sub)) == expected, sub
    assert os.readlink(st.path("top-link")) == "copied/latest"
    assert os.lstat(st.path("top-link")).st_size == len("copied/latest")
    res = af(stage_env, "commit", st.mountpoint, "-m", "tree")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    af_ok(stage_env, "get", NAME, "--root", out)
    for sub in ("model", "copied", "synced"):
        assert tree_of(out / sub) == expected, sub
    assert tree_of(st.mountpoint) == tree_of(out)  # the stage continues from what it committed

    st.close()  # a remount replays the journal: links and empty directories are still there
    again = StageMount(tmp_path / "again", stage_env, remount_id=st.id)
    try:
        assert tree_of(again.mountpoint) == tree_of(out)
        os.unlink(again.path("model", "latest"))
        os.symlink("ckpt-90", again.path("model", "latest"))
        os.rmdir(again.path("model", "logs"))
        assert af(stage_env, "commit", again.mountpoint).returncode == 0
        assert set(af_ok(stage_env, "diff", f"{NAME}:v0", f"{NAME}:v1").split()) == {"M", "model/latest", "-",
                                                                                    "model/logs"}
    finally:
        again.close()


def test_the_format_holds_links_and_directories_only_as_written():
    d = digest_bytes(b"x")
    plain = Manifest.from_entries([Entry("a", 1, d)])
    assert plain.header()["format"] == 1  # a tree of files keeps its digest from before format 2
    tree = Manifest.from_entries([Entry("a", 1, d), Entry.link("l", "a"), Entry.directory("e")])
    assert tree.header()["format"] == 2 and Manifest.parse(tree.to_bytes()).to_bytes() == tree.to_bytes()
    head = b'{"chunk_size":8388608,"format":%d,"type":"artifactfs-manifest"}\n'
    bad = [head % 1 + b'{"kind":"link","path":"l","size":0,"target":"a"}\n',  # format 1 holds no links
           head % 2 + b'{"digest":"%s","path":"a","size":1}\n' % d.encode(),  # format 2 only with one
           head % 2 + b'{"kind":"link","path":"l","size":5,"target":"a"}\n',
           head % 2 + b'{"kind":"link","path":"l","size":0,"target":""}\n',
           head % 2 + b'{"kind":"link","path":"l","size":0,"target":"a\\u0000b"}\n',
           head % 2 + b'{"kind":"dir","path":"e","size":0,"digest":"%s"}\n' % d.encode(),
           head % 2 + b'{"kind":"fifo","path":"f","size":0}\n',
           head % 2 + b'{"kind":"dir","path":"e","size":0}\n{"digest":"%s","path":"e/x","size":1}\n' % d.encode()]
    for data in bad:
        with pytest.raises((CorruptData, Exception)) as info:
            Manifest.parse(data)
        assert info.type.__name__ in ("CorruptData", "InvalidPath"), data


def test_a_stored_link_entry_is_never_followed_by_get(cli, client, tmp_path):
    """A hostile manifest with a link `x -> /tmp/...` and (in another version) a file `x/evil`: get
    of both into one root recreates the link and refuses to write through it."""
    target = tmp_path / "target-dir"
    target.mkdir()
    plant_version(client.store, [{"kind": "link", "path": "x", "size": 0, "target": str(target)}], "acme/p/evil",
                  {"chunk_size": 8 * 1024 * 1024, "format": 2, "type": "artifactfs-manifest"})
    src = tmp_path / "src"
    write_files(src, {"x/evil": b"evil\n"})
    assert cli("commit", "acme/p/evil2", "--dir", src).exit_code == 0
    out = tmp_path / "out"
    assert cli("get", "acme/p/evil", "--root", out).exit_code == 0
    assert os.readlink(out / "x") == str(target)
    res = cli("get", "acme/p/evil2", "--root", out)
    assert res.exit_code == 8 and "x" in res.stderr
    assert os.listdir(target) == []


# ---- stage metadata as on ext4 ----------------------------------------------------------------------
def test_stage_times_and_link_counts_behave_as_on_ext4(stage_env, stages, tmp_path):
    st = stages(NAME, "--empty")
    f = st.path("f")
    with open(f, "wb") as out:
        out.write(b"data")
    subprocess.run(["touch", "-a", "-d", "@2000", f], check=True)
    assert os.stat(f).st_atime == 2000  # atime kept, not mtime
    before = os.stat(f).st_ctime_ns
    time.sleep(0.05)
    os.chmod(f, 0o755)
    assert os.stat(f).st_ctime_ns > before  # chmod is a change
    changed = os.stat(f).st_ctime_ns
    os.utime(f, ns=(2000 * 10**9, 10**9))
    assert os.stat(f).st_mtime_ns == 10**9 and os.stat(f).st_ctime_ns >= changed  # never backwards

    os.mkdir(st.path("d"))
    assert os.stat(st.path("d")).st_nlink == 2
    for sub in ("a", "b", "c"):
        os.mkdir(st.path("d", sub))
    with open(st.path("d", "file"), "wb"):
        pass
    assert os.stat(st.path("d")).st_nlink == 5  # 2 + one per subdirectory, files not counted
    os.rmdir(st.path("d", "c"))
    assert os.stat(st.path("d")).st_nlink == 4

    held = open(st.path("d", "file"), "rb")
    assert os.fstat(held.fileno()).st_nlink == 1
    os.unlink(st.path("d", "file"))
    assert os.fstat(held.fileno()).st_nlink == 0  # open after its unlink: no name left
    held.close()

    st.close()  # a remount keeps atime and ctime (journaled)
    again = StageMount(tmp_path / "again", stage_env, remount_id=st.id)
    try:
        assert os.stat(again.path("f")).st_atime == 2000
        assert os.stat(again.path("f")).st_ctime_ns >= changed
        assert os.stat(again.path("d")).st_nlink == 4
    finally:
        again.close()
