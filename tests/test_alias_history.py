"""Alias history: every move is logged (set, move, remove, latest on a commit, a rollback, a delete),
a move and its history cannot disagree after kill -9, concurrent movers leave one unbroken history,
stores from before history keep working, and past positions are paths everywhere."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from artifactfs import layout
from artifactfs.errors import ObjectNotFound
from artifactfs.manifest import canonical_json
from tests.conftest import ALL_BACKENDS
from tests.fault_util import af_at, one_clear_line

NAME = "acme/p/model"


def run(env, *args):
    return subprocess.run(["artifactfs", *map(str, args)], env=env, capture_output=True, text=True, timeout=120)


def commit(env, tmp_path, content: str) -> int:
    d = tmp_path / f"src-{content}"
    d.mkdir(exist_ok=True)
    (d / "weights.txt").write_text(content)
    res = run(env, "commit", "--dir", d, NAME, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["version"]


def log(env, alias: str) -> list[dict]:
    res = run(env, "alias", "log", f"{NAME}:{alias}", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)[::-1]  # oldest first


def assert_unbroken(entries: list[dict]) -> None:
    """seq 1, 2, ... with no gap; each entry's `from` is the version before it; times never go back."""
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), entries
    for before, after in zip(entries, entries[1:], strict=False):
        assert after["from"] == before["version"], (before, after)
        assert after["at"] >= before["at"]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_every_move_is_logged(env, tmp_path):
    v0, v1, v2 = (commit(env, tmp_path, c) for c in ("a", "b", "c"))
    assert run(env, "alias", "set", f"{NAME}:v{v0}", "prod").returncode == 0
    assert run(env, "alias", "set", f"{NAME}:v{v2}", "prod").returncode == 0
    assert run(env, "alias", "rm", NAME, "prod").returncode == 0
    assert run(env, "alias", "set", f"{NAME}:v{v1}", "prod").returncode == 0
    prod = log(env, "prod")
    assert [(e["version"], e["from"]) for e in prod] == [(v0, None), (v2, v0), (None, v2), (v1, None)]
    assert all(e["by"] and e["at"] for e in prod)
    assert_unbroken(prod)
    assert commit(env, tmp_path, "a") == v0  # the same content again: a rollback moves latest back
    assert run(env, "rm", f"{NAME}:v{v0}", "--force").returncode == 0  # latest moves to the newest live
    latest = log(env, "latest")
    assert [e["version"] for e in latest] == [v0, v1, v2, v0, v2]
    assert_unbroken(latest)
    table = run(env, "alias", "log", f"{NAME}:prod").stdout.splitlines()
    assert table[0].split("\t") == ["seq", "version", "at", "by", "from"] and table[1].startswith(f"4\tv{v1}\t")
    one_clear_line(run(env, "alias", "log", f"{NAME}:never"), 3, "has no alias 'never'")


def test_a_move_killed_before_its_history_copy_is_still_logged(env, tmp_path):
    """kill -9 right after the alias record is written, before its copy into the history: the move is
    in the log (the record is its newest entry), and the next move copies it."""
    v0, v1, v2 = (commit(env, tmp_path, c) for c in ("a", "b", "c"))
    assert run(env, "alias", "set", f"{NAME}:v{v0}", "prod").returncode == 0
    killed = af_at(env, "after:aliases/prod.json", "kill", "alias", "set", f"{NAME}:v{v1}", "prod")
    assert killed.returncode == -9, killed.stderr
    from artifactfs.client import Client

    client = Client()
    try:
        name = client.artifact_name(NAME)
        assert client.repo.alias_target(name, "prod")[0] == v1  # the move happened
        with pytest.raises(ObjectNotFound):
            client.store.get(layout.alias_history_key(name, "prod", 2))  # its copy did not
    finally:
        client.close()
    assert [e["version"] for e in log(env, "prod")] == [v0, v1]
    assert run(env, "alias", "set", f"{NAME}:v{v2}", "prod").returncode == 0
    entries = log(env, "prod")
    assert [e["version"] for e in entries] == [v0, v1, v2]
    assert_unbroken(entries)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_eight_concurrent_movers_leave_one_unbroken_history(env, tmp_path):
    versions = [commit(env, tmp_path, c) for c in "abcd"]
    moves_each = 4
    script = ("import sys\nfrom artifactfs.client import Client\nc = Client()\nname = c.artifact_name(sys.argv[1])\n"
              "for v in sys.argv[2:]:\n    c.repo.set_alias(name, 'prod', int(v))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, NAME,
                               *(str(versions[(i + k) % len(versions)]) for k in range(moves_each))], env=env,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    entries = log(env, "prod")
    assert len(entries) == 8 * moves_each  # every move, once
    assert_unbroken(entries)


