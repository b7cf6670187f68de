"""Security: a read-only S3 identity can read but changes nothing; mounts are private to the mounting
user unless --allow-other; the cache and stage directories are closed to other users; credentials never
appear in messages or logs. A second user is created for the test (skipped if that is impossible)."""

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid

import pytest

from tests.fault_util import af, af_many, af_ok, one_clear_line, tally, tree_digests, write_files
from tests.fuse_util import Mount
from tests.seaweed import ADMIN, READER
from tests.staging_util import StageMount

NAME = "acme/vision/secure"
OTHER_USER = "afs-other"


# ---- a read-only identity -------------------------------------------------------------------------
@pytest.fixture
def reader_env(seaweed, tmp_path):
    """(admin env, reader env) on one fresh prefix of the shared SeaweedFS."""
    base = dict(os.environ, ARTIFACTFS_STORE=f"s3://artifactfs-test/{uuid.uuid4().hex}",
                AWS_ENDPOINT_URL=seaweed.endpoint, AWS_DEFAULT_REGION="us-east-1",
                ARTIFACTFS_CONFIG=str(tmp_path / "none.toml"), ARTIFACTFS_TIMEOUT="10",
                ARTIFACTFS_STAGE_DIR=str(tmp_path / "stages"))
    admin = dict(base, AWS_ACCESS_KEY_ID=ADMIN[0], AWS_SECRET_ACCESS_KEY=ADMIN[1],
                 ARTIFACTFS_CACHE_DIR=str(tmp_path / "admin-cache"))
    reader = dict(base, AWS_ACCESS_KEY_ID=READER[0], AWS_SECRET_ACCESS_KEY=READER[1],
                  ARTIFACTFS_CACHE_DIR=str(tmp_path / "reader-cache"))
    return admin, reader


def all_keys(seaweed, env) -> dict:
    bucket, _, prefix = env["ARTIFACTFS_STORE"][len("s3://"):].partition("/")
    client = seaweed.client(ADMIN)
    keys = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            keys[obj["Key"]] = obj["ETag"]
    return keys


def test_read_only_identity_reads_and_changes_nothing(seaweed, reader_env, tmp_path):
    admin, reader = reader_env
    src = tmp_path / "src"
    write_files(src, {"a.txt": b"alpha\n", "d/b.bin": os.urandom(30_000)})
    af_ok(admin, "commit", "--dir", src, NAME, "--alias", "prod")
    other = tmp_path / "other"
    write_files(other, {"new.txt": b"never stored\n"})
    before = all_keys(seaweed, admin)

    # reading works: ls, show, get, mount
    assert json.loads(af_ok(reader, "show", f"{NAME}:prod", "--json"))["version"] == 0
    af_ok(reader, "get", NAME, "--root", tmp_path / "got")
    assert tree_digests(tmp_path / "got") == tree_digests(src)
    m = Mount(tmp_path / "mp", reader)
    try:
        assert tree_digests(m.path(f"{NAME}:prod")) == tree_digests(src)
    finally:
        m.close()

    # every change is refused with one clear line (exit 6) and leaves nothing behind
    changes = [("commit", "--dir", other, NAME), ("commit", "--dir", other, "acme/vision/brand-new"),
               ("alias", "set", f"{NAME}:v0", "best"), ("alias", "rm", NAME, "prod"),
               ("update", f"{NAME}:v0", "-m", "edited"), ("rm", f"{NAME}:v0", "--force"),
               ("ttl", f"{NAME}:v0", "1d"), ("gc", "--grace", "0")]
    for res in af_many([(reader, args) for args in changes]):
        one_clear_line(res, 6, "refused", "check the credentials and their permissions")
    st = StageMount(tmp_path / "stage", reader, NAME)  # staging reads the base with read rights ...
    try:
        write_files(st.mountpoint, {"staged.txt": b"staged\n"})
        one_clear_line(af(reader, "commit", st.mountpoint), 6, "refused")  # ... but cannot commit
        assert open(st.path("staged.txt"), "rb").read() == b"staged\n"  # and keeps its content
    finally:
        st.close()
    assert all_keys(seaweed, admin) == before
    assert json.loads(af_ok(admin, "verify", "--all", "--json"))["versions"] == 1
    tally("read-only identity", faults=len(changes) + 1)


# ---- a second user --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_user():
    if os.geteuid() != 0:
        pytest.skip("needs root to create and switch to a second user")
    try:
        pw = pwd.getpwnam(OTHER_USER)
    except KeyError:
        res = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot create user {OTHER_USER}: {res.stderr.strip()}")
        pw = pwd.getpwnam(OTHER_USER)
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    return pw.pw_uid, pw.pw_gid


def as_user(user, *cmd) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", *map(str, cmd)],
                          capture_output=True, timeout=30)


