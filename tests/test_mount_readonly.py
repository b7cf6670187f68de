"""The read-only FUSE mount, through real mounts made by `artifactfs mount`, on both backends."""

import errno
import hashlib
import json
import os
import random
import re
import stat
import subprocess
import threading
import time
import types

import pytest

from artifactfs import layout
from artifactfs.hashing import CHUNK_SIZE
from artifactfs.manifest import Entry, Manifest
from artifactfs.mount.readonly.inodes import DIR, FILE, InodeTable, Node
from artifactfs.piecefile import table_size
from tests.fault_util import overwrite_stored
from tests.fuse_util import Mount, mount_factory, run_cli
from tests.staging_util import write_tree

NAME = "acme/vision/bikes"
MB = 1024 * 1024


@pytest.fixture
def data():
    rnd = random.Random(7)
    return {
        "a.txt": b"hello\n",
        "empty.bin": b"",
        "images/cat.png": rnd.randbytes(300_000),
        "images/dog.png": rnd.randbytes(5_000),
        "deep/x/y/z.txt": b"deep\n",
        "big.bin": rnd.randbytes(2 * CHUNK_SIZE + 12345),  # three verified chunks
    }


@pytest.fixture
def committed(client, tmp_path, data):
    src = tmp_path / "src"
    write_tree(src, data)
    client.commit_dir(str(src), NAME, "dataset", aliases=["prod"], description="first")
    return data


@pytest.fixture
def mounts(env, tmp_path):
    """Start mounts with `mounts(*extra_args)`; all are unmounted and their daemons stopped at the end."""
    with mount_factory(Mount, env, tmp_path, "mnt") as make:
        yield make


def test_layout_and_bytes(committed, mounts):
    m = mounts()
    assert os.listdir(m.path()) == ["acme"]
    assert os.listdir(m.path("acme")) == ["vision"]
    assert sorted(os.listdir(m.path("acme/vision"))) == ["bikes", "bikes:latest", "bikes:prod", "bikes:v0"]
    for sel in ("bikes:v0", "bikes:latest", "bikes:prod"):
        root = m.path("acme/vision", sel)
        assert sorted(os.listdir(root)) == ["a.txt", "big.bin", "deep", "empty.bin", "images"]
        for rel, content in committed.items():
            with open(os.path.join(root, rel), "rb") as f:
                assert f.read() == content, rel
            assert os.stat(os.path.join(root, rel)).st_size == len(content)
    found = subprocess.run(["find", m.path("acme/vision/bikes:v0"), "-type", "f"], capture_output=True, text=True)
    assert len(found.stdout.split()) == len(committed)
    # the same bytes through cat and dd (1 MiB blocks, and a range across a chunk boundary)
    big = m.path("acme/vision/bikes:v0/big.bin")
    cat = subprocess.run(["cat", big], capture_output=True, check=True).stdout
    assert hashlib.sha256(cat).digest() == hashlib.sha256(committed["big.bin"]).digest()
    dd = subprocess.run(["dd", f"if={big}", "bs=1M", "skip=7", "count=2", "status=none"], capture_output=True,
                        check=True).stdout
    assert dd == committed["big.bin"][7 * MB:9 * MB]
    fd = os.open(big, os.O_RDONLY)
    try:
        for off in (0, CHUNK_SIZE - 10, 2 * CHUNK_SIZE + 12000, len(committed["big.bin"]) - 1):
            assert os.pread(fd, 4096, off) == committed["big.bin"][off:off + 4096]
        assert os.pread(fd, 100, len(committed["big.bin"]) + 5) == b""
    finally:
        os.close(fd)


def test_unknown_names_are_enoent(committed, mounts):
    m = mounts()
    for rel in ("nobody", "acme/nothing", "acme/vision/bikes:v9", "acme/vision/bikes:nope", "acme/vision/cars:v0",
                "acme/vision/cars", "acme/vision/bikes/v9", "acme/vision/bikes/nope", "acme/vision/bikes/v0:v0",
                "acme/vision/bikes:v0/missing.txt", "acme/vision/bikes:v0/images/x", "acme/vision/bikes/v0/x",
                "acme/vision/bad name:v0", "acme/vision/bad name"):
        with pytest.raises(FileNotFoundError):
            os.stat(m.path(rel))