def test_a_store_from_before_history_keeps_working(env, tmp_path, client):
    """An alias record without history (as every store had) is the history's entry 0, dated by its
    object; the first move copies it and goes on from there."""
    v0, v1 = commit(env, tmp_path, "a"), commit(env, tmp_path, "b")
    name = client.artifact_name(NAME)
    client.store.put(layout.alias_key(name, "prod"), canonical_json({"version": v0}))  # as written before
    entries = log(env, "prod")
    assert [(e["seq"], e["version"]) for e in entries] == [(0, v0)] and entries[0]["at"]
    assert run(env, "alias", "set", f"{NAME}:v{v1}", "prod").returncode == 0
    entries = log(env, "prod")
    assert [(e["seq"], e["version"], e["from"]) for e in entries] == [(0, v0, None), (1, v1, v0)]
    assert run(env, "show", f"{NAME}:prod~1").stdout.startswith(f"{NAME}:v{v0}")


def test_past_positions_resolve_everywhere(env, tmp_path, fs):
    import artifactfs

    v0 = commit(env, tmp_path, "a")
    assert run(env, "alias", "set", f"{NAME}:v{v0}", "prod").returncode == 0
    time.sleep(1.1)  # `then`, cut to the second, still comes after the first move
    then = now()
    time.sleep(0.05)
    v1 = commit(env, tmp_path, "b")
    assert run(env, "alias", "set", f"{NAME}:v{v1}", "prod").returncode == 0
    before_all = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    compact = then[:19].replace("-", "").replace(":", "") + "Z"  # 20261206T101500Z: no colons
    # the CLI and the Python API
    for ref, version in ((f"{NAME}:prod@{then}", v0), (f"{NAME}:prod~1", v0), (f"{NAME}:prod", v1),
                         (f"{NAME}@{then}", v0), (f"{NAME}:latest~1", v0), (f"{NAME}:prod@{compact}", v0)):
        assert run(env, "show", ref, "--json").stdout and \
            json.loads(run(env, "show", ref, "--json").stdout)["version"] == version, ref
        assert artifactfs.artifact(ref).version == f"v{version}", ref
    one_clear_line(run(env, "show", f"{NAME}:prod@{before_all}"), 3, "did not exist at", "history starts")
    one_clear_line(run(env, "get", f"{NAME}@{before_all}", "--root", tmp_path / "x"), 3, "had no version at")
    one_clear_line(run(env, "show", f"{NAME}:prod~5"), 3, "earlier position")
    one_clear_line(run(env, "show", f"{NAME}:prod@yesterday"), 2, "invalid")
    # artifactfs://, with and without the colon
    assert fs.cat_file(f"{NAME}:prod@{then}/weights.txt") == b"a"
    assert fs.cat_file(f"{NAME}/prod~1/weights.txt") == b"a"
    assert fs.cat_file(f"{NAME}@{then}/weights.txt") == b"a"
    assert fs.info(f"{NAME}:prod@{then}")["version"] == f"v{v0}"
    with pytest.raises(FileNotFoundError, match="did not exist"):
        fs.cat_file(f"{NAME}:prod@{before_all}/weights.txt")


@pytest.mark.parametrize("backend", ["local"])
def test_past_positions_are_folders_in_the_mount(env, tmp_path):
    from tests.fuse_util import Mount

    v0 = commit(env, tmp_path, "a")
    assert run(env, "alias", "set", f"{NAME}:v{v0}", "prod").returncode == 0
    time.sleep(0.05)
    then = now()
    time.sleep(0.05)
    v1 = commit(env, tmp_path, "b")
    assert run(env, "alias", "set", f"{NAME}:v{v1}", "prod").returncode == 0
    m = Mount(tmp_path / "mp", env)
    try:
        project = m.path("acme/p")
        for spelled in (f"model:prod@{then}", "model:prod~1", f"model@{then}", f"model/prod@{then}", "model/prod~1",
                        "model/latest~1"):
            folder = os.path.join(project, spelled)
            with open(os.path.join(folder, "weights.txt")) as f:
                assert f.read() == "a", spelled
            assert os.getxattr(folder, "user.artifactfs.version").decode() == f"v{v0}", spelled
        with pytest.raises(FileNotFoundError):
            os.listdir(os.path.join(project, "model:prod@2000-01-01"))
        with pytest.raises(FileNotFoundError):
            os.listdir(os.path.join(project, "model:prod~9"))
    finally:
        m.close()
