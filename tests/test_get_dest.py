"""Where `get` writes: a unique temp file beside each file (concurrent gets do not collide, a file named
like the old fixed temp name is left alone), never through a symbolic link below --root, and one clear
line when something is in the way."""

import os

import pytest

from tests.fault_util import af, af_many, one_clear_line, write_files

NAME = "acme/vision/dest"
FILES = {"a.txt": b"alpha\n" * 1000, "sub/deep/b.bin": os.urandom(300_000), "sub/c.txt": b"c\n"}


@pytest.fixture
def committed(env, tmp_path):
    write_files(tmp_path / "src", FILES)
    assert af(env, "commit", "--dir", tmp_path / "src", NAME).returncode == 0


def _tree(root) -> dict:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            out[os.path.relpath(os.path.join(d, n), root)] = open(os.path.join(d, n), "rb").read()
    return out


def test_concurrent_gets_into_one_destination_do_not_collide(env, committed, tmp_path):
    dest = tmp_path / "out"
    write_files(dest, {"a.txt.artifactfs-tmp": b"mine, not a temp file\n"})
    for _ in range(3):
        results = af_many([(env, ["get", NAME, "--root", dest]) for _ in range(4)])
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        for name in ("a.txt", "sub/deep/b.bin"):  # fetched again each round
            os.unlink(dest / name)
    af(env, "get", NAME, "--root", dest)
    assert _tree(dest) == {**FILES, "a.txt.artifactfs-tmp": b"mine, not a temp file\n"}


def test_get_never_writes_through_a_symlink_below_root(env, committed, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    os.symlink(outside, dest / "sub")
    res = af(env, "get", NAME, "--root", dest)
    one_clear_line(res, 8, "symbolic link", "sub")
    assert os.listdir(outside) == []
    # a link where a file goes is replaced by the file, its target left alone
    os.unlink(dest / "sub")
    victim = outside / "victim.txt"
    victim.write_bytes(b"keep me\n")
    (dest / "a.txt").unlink(missing_ok=True)  # written before the failure (files go in parallel)
    os.symlink(victim, dest / "a.txt")
    assert af(env, "get", NAME, "--root", dest).returncode == 0
    assert not os.path.islink(dest / "a.txt") and _tree(dest) == FILES
    assert victim.read_bytes() == b"keep me\n"


def test_get_with_a_file_in_the_way_is_one_clear_line(env, committed, tmp_path):
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    one_clear_line(af(env, "get", NAME, "--root", afile), 2, "--root", "is a file")
    dest = tmp_path / "out"
    write_files(dest, {"sub": b"a file where a directory goes"})
    one_clear_line(af(env, "get", NAME, "--root", dest), 8, "not a directory", "sub")
    assert afile.read_bytes() == b"x" and (dest / "sub").read_bytes() == b"a file where a directory goes"