def test_colon_free_spelling_names_the_same_directories(committed, client, mounts, tmp_path):
    """`name/vN` and `name/alias` are `name:vN` and `name:alias` for tools that split paths at ':'."""
    m = mounts("--alias-ttl", "0.5")
    artifact = m.path("acme/vision/bikes")
    assert os.listdir(artifact) == ["v0", "latest", "prod"]
    assert os.getxattr(artifact, "user.artifactfs.artifact") == b"acme/vision/bikes"
    assert os.getxattr(artifact, "user.artifactfs.type") == b"dataset"
    for sel in ("v0", "latest", "prod"):
        plain, colon = m.path("acme/vision/bikes", sel), m.path(f"acme/vision/bikes:{sel}")
        assert os.getxattr(plain, "user.artifactfs.version") == os.getxattr(colon, "user.artifactfs.version") == b"v0"
        found = subprocess.run(["find", plain, "-type", "f"], capture_output=True, text=True, check=True)
        assert sorted(os.path.relpath(p, plain) for p in found.stdout.split()) == sorted(committed)
    assert os.stat(m.path("acme/vision/bikes/v0")).st_ino == os.stat(m.path("acme/vision/bikes:v0")).st_ino
    big = os.path.join(artifact, "v0", "big.bin")
    # fio takes --filename up to the first ':'; this path has none
    subprocess.run(["cmp", big, "-"], input=committed["big.bin"], check=True)
    write_tree(tmp_path / "v1", {"a.txt": b"second\n"})
    client.commit_dir(str(tmp_path / "v1"), NAME, "dataset")
    time.sleep(1.0)
    assert os.listdir(artifact) == ["v0", "v1", "latest", "prod"]
    assert open(os.path.join(artifact, "latest", "a.txt"), "rb").read() == b"second\n"
    assert os.getxattr(os.path.join(artifact, "latest"), "user.artifactfs.version") == b"v1"
    os.listdir(m.path("acme/vision"))  # a listing after the move keeps no old tree under the alias either
    assert open(m.path("acme/vision/bikes:latest/a.txt"), "rb").read() == b"second\n"


def test_xattrs(committed, mounts, client):
    m = mounts()
    root = m.path("acme/vision/bikes:prod")
    record = client.resolve(f"{NAME}:v0")
    get = lambda p, k: os.getxattr(p, f"user.artifactfs.{k}").decode()  # noqa: E731
    assert get(root, "ref") == f"{NAME}:v0"
    assert get(root, "version") == "v0"
    assert get(root, "digest") == record.digest
    assert get(root, "alias") == "prod"
    assert set(get(root, "aliases").split(",")) == {"latest", "prod"}
    assert get(root, "description") == "first"
    assert int(get(root, "files")) == len(committed)
    big = os.path.join(root, "big.bin")
    entry = client.manifest(record)[client.manifest(record).find("big.bin")]
    assert get(big, "digest") == entry.digest
    assert int(get(big, "size")) == len(committed["big.bin"])
    assert get(big, "chunks") == "3"
    assert "user.artifactfs.digest" in os.listxattr(big)
    for name in ("user.artifactfs.nope", "security.selinux", "system.posix_acl_access"):
        with pytest.raises(OSError) as exc:
            os.getxattr(big, name)
        assert exc.value.errno == errno.ENODATA, name
    ls = subprocess.run(["ls", "-l", root], capture_output=True, text=True, check=True)  # asks both of each file
    assert "big.bin" in ls.stdout and not ls.stderr


def test_mount_root_xattrs_tell_the_store_and_what_was_fetched(committed, mounts, client, env):
    m = mounts()
    stats = lambda: json.loads(os.getxattr(m.mountpoint, "user.artifactfs.stats"))  # noqa: E731
    assert os.getxattr(m.mountpoint, "user.artifactfs.store").decode() == client.store.url
    assert os.getxattr(m.mountpoint, "user.artifactfs.cache_dir").decode() == env["ARTIFACTFS_CACHE_DIR"]
    assert stats()["fetched_bytes"] == 0 and stats()["open_files"] == 0
    with open(m.path(f"{NAME}:v0/big.bin"), "rb") as f:
        assert f.read() == committed["big.bin"]
        assert stats()["open_files"] == 1
    assert stats()["fetched_bytes"] >= len(committed["big.bin"]) and stats()["corrupt_pieces"] == 0
    assert "user.artifactfs.stats" in os.listxattr(m.mountpoint)
    m2 = mounts()  # another mount on the same cache reads the same file from the cache, not the store
    deadline = time.monotonic() + 10
    while _cached_bytes(env, settle=0) < len(committed["big.bin"]) and time.monotonic() < deadline:
        time.sleep(0.2)  # the first mount writes its cache behind the reads
    with open(m2.path(f"{NAME}:v0/big.bin"), "rb") as f:
        assert f.read() == committed["big.bin"]
    second = json.loads(os.getxattr(m2.mountpoint, "user.artifactfs.stats"))
    assert second["fetched_bytes"] == 0 and second["cache_read_bytes"] == len(committed["big.bin"])


