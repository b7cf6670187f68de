"""Logging content equal to an older version makes no new version and moves `latest` (and the aliases
asked for) to the version that holds it, on every write path: `commit --dir`, `Artifact.save`,
artifactfs:// writes and a stage's commit. Version numbers are never used twice."""

import json
import os

import pytest

import artifactfs
from tests.fuse_util import run_cli

NAME = "acme/ml/roll"


def latest(cli, name=NAME) -> int:
    return json.loads(cli("show", f"{name}:latest", "--json").output)["version"]


def read(ref: str, path: str) -> bytes:
    with artifactfs.artifact(ref).get_entry(path).open("rb") as f:
        return f.read()


def test_commit_dir_rollback_moves_latest_and_aliases(cli, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text("one")
    assert cli("commit", "--dir", d, NAME).exit_code == 0
    (d / "a.txt").write_text("two")
    assert "v1 committed" in cli("commit", "--dir", d, NAME).output
    (d / "a.txt").write_text("one")
    res = cli("commit", "--dir", d, NAME, "--alias", "prod")
    assert res.exit_code == 0, res.output
    assert "content equals v0: latest -> v0 (was v1), prod -> v0; no new version" in res.output
    assert latest(cli) == 0
    assert json.loads(cli("show", f"{NAME}:prod", "--json").output)["version"] == 0
    assert read(f"{NAME}:latest", "a.txt") == b"one"
    # a new change after the rollback takes the next number never used (v2), built on what latest holds
    (d / "b.txt").write_text("b")
    res = cli("commit", "--dir", d, NAME, "--json")
    out = json.loads(res.output)
    assert out["version"] == 2 and out["created"] is True
    assert latest(cli) == 2
    # deleting a file so that the tree equals an older version rolls back too
    (d / "b.txt").unlink()
    res = cli("commit", "--dir", d, NAME, "--json")
    out = json.loads(res.output)
    assert out["created"] is False and out["version"] == 0 and out["latest_was"] == 2
    assert latest(cli) == 0
    assert [line.split("\t")[0] for line in cli("ls", NAME).output.splitlines()[1:]] == [
        "v0", "v1", "v2"]


def test_save_rollback(env, tmp_path):
    for content in ("one", "two", "one"):
        art = artifactfs.Artifact(NAME, type="dataset")
        (tmp_path / "a.txt").write_text(content)
        art.add_file(str(tmp_path / "a.txt"))
        art.save()
    assert art.version == "v0"
    assert artifactfs.artifact(f"{NAME}:latest").version == "v0"
    assert read(f"{NAME}:latest", "a.txt") == b"one"


def test_fsspec_rollback_and_next_write(fs, cli):
    path = f"{NAME}:latest/a.txt"
    for content in (b"one", b"two", b"one"):
        fs.pipe_file(path, content)
    assert fs.cat_file(path) == b"one"
    assert latest(cli) == 0
    # the next write is built on v0 (what latest holds) and numbered past v1
    fs.pipe_file(f"{NAME}:latest/b.txt", b"b")
    assert latest(cli) == 2
    assert sorted(fs.ls(f"{NAME}:v2", detail=False)) == [f"{NAME}:v2/a.txt", f"{NAME}:v2/b.txt"]
    assert fs.cat_file(f"{NAME}:v2/a.txt") == b"one"


def test_stage_commit_rollback(stage_env, stages, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text("one")
    run_cli(["commit", "--dir", d, NAME], stage_env, check=True)
    st = stages(NAME)
    with open(st.path("a.txt"), "w") as f:
        f.write("two")
    res = run_cli(["commit", st.mountpoint], stage_env, check=True)
    assert "v1 committed" in res.stdout
    with open(st.path("a.txt"), "w") as f:
        f.write("one")
    res = run_cli(["commit", st.mountpoint, "--alias", "good"], stage_env, check=True)
    assert "content equals v0: latest -> v0 (was v1), good -> v0; no new version" in res.stdout, res.stdout
    show = run_cli(["show", f"{NAME}:latest", "--json"], stage_env, check=True)
    assert json.loads(show.stdout)["version"] == 0
    # the stage continues from v0: its next change is v2, on top of "one"
    with open(st.path("c.txt"), "w") as f:
        f.write("c")
    res = run_cli(["commit", st.mountpoint, "--json"], stage_env, check=True)
    assert json.loads(res.stdout)["version"] == 2
    out = tmp_path / "out"
    run_cli(["get", f"{NAME}:latest", "--root", out], stage_env, check=True)
    assert (out / "a.txt").read_text() == "one" and (out / "c.txt").read_text() == "c"
    assert os.path.exists(st.path("c.txt"))


@pytest.mark.parametrize("hint", ["x", -5, True, 10**30, 2.5])
def test_a_hostile_next_in_latest_is_not_believed(cli, client, tmp_path, hint):
    """`next` in latest's record comes from the store: one that is not a whole number, or lies past what
    a rollback can reach, is ignored; the next version still takes the next free number."""
    from artifactfs import layout
    from artifactfs.names import parse_artifact_name

    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text("one")
    assert cli("commit", "--dir", d, NAME).exit_code == 0
    key = layout.alias_key(parse_artifact_name(NAME), "latest")
    client.store.put(key, json.dumps({"version": 0, "next": hint}).encode())
    (d / "a.txt").write_text("two")
    res = cli("commit", "--dir", d, NAME, "--json")
    assert res.exit_code == 0 and json.loads(res.output)["version"] == 1, res.output
