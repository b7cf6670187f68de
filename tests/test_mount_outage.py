"""A SeaweedFS outage in the middle of reading through the mount: EIO within the timeout, the daemon
stays up, and reads work again once the store is back. Uses its own SeaweedFS so the shared one
keeps running."""

import errno
import json
import os
import random
import time
import uuid

import pytest

from artifactfs.client import Client
from artifactfs.hashing import READ_BLOCK  # what one prefetch GET brings
from tests.fuse_util import Mount
from tests.seaweed import ADMIN, SeaweedServer

TIMEOUT = 3.0


@pytest.fixture
def own_seaweed(tmp_path):
    server = SeaweedServer(str(tmp_path / "weed"))
    server.start()
    server.create_bucket("outage")
    yield server
    server.stop()


def test_store_outage_mid_read(own_seaweed, tmp_path, monkeypatch):
    env = dict(os.environ, ARTIFACTFS_STORE=f"s3://outage/{uuid.uuid4().hex}", AWS_ENDPOINT_URL=own_seaweed.endpoint,
               AWS_ACCESS_KEY_ID=ADMIN[0], AWS_SECRET_ACCESS_KEY=ADMIN[1], AWS_DEFAULT_REGION="us-east-1",
               ARTIFACTFS_CACHE_DIR=str(tmp_path / "cache"), ARTIFACTFS_CONFIG=str(tmp_path / "none.toml"),
               ARTIFACTFS_TIMEOUT=str(TIMEOUT))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    content = random.Random(1).randbytes(4 * READ_BLOCK)
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(content)
    (src / "small.txt").write_bytes(b"small\n")
    client = Client()
    try:
        client.commit_dir(str(src), "acme/vision/bikes", "dataset")
    finally:
        client.close()

    m = Mount(tmp_path / "mp", env)
    try:
        big = m.path("acme/vision/bikes:v0/big.bin")
        fd = os.open(big, os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 0) == content[:4096]  # chunk 0 (and maybe 1, read ahead)
            own_seaweed.stop()
            start = time.monotonic()
            with pytest.raises(OSError) as exc:
                os.pread(fd, 4096, 3 * READ_BLOCK + 17)  # a chunk nobody fetched
            elapsed = time.monotonic() - start
            assert exc.value.errno == errno.EIO
            assert elapsed < TIMEOUT + 10, elapsed
            with pytest.raises(OSError):
                open(m.path("acme/vision/bikes:v0/small.txt"), "rb").read()
            assert os.path.ismount(m.mountpoint)  # the daemon stayed up
            stats = json.loads(os.getxattr(m.mountpoint, "user.artifactfs.stats"))  # the mount says why
            assert stats["store_errors"] >= 1 and stats["corrupt_pieces"] == 0, stats

            own_seaweed.start()
            deadline = time.monotonic() + 30
            while True:  # the first reads after a restart may still see SeaweedFS warming up
                try:
                    assert os.pread(fd, 4096, 3 * READ_BLOCK + 17) == content[3 * READ_BLOCK + 17:3 * READ_BLOCK + 4113]
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            assert open(m.path("acme/vision/bikes:v0/small.txt"), "rb").read() == b"small\n"
        finally:
            os.close(fd)
    finally:
        m.close()