def test_large_listing_matches_lookups(client, tmp_path, mounts):
    """A directory of more entries than one listing reply or batch holds, with subdirectories among its
    files: every entry listed once with its size and mode, under the inode number a lookup gives, the
    same through a version and an alias and after a remount; listed entries are readable and have xattrs."""
    files = {f"many/f{i:04d}.txt": b"x" * (i % 7) for i in range(1100)}
    files.update({f"many/{d}/inner.txt": d.encode() for d in ("f0000d", "f05", "f0700d", "f1099d")})
    files["many/run.sh"] = b"#!/bin/sh\n"
    write_tree(tmp_path / "src", files)
    os.chmod(tmp_path / "src/many/run.sh", 0o755)
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset", aliases=["prod"])

    def listing(m, sel):
        with os.scandir(m.path("acme/vision", sel, "many")) as it:
            return {e.name: (e.inode(), e.stat(follow_symlinks=False)) for e in it}

    m = mounts()
    seen = listing(m, "bikes:v0")
    assert sorted(seen) == sorted({rel.split("/")[1] for rel in files})
    for name, (ino, st) in seen.items():
        assert ino == st.st_ino == os.stat(m.path("acme/vision/bikes:v0/many", name)).st_ino, name
        if name in ("f0000d", "f05", "f0700d", "f1099d"):
            assert stat.S_ISDIR(st.st_mode)
        else:
            assert (st.st_size, stat.S_IMODE(st.st_mode)) == (len(files[f"many/{name}"]),
                                                             0o555 if name == "run.sh" else 0o444), name
    assert {n: v[0] for n, v in listing(m, "bikes:prod").items()} == {n: v[0] for n, v in seen.items()}
    root = m.path("acme/vision/bikes:v0/many")
    assert open(os.path.join(root, "f0777.txt"), "rb").read() == files["many/f0777.txt"]
    assert open(os.path.join(root, "f05/inner.txt"), "rb").read() == b"f05"
    assert os.getxattr(os.path.join(root, "f0321.txt"), "user.artifactfs.path") == b"many/f0321.txt"
    assert os.getxattr(os.path.join(root, "f0700d"), "user.artifactfs.path") == b"many/f0700d"
    again = mounts()
    assert {n: v[0] for n, v in listing(again, "bikes:v0").items()} == {n: v[0] for n, v in seen.items()}


def test_inode_table_counts_listed_entries_until_forgotten():
    """Listed entries stay small until asked about; lookups from listings and lookups of the Node add up,
    `forget` drops an entry or a Node once the kernel's count reaches zero, and the table lets go of a
    version once no listed entry names it."""
    paths = ["a", "b.txt", "c", "d/a.txt", "d/sub/x", "e"]
    manifest = Manifest.from_entries([Entry(p, 1, "0" * 32) for p in paths])
    view = types.SimpleNamespace(key="acme/vision/bikes:0", manifest=manifest)  # a VersionView, as far as it goes
    table = InodeTable()
    table.count_listed(view, "d/", [(10, b"a.txt", 3), (11, b"sub", -1)])
    table.count_listed(view, "d/", [(10, b"a.txt", 3)])
    assert len(table) == 3  # the root and two listed entries
    assert 10 in table and 11 in table and 99 not in table
    assert 10 not in table._nodes  # asking whether it is held does not make it a Node (`ls -l`'s xattrs)
    node = table.get(10)
    assert (node.kind, node.path, node.index, node.version, node.lookups) == (FILE, "d/a.txt", 3, view, 2)
    assert table.remember(Node(10, FILE, version=view, path="d/a.txt", index=3)) is node and node.lookups == 3
    table.count_listed(view, "d/", [(10, b"a.txt", 3)])
    assert node.lookups == 4
    table.forget(10, 3)
    assert table.get(10) is node
    table.forget(10, 1)
    assert table.get(10) is None
    table.forget(11, 1)  # a directory never asked about
    assert table.get(11) is None and len(table) == 1
    table.count_listed(view, "", [(12, b"c", 2), (13, b"d", -1), (14, b"e", 5)])
    table.count_listed(view, "", [(12, b"c", 2), (14, b"e", 5)])
    assert (table.get(13).kind, table.get(13).path) == (DIR, "d")
    assert (table.get(12).kind, table.get(12).path, table.get(12).lookups) == (FILE, "c", 2)
    table.count_listed(view, "", [(12, b"c", 2), (15, b"b.txt", 1)])  # one a Node now, one new
    assert table.get(12).lookups == 3 and table.get(15).path == "b.txt"
    assert table._views  # entry 14 is still listed, so its version is held
    table.forget(14, 1)
    assert 14 in table and table._views
    table.forget(14, 5)  # more than it has: gone, not negative
    assert 14 not in table and not table._views and not table._slot_of


