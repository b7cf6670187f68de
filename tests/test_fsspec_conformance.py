"""fsspec's own conformance classes (fsspec/tests/abstract) run on `artifactfs://`: each test writes
into the `:latest` of an artifact of its own, so every write there is a commit of the next version.
Every test passes; none is skipped. The paths' rules do not depend on the store, so they run on the
local one (tests/test_fsspec.py runs copies, moves and exclusive writes on both)."""

import posixpath
import uuid

import pytest
from fsspec.tests import abstract

from artifactfs.fsspec import ArtifactFileSystem


class ArtifactFixtures(abstract.AbstractFixtures):
    @pytest.fixture
    def fs(self, env):
        ArtifactFileSystem.clear_instance_cache()
        yield ArtifactFileSystem()
        ArtifactFileSystem.clear_instance_cache()

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self):
        return f"acme/conformance/t{uuid.uuid4().hex[:12]}:latest"

    @pytest.fixture
    def supports_empty_directories(self):
        # mkdir makes nothing: a directory exists through what is in it (a version records an empty
        # directory only when one is committed, as `put` of a tree with one does)
        return False


@pytest.fixture(params=["local"])
def backend(request):
    return request.param


class TestCopy(abstract.AbstractCopyTests, ArtifactFixtures):
    pass


class TestGet(abstract.AbstractGetTests, ArtifactFixtures):
    pass


class TestPut(abstract.AbstractPutTests, ArtifactFixtures):
    pass


class TestOpen(abstract.AbstractOpenTests, ArtifactFixtures):
    pass


class TestPipe(abstract.AbstractPipeTests, ArtifactFixtures):
    pass