@pytest.fixture
def shared_dir():
    """A directory every user may enter (pytest's tmp_path is private to root)."""
    path = tempfile.mkdtemp(prefix="artifactfs-shared-")  # under TMPDIR: .ci/run checks its mounts
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        for name in os.listdir(path):
            sub = os.path.join(path, name)
            if os.path.ismount(sub):
                subprocess.run(["fusermount3", "-uz", sub], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("backend", ["local"])  # who may enter a mount does not depend on the store
def test_mount_is_private_unless_allow_other(env, other_user, shared_dir, tmp_path):
    src = tmp_path / "src"
    write_files(src, {"a.txt": b"for the mounting user\n"})
    af_ok(env, "commit", "--dir", src, NAME)
    private = Mount(os.path.join(shared_dir, "private"), env)
    try:
        listing = as_user(other_user, "ls", private.mountpoint)
        assert listing.returncode != 0 and b"Permission denied" in listing.stderr, listing
        reading = as_user(other_user, "cat", private.path(NAME + ":v0", "a.txt"))
        assert reading.returncode != 0 and b"a.txt" not in reading.stdout
        assert open(private.path(NAME + ":v0", "a.txt"), "rb").read() == b"for the mounting user\n"  # the owner reads
    finally:
        private.close()
    opened = Mount(os.path.join(shared_dir, "open"), env, "--allow-other")
    try:
        assert as_user(other_user, "ls", opened.mountpoint).stdout.split() == [b"acme"]
        res = as_user(other_user, "cat", opened.path(NAME + ":v0", "a.txt"))
        assert res.returncode == 0 and res.stdout == b"for the mounting user\n", res
        res = as_user(other_user, "sh", "-c", f"echo x > '{opened.path(NAME + ':v0', 'new.txt')}'")
        assert res.returncode != 0  # still read-only for everyone
    finally:
        opened.close()
    tally("mount privacy", faults=3)


@pytest.mark.parametrize("backend", ["local"])
def test_cache_and_stages_are_closed_to_other_users(env, other_user, shared_dir, monkeypatch):
    """Cache and stage directories live where the user says (here: a directory everyone may enter),
    and are 0700 themselves, so their content (pieces of private data, staged files) stays private."""
    cache = os.path.join(shared_dir, "cache")
    stages = os.path.join(shared_dir, "stages")
    monkeypatch.setenv("ARTIFACTFS_CACHE_DIR", cache)
    monkeypatch.setenv("ARTIFACTFS_STAGE_DIR", stages)
    env = dict(os.environ)
    src = os.path.join(shared_dir, "src")
    write_files(src, {"secret.txt": b"top secret\n"})
    os.chmod(src, 0o700)
    af_ok(env, "commit", "--dir", src, NAME)
    af_ok(env, "get", NAME, "--root", os.path.join(shared_dir, "got"))  # fills the cache
    st = StageMount(os.path.join(shared_dir, "stage"), env, NAME)
    try:
        write_files(st.mountpoint, {"draft.txt": b"staged secret\n"})
        stage_dir = os.path.join(stages, st.id)
        for path in (cache, os.path.join(cache, "pieces"), stages, stage_dir, os.path.join(stage_dir, "data")):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert mode == 0o700, (path, oct(mode))
        for path in (cache, stages, stage_dir):
            res = as_user(other_user, "ls", path)
            assert res.returncode != 0 and b"Permission denied" in res.stderr, (path, res)
        res = as_user(other_user, "grep", "-rl", "secret", cache, stages)
        assert b"secret" not in res.stdout
        assert as_user(other_user, "ls", st.mountpoint).returncode != 0  # the staging mount is private too
    finally:
        st.close()
    tally("cache and stage privacy", faults=4)


# ---- credentials ----------------------------------------------------------------------------------
def test_credentials_never_appear_in_messages_or_logs(seaweed, reader_env, tmp_path):
    admin, reader = reader_env
    src = tmp_path / "src"
    write_files(src, {"a.txt": b"alpha\n"})
    wrong = dict(admin, AWS_SECRET_ACCESS_KEY="canary-SECRET-" + uuid.uuid4().hex)
    os.makedirs(tmp_path / "bad-mp")
    unreachable = dict(admin, AWS_ENDPOINT_URL="http://127.0.0.1:9", ARTIFACTFS_TIMEOUT="2")
    calls = [(wrong, ("commit", "--dir", src, NAME)), (wrong, ("ls", "acme")), (wrong, ("mount", tmp_path / "bad-mp")),
             (reader, ("commit", "--dir", src, NAME)), (unreachable, ("ls",)), (admin, ("show", "acme/vision/nope:v0"))]
    outputs = [res.stdout + res.stderr for res in af_many(calls)]
    af_ok(admin, "commit", "--dir", src, NAME)
    m = Mount(tmp_path / "mp", admin, "--debug")  # --debug logs every request
    try:
        assert open(m.path(f"{NAME}:v0", "a.txt"), "rb").read() == b"alpha\n"
        with open(f"/proc/{m.pid}/cmdline", "rb") as f:
            outputs.append(f.read().decode(errors="replace"))
    finally:
        m.close()
    outputs.append(m.log_text())
    st = StageMount(tmp_path / "stage", admin, NAME)
    try:
        write_files(st.mountpoint, {"b.txt": b"beta\n"})
        outputs.append(af_ok(admin, "commit", st.mountpoint))
    finally:
        st.close()
    outputs.append(st.log_text())
    for name in os.listdir(os.path.join(admin["ARTIFACTFS_CACHE_DIR"], "logs")):
        with open(os.path.join(admin["ARTIFACTFS_CACHE_DIR"], "logs", name), errors="replace") as f:
            outputs.append(f.read())
    text = "\n".join(outputs)
    assert "refused" in text and "unreachable" in text  # the failures did happen, and were explained
    for secret in (ADMIN[1], READER[1], wrong["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in text
    tally("credentials in messages and logs", faults=5)