def test_inode_table_matches_plain_counts_under_random_use():
    """Random listings, lookups and forgets (what the kernel sends) against a plain dict of counts: the
    same inodes held with the same counts, and no version kept once nothing names it."""
    rnd = random.Random(11)
    views = []
    for v in range(3):
        paths = [f"d{d}/f{i}" for d in range(4) for i in range(20)]
        views.append(types.SimpleNamespace(key=f"a/b/c:{v}", manifest=Manifest.from_entries(
            [Entry(p, 1, "0" * 32) for p in paths])))
    table, expected = InodeTable(), {}

    def entries(v, d):
        m = views[v].manifest
        rows = [(1000 * (v + 1) + i, m[i].path.rsplit("/", 1)[1].encode(), i) for i in range(len(m))
                if m[i].path.startswith(f"d{d}/")]
        return rows + [(900_000 + 10 * v + d, f"d{d}".encode(), -1)]  # and the directory itself

    for _ in range(3000):
        action = rnd.random()
        if action < 0.3:
            v, d = rnd.randrange(3), rnd.randrange(4)
            rows = rnd.sample(entries(v, d), rnd.randint(1, 10))
            table.count_listed(views[v], f"d{d}/" if rows[0][2] >= 0 else "", rows)
            for ino, _, _ in rows:
                expected[ino] = expected.get(ino, 0) + 1
        elif action < 0.5 and expected:
            ino = rnd.choice(sorted(expected))
            node = table.get(ino)
            assert node is not None and node.lookups == expected[ino]
            if node.kind == FILE:
                assert node.version.manifest[node.index].path == node.path
        elif expected:
            ino = rnd.choice(sorted(expected))
            n = rnd.randint(1, expected[ino])
            table.forget(ino, n)
            expected[ino] -= n
            if not expected[ino]:
                del expected[ino]
        assert len(table) == len(expected) + 1  # and the root
    for ino, count in list(expected.items()):
        table.forget(ino, count)
    assert len(table) == 1 and not table._views and not table._slot_of


