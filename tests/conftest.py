import os
import sys
import uuid

import pytest
from click.testing import CliRunner

from tests.seaweed import ADMIN, SeaweedServer

# Subprocesses run the `artifactfs` of the interpreter running the tests (e.g. the project's .venv).
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

BUCKET = "artifactfs-test"
# the S3 implementations: SeaweedFS for every test that takes a store; moto too for the store, commit,
# race and gc tests (their modules take ALL_BACKENDS)
S3_SERVERS = {"s3": "seaweed", "moto": "moto"}
ALL_BACKENDS = ["local", *S3_SERVERS]


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    server = SeaweedServer(str(tmp_path_factory.mktemp("seaweed")))
    server.start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    from tests.moto_s3 import MotoServer

    server = MotoServer(str(tmp_path_factory.mktemp("moto")))
    server.start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def backend(request):
    return request.param


@pytest.fixture
def store_url(request, backend, tmp_path):
    """A fresh, empty store on each backend: a directory, or a unique prefix in the test bucket."""
    if backend == "local":
        return str(tmp_path / "store")
    request.getfixturevalue(S3_SERVERS[backend])  # the server must be up
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


@pytest.fixture
def env(monkeypatch, tmp_path, store_url, request):
    """Environment for CLI and library calls: store, cache, S3 credentials, no user config."""
    monkeypatch.setenv("ARTIFACTFS_STORE", store_url)
    monkeypatch.setenv("ARTIFACTFS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ARTIFACTFS_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("ARTIFACTFS_TIMEOUT", "10")
    # references in tests live in the test's directory and on the loopback test server
    monkeypatch.setenv("ARTIFACTFS_REFERENCE_ROOTS", str(tmp_path))
    monkeypatch.setenv("ARTIFACTFS_REFERENCE_HOSTS", "127.0.0.1")
    for var in ("ARTIFACTFS_ENTITY", "ARTIFACTFS_PROJECT", "ARTIFACTFS_CACHE_SIZE"):
        monkeypatch.delenv(var, raising=False)
    if store_url.startswith("s3://"):
        server = request.getfixturevalue(S3_SERVERS[request.getfixturevalue("backend")])
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ADMIN[0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN[1])
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return dict(os.environ)


@pytest.fixture
def cli(env):
    """Run `artifactfs ARGS...` in-process; returns the click Result."""
    from artifactfs_cli.main import cli as cli_group

    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(cli_group, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


@pytest.fixture
def client(env):
    from artifactfs.client import Client

    c = Client()
    yield c
    c.close()


@pytest.fixture
def stage_env(env, tmp_path, monkeypatch):
    """`env` with stages kept in the test's directory."""
    monkeypatch.setenv("ARTIFACTFS_STAGE_DIR", str(tmp_path / "stages"))
    return dict(os.environ)


@pytest.fixture
def stages(stage_env, tmp_path):
    """Make staging mounts: `stages(REF, *args)`; all are unmounted at the end."""
    from tests.fuse_util import mount_factory
    from tests.staging_util import StageMount

    with mount_factory(StageMount, stage_env, tmp_path, "stage") as make:
        yield make


@pytest.fixture
def fs(env):
    """The artifactfs:// filesystem on the test's store."""
    import fsspec

    from artifactfs.fsspec import ArtifactFileSystem

    ArtifactFileSystem.clear_instance_cache()  # instances are cached by arguments, not by environment
    yield fsspec.filesystem("artifactfs")
    ArtifactFileSystem.clear_instance_cache()
