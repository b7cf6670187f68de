"""artifactfs:// writes racing other writers: a write that is overtaken rebases onto the newest version
until it lands, so every write lands, each in exactly one version, and no version lacks an earlier
write. Real processes, both stores."""

import os
import subprocess
import sys

import fsspec
import pytest

from artifactfs import repo as repo_mod
from tests.conftest import ALL_BACKENDS

NAME = "acme/ml/race"

WRITER = """
import sys, fsspec
fs = fsspec.filesystem("artifactfs")
name, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    fs.pipe_file(f"{name}:latest/{tag}/{i}.txt", f"{tag} {i}".encode())
"""


def writers(env, count: int, writes: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", WRITER, NAME, f"w{i}", str(writes)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(count)]


def wait_all(procs) -> None:
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]


def versions_as_file_sets(fs) -> list[set[str]]:
    out = []
    for v in sorted(int(row["version"][1:]) for row in fs.ls(NAME) if "alias" not in row):
        out.append({p.split("/", 4)[4] for p in fs.find(f"{NAME}/v{v}")})
    return out


def assert_linear(history: list[set[str]], expected: set[str]) -> None:
    """Each version is the one before plus exactly one new file, and the last holds every write."""
    for before, after in zip(history, history[1:], strict=False):
        assert before < after and len(after - before) == 1, (sorted(before), sorted(after))
    assert history[-1] == expected


def test_big_put_overtaken_by_ten_commits_lands(fs, env, tmp_path, monkeypatch):
    fs.pipe_file(f"{NAME}:latest/seed.txt", b"seed")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    real_commit = repo_mod.Repository.commit
    overtaken = []

    def commit(self, *args, **kwargs):  # the first attempt is overtaken by 10 commits of another process
        if not overtaken:
            overtaken.append(True)
            wait_all(writers(env, 1, 10))
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(repo_mod.Repository, "commit", commit)
    fs.put(str(big), f"{NAME}:latest/data/big.bin")
    history = versions_as_file_sets(fs)
    assert len(history) == 12
    assert_linear(history, {"seed.txt", "data/big.bin", *(f"w0/{i}.txt" for i in range(10))})
    assert fs.cat_file(f"{NAME}:latest/data/big.bin") == big.read_bytes()


def test_four_processes_ten_writes_each_all_land(fs, env):
    wait_all(writers(env, 4, 10))
    history = versions_as_file_sets(fs)
    assert len(history) == 40
    assert_linear(history, {f"w{w}/{i}.txt" for w in range(4) for i in range(10)})
    assert fs.cat_file(f"{NAME}:latest/w3/9.txt") == b"w3 9"


def test_a_child_forked_inside_a_transaction_is_told_its_writes_would_be_lost(fs):
    """The parent's transaction is the parent's: a forked child that writes through the instance it
    inherited gets a clear error instead of writes that nobody ever commits; the parent's own version
    lands as usual."""
    with fs.transaction:
        fs.pipe_file(f"{NAME}:latest/from-parent.txt", b"parent")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what the write did, then leave without running the parent's code
            try:
                fs.pipe_file(f"{NAME}:latest/from-child.txt", b"child")
                said = "wrote"
            except OSError as exc:
                said = str(exc)
            os.write(write_end, said.encode())
            os._exit(0)
        os.close(write_end)
        said = os.read(read_end, 4096).decode()
        os.close(read_end)
        os.waitpid(pid, 0)
    assert "forked inside its parent's `with fs.transaction:`" in said and "draft" in said, said
    assert fs.find(f"{NAME}:latest") == [f"{NAME}:latest/from-parent.txt"]


@pytest.mark.parametrize("options, named", [
    ({"cache_size": True}, "storage option 'cache_size' must be a number"),
    ({"cache_size": "lots"}, "storage option 'cache_size': invalid size 'lots'"),
    ({"alias_ttl": -1}, "storage option 'alias_ttl'"),
    ({"alias_ttl": float("nan")}, "storage option 'alias_ttl'"),
    ({"timeout": 0}, "storage option 'timeout'"),
    ({"endpoint_url": "http://127.0.0.1:70000"}, "storage option 'endpoint_url'"),
    ({"artifact_type": "bad type"}, "storage option 'artifact_type'"),
    ({"cache_sise": "1G"}, "no storage option 'cache_sise'"),
])
@pytest.mark.parametrize("backend", ["local"])
def test_storage_options_are_checked_and_named(env, options, named):
    with pytest.raises(ValueError) as info:
        fsspec.filesystem("artifactfs", skip_instance_cache=True, **options)
    assert named in str(info.value) and "--" not in str(info.value), str(info.value)


def test_a_write_after_a_commit_that_has_not_moved_latest_yet_builds_on_it(fs, env, tmp_path):
    """A commit killed (or still running) between its version record and moving `latest`: the artifact
    has v0 and no latest. A write then builds on v0 (v1 = v0 plus the write), never on nothing."""
    from tests.fault_util import af_at

    src = tmp_path / "src"
    src.mkdir()
    (src / "first.txt").write_text("first")
    res = af_at(env, "latest", "kill", "commit", "--dir", src, NAME)
    assert res.returncode == -9, res.stderr
    fs.pipe_file(f"{NAME}:latest/second.txt", b"second")
    assert versions_as_file_sets(fs) == [{"first.txt"}, {"first.txt", "second.txt"}]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend, moto's S3 beside SeaweedFS: what this module checks rests on the store's
    conditional writes and listings."""
    return request.param