def test_writes_are_erofs(committed, mounts):
    m = mounts()
    root = m.path("acme/vision/bikes:v0")
    attempts = [
        lambda: open(os.path.join(root, "a.txt"), "wb"),
        lambda: open(os.path.join(root, "a.txt"), "ab"),
        lambda: open(os.path.join(root, "new.txt"), "wb"),
        lambda: os.mkdir(os.path.join(root, "newdir")),
        lambda: os.mkdir(m.path("acme/vision/cars:v0")),
        lambda: os.unlink(os.path.join(root, "a.txt")),
        lambda: os.rmdir(os.path.join(root, "deep")),
        lambda: os.rename(os.path.join(root, "a.txt"), os.path.join(root, "b.txt")),
        lambda: os.truncate(os.path.join(root, "a.txt"), 0),
        lambda: os.chmod(os.path.join(root, "a.txt"), 0o777),
        lambda: os.symlink("a.txt", os.path.join(root, "link")),
        lambda: os.link(os.path.join(root, "a.txt"), os.path.join(root, "hard")),
        lambda: os.setxattr(os.path.join(root, "a.txt"), "user.x", b"1"),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as exc:
            attempt()
        assert exc.value.errno == errno.EROFS
    assert open(os.path.join(root, "a.txt"), "rb").read() == b"hello\n"


def test_concurrent_readers(committed, mounts):
    m = mounts()
    root = m.path("acme/vision/bikes:latest")
    errors = []

    def reader(seed):
        rnd = random.Random(seed)
        try:
            for _ in range(20):
                rel = rnd.choice(sorted(committed))
                content = committed[rel]
                with open(os.path.join(root, rel), "rb") as f:
                    if len(content) > 1000 and rnd.random() < 0.5:
                        off = rnd.randrange(len(content))
                        f.seek(off)
                        assert f.read(70000) == content[off:off + 70000], rel
                    else:
                        assert f.read() == content, rel
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def _settled_cache_info(env, grown) -> dict:
    deadline = time.monotonic() + 10
    while True:  # the mount writes its cache behind the reads
        info = json.loads(run_cli(["cache", "info", "--json"], env, check=True).stdout)
        if grown(info) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(0.5)
    return json.loads(run_cli(["cache", "info", "--json"], env, check=True).stdout)


@pytest.mark.parametrize("block_list", [True, False])
def test_random_access_fetches_only_what_it_needs(client, tmp_path, mounts, env, block_list):
    """A 4 KiB read in the middle of a cold 5 MiB file fetches (and caches) the 64 KiB block it lies in
    when the file has a block list (blocks.py), the one chunk around it when not (older versions)."""
    size = 5 * CHUNK_SIZE
    content = random.Random(3).randbytes(size)
    write_tree(tmp_path / "src", {"huge.bin": content})
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    listed = client.manifest(client.resolve(f"{NAME}:v0"))[0].blocks
    if not block_list:
        client.store.delete(layout.blocks_key(listed))
    m = mounts()
    with open(m.path("acme/vision/bikes:v0/huge.bin"), "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        f.seek(3 * CHUNK_SIZE + 1000)
        assert f.read(4096) == content[3 * CHUNK_SIZE + 1000:3 * CHUNK_SIZE + 5096]
    if block_list:  # the list, and the blocks the kernel's request covered (it asks for up to 128 KiB)
        info = _settled_cache_info(env, lambda info: info["pieces"] >= 2)
        assert 2 <= info["pieces"] <= 3 and info["bytes"] <= 4 * 65536, info
    else:
        info = _settled_cache_info(env, lambda info: info["pieces"] >= 1)
        assert info["pieces"] == 1 and info["bytes"] == CHUNK_SIZE + table_size(CHUNK_SIZE), info  # one chunk


def _warm(env, *args) -> dict:
    return json.loads(run_cli(["cache", "warm", f"{NAME}:prod", *args, "--json"], env, check=True).stdout)


def test_cache_warm_lets_the_mount_read_without_the_store(committed, client, mounts, env):
    images = len(committed["images/cat.png"]) + len(committed["images/dog.png"])
    total = sum(map(len, committed.values()))
    got = _warm(env, "--prefix", "images")  # a directory of the version: only its bytes
    assert (got["files"], got["fetched_bytes"], got["cached_bytes"]) == (2, images, 0)
    got = _warm(env)
    assert (got["files"], got["fetched_bytes"], got["cached_bytes"]) == (6, total - images, images)
    assert _warm(env)["fetched_bytes"] == 0
    # the store loses every blob and pack: the warmed version still reads, byte for byte
    for info in [*client.store.list("blobs/"), *client.store.list("packs/")]:
        client.store.delete(info.key)
    m = mounts()
    for rel, content in committed.items():
        with open(m.path(f"{NAME}:v0/{rel}"), "rb") as f:
            assert f.read() == content, rel


def test_cache_warm_refuses_what_the_cache_cannot_keep(committed, env):
    res = run_cli(["--cache-size", "2M", "cache", "warm", NAME], env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "more than the cache keeps" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(["--cache-size", "2M", "cache", "warm", NAME, "--prefix", "images"], env)  # that part fits
    assert res.returncode == 0 and "2 files in" in res.stdout, res.stderr
    res = run_cli(["cache", "warm", NAME, "--prefix", "nothing/here"], env)
    assert res.returncode == 3 and "no entry or directory" in res.stderr, res.stderr


def test_deleted_versions_leave_the_listing(client, tmp_path, mounts):
    """A deleted version keeps a tombstone record in the store; the project listing must not show it,
    neither one deleted before the mount nor one deleted while mounted (after the listing TTL)."""
    from artifactfs.lifecycle import delete_version

    for i in range(3):
        write_tree(tmp_path / f"v{i}", {"f.txt": f"version {i}\n".encode()})
        client.commit_dir(str(tmp_path / f"v{i}"), NAME, "dataset")
    delete_version(client.repo, client.ref(f"{NAME}:v0"))
    m = mounts("--alias-ttl", "0.5")
    project = m.path("acme/vision")
    assert sorted(os.listdir(project)) == ["bikes", "bikes:latest", "bikes:v1", "bikes:v2"]
    delete_version(client.repo, client.ref(f"{NAME}:v1"))
    time.sleep(1.0)
    assert sorted(os.listdir(project)) == ["bikes", "bikes:latest", "bikes:v2"]
    assert os.listdir(m.path("acme/vision/bikes")) == ["v2", "latest"]
    assert not os.path.exists(m.path("acme/vision/bikes:v0"))
    assert open(m.path("acme/vision/bikes:latest/f.txt")).read() == "version 2\n"


def test_alias_moves_after_ttl_open_file_keeps_version(client, tmp_path, mounts):
    write_tree(tmp_path / "v0", {"f.txt": b"old contents\n", "only-v0.txt": b"0"})
    write_tree(tmp_path / "v1", {"f.txt": b"new contents, longer\n"})
    client.commit_dir(str(tmp_path / "v0"), NAME, "dataset", aliases=["prod"])
    m = mounts("--alias-ttl", "0.5")
    project = m.path("acme/vision")
    assert sorted(os.listdir(project)) == ["bikes", "bikes:latest", "bikes:prod", "bikes:v0"]
    latest = m.path("acme/vision/bikes:latest/f.txt")
    held = open(latest, "rb")
    try:
        assert held.read(3) == b"old"
        client.commit_dir(str(tmp_path / "v1"), NAME, "dataset")
        # a name not listed yet resolves at once (no negative entry was cached for it)
        assert open(m.path("acme/vision/bikes:v1/f.txt"), "rb").read() == b"new contents, longer\n"
        time.sleep(1.0)
        assert open(latest, "rb").read() == b"new contents, longer\n"
        assert not os.path.exists(m.path("acme/vision/bikes:latest/only-v0.txt"))
        assert open(m.path("acme/vision/bikes:prod/f.txt"), "rb").read() == b"old contents\n"
        assert held.read() == b" contents\n"  # the open file keeps the version it opened
        assert "bikes:v1" in os.listdir(project)
    finally:
        held.close()


def test_everything_under_an_alias_follows_it_after_recursive_listings(client, tmp_path, mounts):
    """`ls -R`, `find` and `diff -r` of name:latest/ cache every entry below it; a commit that moves
    latest is still seen through that path within the TTL, deep files and listings included."""
    write_tree(tmp_path / "v0", {"d/e/deep.txt": b"v0 deep\n", "d/gone.txt": b"0", "top.txt": b"v0 top\n"})
    write_tree(tmp_path / "v1", {"d/e/deep.txt": b"v1 deep, longer\n", "d/new.txt": b"1", "top.txt": b"v1\n"})
    client.commit_dir(str(tmp_path / "v0"), NAME, "dataset")
    m = mounts("--alias-ttl", "1")
    latest = m.path("acme/vision/bikes:latest")
    subprocess.run(["ls", "-lR", latest], check=True, capture_output=True)
    subprocess.run(["find", latest, "-ls"], check=True, capture_output=True)
    assert subprocess.run(["diff", "-r", latest, str(tmp_path / "v0")], capture_output=True).returncode == 0
    client.commit_dir(str(tmp_path / "v1"), NAME, "dataset")
    time.sleep(2.0)  # the TTL and a second more
    assert open(os.path.join(latest, "d/e/deep.txt"), "rb").read() == b"v1 deep, longer\n"
    assert sorted(os.listdir(os.path.join(latest, "d"))) == ["e", "new.txt"]
    assert os.stat(os.path.join(latest, "top.txt")).st_size == 3
    assert subprocess.run(["diff", "-r", latest, str(tmp_path / "v1")], capture_output=True).returncode == 0


def test_corrupt_blob_is_eio(client, tmp_path, mounts):
    rnd = random.Random(5)
    big = rnd.randbytes(2 * CHUNK_SIZE)
    write_tree(tmp_path / "src", {"small.txt": b"small file contents\n", "big.bin": big, "ok.txt": b"fine\n"})
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    manifest = client.manifest(client.resolve(f"{NAME}:v0"))
    small = manifest[manifest.find("small.txt")]
    overwrite_stored(client, small, b"SMALL FILE CONTENTS\n")  # same size, other bytes
    entry = manifest[manifest.find("big.bin")]
    damaged = bytearray(big)
    damaged[CHUNK_SIZE + 10] ^= 0xFF  # the second chunk only
    client.store.put(layout.blob_key(entry.digest), bytes(damaged))
    m = mounts()
    root = m.path("acme/vision/bikes:v0")
    with pytest.raises(OSError) as exc:
        open(os.path.join(root, "small.txt"), "rb").read()
    assert exc.value.errno == errno.EIO
    with open(os.path.join(root, "big.bin"), "rb") as f:
        assert f.read(4096) == big[:4096]  # the intact chunk is served
        f.seek(CHUNK_SIZE)
        with pytest.raises(OSError) as exc:
            f.read(4096)
        assert exc.value.errno == errno.EIO
    assert open(os.path.join(root, "ok.txt"), "rb").read() == b"fine\n"
    assert "do not match their digest" in m.log_text()
    assert json.loads(os.getxattr(m.mountpoint, "user.artifactfs.stats"))["corrupt_pieces"] >= 2


def test_mount_errors_are_one_clear_line(committed, env, tmp_path):
    res = run_cli(["mount", tmp_path / "missing"], env)
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    res = run_cli(["mount", full], env)
    assert res.returncode == 2 and "not empty" in res.stderr
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = run_cli(["mount", afile], env)
    assert res.returncode == 2 and "not a directory" in res.stderr
    res = run_cli(["umount", tmp_path], env)
    assert res.returncode == 2 and "not mounted" in res.stderr
    for path in (full, tmp_path):
        assert not os.path.ismount(path)


def test_unreachable_store_is_a_clear_error(env, tmp_path):
    from tests.seaweed import free_port_pair

    bad = dict(env, ARTIFACTFS_STORE="s3://nowhere/x", AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port_pair()}",
               ARTIFACTFS_TIMEOUT="1", AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
               AWS_DEFAULT_REGION="us-east-1")
    (tmp_path / "mp").mkdir()
    start = time.monotonic()
    res = run_cli(["mount", tmp_path / "mp"], bad)
    assert res.returncode == 5, res.stderr
    assert res.stderr.count("\n") <= 1 and "Traceback" not in res.stderr
    assert time.monotonic() - start < 30
    assert not os.path.ismount(tmp_path / "mp")


def test_umount_stops_the_daemon(committed, env, tmp_path):
    m = Mount(tmp_path / "mp", env)
    try:
        assert open(m.path("acme/vision/bikes:v0/a.txt"), "rb").read() == b"hello\n"
        res = run_cli(["umount", m.mountpoint], env)
        assert res.returncode == 0, res.stderr
        assert not os.path.ismount(m.mountpoint)
        from tests.fuse_util import wait_gone

        assert wait_gone(m.pid)
        # what the mount fetched is in the cache `get` and `cache info` use
        info = json.loads(run_cli(["cache", "info", "--json"], env, check=True).stdout)
        assert info["pieces"] >= 1
    finally:
        m.close()


def _cached_bytes(env, settle=1.0) -> int:
    time.sleep(settle)  # prefetches and write-behind finish in the background
    return json.loads(run_cli(["cache", "info", "--json"], env, check=True).stdout)["bytes"]


def test_in_order_walk_prefetches_next_files_shuffled_reads_do_not(client, tmp_path, mounts, env):
    files = {f"d/f{i:03d}.bin": random.Random(i).randbytes(1000 + i) for i in range(400)}
    write_tree(tmp_path / "src", files)
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    names = sorted(files)
    m = mounts()
    root = m.path("acme/vision/bikes:v0")
    order = names[:]
    random.Random(9).shuffle(order)
    for rel in order[:10]:  # shuffled: only what is read is fetched
        assert open(os.path.join(root, rel), "rb").read() == files[rel]
    assert _cached_bytes(env) < 20 * 1400  # 10 read; a chance run of near neighbours may add a small window
    for rel in names[200:210]:  # in manifest order: the following files are fetched ahead
        assert open(os.path.join(root, rel), "rb").read() == files[rel]
    assert _cached_bytes(env) > 60 * 1400
    for rel in names:  # and everything still reads back exactly
        assert open(os.path.join(root, rel), "rb").read() == files[rel]


def test_small_files_read_ahead_reach_the_page_cache_with_their_open(client, tmp_path, mounts):
    """A walk in manifest order reads files the mount fetched ahead; their bytes go to the kernel with
    the OPEN (no READ request). Whatever path served them, every byte is the committed one: odd sizes,
    two handles at once, and again after the kernel dropped the pages."""
    sizes = [0, 1, 4095, 4096, 4097, 65536, 65537] + [(i * 7919) % 20000 + 1 for i in range(293)]
    files = {f"d{i // 100}/f{i:03d}.bin": random.Random(i).randbytes(n) for i, n in enumerate(sizes)}
    write_tree(tmp_path / "src", files)
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    m = mounts()
    root = m.path("acme/vision/bikes:v0")
    for rel in sorted(files):
        with open(os.path.join(root, rel), "rb") as f:
            assert f.read() == files[rel], rel
    rel = sorted(files)[150]
    with open(os.path.join(root, rel), "rb") as a, open(os.path.join(root, rel), "rb") as b:
        assert a.read(10) == files[rel][:10] and b.read() == files[rel]
        os.posix_fadvise(a.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # evicted: read again through READ
        assert os.pread(a.fileno(), len(files[rel]), 0) == files[rel]
    m.close()
    fills = int(re.search(r"(\d+) small files handed to the page cache", m.log_text()).group(1))
    assert fills > len(files) // 2  # most of the walk needed no READ request


def test_a_second_job_reads_small_files_from_the_disk_cache_with_their_open(client, tmp_path, mounts, env):
    """The second job on a machine: the bytes are in the disk cache (`cache warm`), the mount is new and
    the reads shuffled. Every small file's bytes come with its OPEN (no READ request), checked, and are
    the committed ones; the store is not asked for any of them."""
    files = {f"d{i % 5}/f{i:03d}.bin": random.Random(i).randbytes(1000 + i * 37) for i in range(120)}
    write_tree(tmp_path / "src", files)
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    assert subprocess.run(["artifactfs", "cache", "warm", f"{NAME}:v0"], env=env, capture_output=True).returncode == 0
    m = mounts()
    root = m.path("acme/vision/bikes:v0")
    order = sorted(files)
    random.Random(5).shuffle(order)
    for rel in order:
        with open(os.path.join(root, rel), "rb") as f:
            assert f.read() == files[rel], rel
    stats = json.loads(os.getxattr(m.mountpoint, "user.artifactfs.stats"))
    assert stats["small_files_prefilled"] == len(files), stats
    assert stats["fetched_bytes"] == 0, stats


def test_random_reads_with_locality_are_served_by_the_page_cache(client, tmp_path, mounts, env):
    """A chunk that two random reads reached the daemon for is handed to the page cache whole (checked
    first), so the reads that follow in it need no request; every byte read is the committed one, and
    a chunk whose cache file was damaged is never handed over (it is fetched again and checked)."""
    size = 12 * CHUNK_SIZE + 777
    content = random.Random(11).randbytes(size)
    write_tree(tmp_path / "src", {"h5like.bin": content})
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    assert run_cli(["cache", "warm", f"{NAME}:v0"], env).returncode == 0
    manifest = client.manifest(client.resolve(f"{NAME}:v0"))
    damaged = manifest[manifest.find("h5like.bin")].chunks[4]
    path = client.cache.path(damaged)
    with open(path, "r+b") as f:  # chunk 4 of the cache: one flipped byte
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    m = mounts()
    stats = lambda: json.loads(os.getxattr(m.mountpoint, "user.artifactfs.stats"))  # noqa: E731
    rnd = random.Random(2)
    fd = os.open(m.path(f"{NAME}:v0/h5like.bin"), os.O_RDONLY)
    try:
        # two reads in each chunk, every read a jump of more than 2 MiB: a random reader
        for chunk in [c for pair in zip(range(6), range(6, 12), strict=True) for c in pair for _ in range(2)]:
            for off in (chunk * CHUNK_SIZE + rnd.randrange(0, CHUNK_SIZE - 4096),):
                assert os.pread(fd, 4096, off) == content[off:off + 4096]
        deadline = time.monotonic() + 10
        while stats()["chunks_prefilled"] < 11 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats()["chunks_prefilled"] >= 11, stats()  # the damaged chunk fails its check: not handed over
        before = stats()
        for _ in range(300):
            off = rnd.randrange(0, 4 * CHUNK_SIZE - 4096)  # the chunks before the damaged one
            assert os.pread(fd, 4096, off) == content[off:off + 4096]
        after = stats()
        assert after["cache_read_bytes"] == before["cache_read_bytes"], (before, after)  # no request reached us
        for _ in range(100):
            off = rnd.randrange(0, size - 4096)
            assert os.pread(fd, 4096, off) == content[off:off + 4096]
    finally:
        os.close(fd)
    assert stats()["damaged_cache_files"] >= 1


def test_large_random_reads_are_read_from_the_disk_cache_once(client, tmp_path, mounts, env):
    """Reads of 1 MiB at unaligned offsets (duckdb's row groups, parquet column chunks) jump around a
    file whose chunks are in the disk cache: the disk cache is read about once (before b92e741 the
    chunks were read again behind the reads, to hand them to the page cache), and every byte is the
    committed one."""
    size = 12 * CHUNK_SIZE
    content = random.Random(12).randbytes(size)
    write_tree(tmp_path / "src", {"table.parquet": content})
    client.commit_dir(str(tmp_path / "src"), NAME, "dataset")
    assert run_cli(["cache", "warm", f"{NAME}:v0"], env).returncode == 0
    m = mounts()
    stats = lambda: json.loads(os.getxattr(m.mountpoint, "user.artifactfs.stats"))  # noqa: E731
    offsets = [k * CHUNK_SIZE + CHUNK_SIZE // 3 for k in range(11)]
    random.Random(3).shuffle(offsets)
    fd = os.open(m.path(f"{NAME}:v0/table.parquet"), os.O_RDONLY)
    try:
        for off in offsets:
            assert os.pread(fd, CHUNK_SIZE, off) == content[off:off + CHUNK_SIZE]
    finally:
        os.close(fd)
    time.sleep(0.3)  # a fill would have run by now
    after = stats()
    # With READs of 1 MiB (readahead raised) no chunk is handed over again; a busy kernel may cut the
    # reads into small READs that arrive out of order and look like a random reader (filled from
    # memory then): either way the disk cache is read little more than once.
    assert after["cache_read_bytes"] <= 1.5 * size, after
