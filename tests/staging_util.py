"""Staging mounts through the real CLI in tests, and comparing directory trees."""

import os
import re
import signal
import stat
import subprocess

import xxhash

from tests.fuse_util import Mount, wait_gone


class StageMount(Mount):
    """`artifactfs stage ...` as a background daemon; `close()` always unmounts and stops it."""

    def __init__(self, mountpoint, env, *args, remount_id=None):
        cmd = ["stage", "mount", remount_id, str(mountpoint)] if remount_id else ["stage", *args, str(mountpoint)]
        self._start(mountpoint, env, cmd)
        m = re.search(r"stage ([0-9a-f]{12}): .* \(pid (\d+), log ([^)]+)\)", self.output)
        self.id, self.pid, self.log = m.group(1), int(m.group(2)), m.group(3)
        assert os.path.ismount(self.mountpoint)

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert wait_gone(self.pid)
        subprocess.run(["fusermount3", "-uz", self.mountpoint], capture_output=True)


def snapshot(root, with_dirs=True) -> dict:
    """{relative path: (xxh128 of content, executable)} for files, {dir: "dir"} for directories."""
    out = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if with_dirs and rel_dir != ".":
            out[rel_dir] = "dir"
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            assert stat.S_ISREG(st.st_mode), full
            with open(full, "rb") as f:
                digest = xxhash.xxh3_128_hexdigest(f.read())
            out[os.path.normpath(os.path.join(rel_dir, name))] = (digest, bool(st.st_mode & stat.S_IXUSR))
    return out


def files_only(snap: dict) -> dict:
    return {k: v for k, v in snap.items() if v != "dir"}


def write_tree(root, files: dict) -> None:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
