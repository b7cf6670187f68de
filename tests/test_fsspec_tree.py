"""artifactfs:// and what a version holds besides files: empty directories are directories everywhere
(ls, find, walk, info, cat_file), and links follow the mount's rules (a link within the version
resolves, also in the middle of a path; one that leaves it is never followed; `get` recreates links
as links, as `artifactfs get` does). Both stores."""

import os

import pytest

NAME = "acme/vision/tree"
V = f"{NAME}:v0"


@pytest.fixture
def tree(cli, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "d" / "b.txt").write_text("bee")
    (src / "a.txt").write_text("hello")
    os.symlink("a.txt", src / "flink")
    os.symlink("d", src / "dlink")
    os.symlink("../outside", src / "away")
    res = cli("commit", "--dir", src, NAME)
    assert res.exit_code == 0, res.output
    return src


def test_an_empty_directory_is_a_directory(fs, tree):
    assert fs.ls(f"{V}/empty") == []
    assert fs.info(f"{V}/empty")["type"] == "directory" and fs.isdir(f"{V}/empty")
    files = fs.find(V)
    assert f"{V}/empty" not in files and "" not in [f.rsplit("/", 1)[-1] for f in files]
    assert f"{V}/empty" in fs.find(V, withdirs=True)
    walked = {root: (sorted(dirs), sorted(files)) for root, dirs, files in fs.walk(V)}
    assert walked[f"{V}/empty"] == ([], [])
    with pytest.raises(IsADirectoryError):
        fs.cat_file(f"{V}/empty")
    with pytest.raises(IsADirectoryError):
        fs.cat_file(f"{V}/d")


def test_links_resolve_within_the_version_and_never_leave_it(fs, tree):
    assert fs.cat_file(f"{V}/flink") == b"hello"
    info = fs.info(f"{V}/flink")
    # as LocalFileSystem says of a symlink: the type of what it leads to, islink and the destination
    assert info["type"] == "file" and info["islink"] and info["destination"] == "a.txt" and info["size"] == 5
    assert fs.isfile(f"{V}/flink") and fs.cat_file(f"{V}/dlink/b.txt") == b"bee"  # a link in the middle
    assert fs.ls(f"{V}/dlink", detail=False) == [f"{V}/dlink/b.txt"]
    # a link to a directory or out of the version is "other": walk, find and get never descend into it
    assert fs.info(f"{V}/dlink")["type"] == "other" and fs.info(f"{V}/dlink")["islink"]
    assert fs.info(f"{V}/away")["type"] == "other" and fs.info(f"{V}/away")["size"] == 0
    with pytest.raises(FileNotFoundError, match="leaves the version"):
        fs.cat_file(f"{V}/away")
    # links are listed, not descended into: find names each once
    assert sorted(fs.find(V)) == sorted(f"{V}/{p}" for p in ("a.txt", "away", "d/b.txt", "dlink", "flink"))


def test_get_recreates_the_tree_with_its_links(fs, tree, tmp_path):
    out = tmp_path / "out"
    fs.get(f"{V}/", str(out) + "/", recursive=True)
    assert (out / "a.txt").read_text() == "hello" and (out / "d" / "b.txt").read_text() == "bee"
    assert (out / "empty").is_dir() and not os.listdir(out / "empty")
    for link, target in (("flink", "a.txt"), ("dlink", "d"), ("away", "../outside")):
        assert os.path.islink(out / link) and os.readlink(out / link) == target


def test_every_write_path_keeps_the_same_tree(fs, cli, tmp_path, env):
    """commit --dir, Artifact.add_dir, draft add --dir and artifactfs:// put of one directory (links to
    a directory and to a file, a dangling link, an empty directory) make the same entries."""
    import json

    import artifactfs

    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "logs").mkdir()
    (src / "d" / "b.txt").write_text("bee")
    (src / "a.txt").write_text("hello")
    os.symlink("a.txt", src / "flink")
    os.symlink("d", src / "dlink")
    os.symlink("nowhere", src / "dangling")
    assert cli("commit", "--dir", src, "acme/t/by-commit").exit_code == 0
    art = artifactfs.Artifact("acme/t/by-api", type="dataset")
    art.add_dir(str(src))
    art.save()
    res = cli("draft", "add", "acme/t/by-draft", "d1", "--dir", src)
    assert res.exit_code == 0, res.output + res.stderr
    assert cli("draft", "finish", "acme/t/by-draft", "d1").exit_code == 0
    fs.put(f"{src}/", "acme/t/by-fsspec:latest/", recursive=True)  # the slash: its content

    def entries(name):
        rows = json.loads(cli("files", f"{name}:latest", "--json").output)
        return sorted((r["path"], r.get("kind", "file"), r.get("target"), r.get("digest")) for r in rows)

    want = entries("acme/t/by-commit")
    assert ("dlink", "link", "d", None) in want and ("logs", "dir", None, None) in want
    assert ("dangling", "link", "nowhere", None) in want and ("d/e", "dir", None, None) in want
    for name in ("acme/t/by-api", "acme/t/by-draft", "acme/t/by-fsspec"):
        assert entries(name) == want, name
