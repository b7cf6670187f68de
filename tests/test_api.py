"""The Python API: the examples of docs/PYTHON_API.md run as written, plus the rules around them."""

import os
import re

import pytest

import artifactfs
from artifactfs.errors import InvalidPath, NotFound, UsageError

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "PYTHON_API.md")


def doc_blocks() -> list[str]:
    with open(DOC) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


@pytest.fixture
def workdir(env, tmp_path, monkeypatch):
    from artifactfs.fsspec import ArtifactFileSystem

    ArtifactFileSystem.clear_instance_cache()  # fsspec.filesystem("artifactfs") of this test's store
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARTIFACTFS_REFERENCE_ROOTS")  # the documentation says where it is set
    exec(doc_blocks()[0], {})  # the documented setup: the files the examples use
    return tmp_path


def test_documented_examples_run(workdir, capsys):
    blocks = doc_blocks()
    assert len(blocks) >= 6
    namespace: dict = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"PYTHON_API.md block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"docs/PYTHON_API.md block {i + 1} failed: {exc!r}\n{code}") from exc
    assert "upstream" in capsys.readouterr().out  # the lineage example printed its graph


def test_naming_rules(workdir):
    art = artifactfs.Artifact("acme/p/names", type="dataset")
    assert art.add_file("checkpoints/model.h5") == "model.h5"
    assert art.add_file("checkpoints/model.h5", name="models/mymodel.h5") == "models/mymodel.h5"
    assert art.add_dir("images") == ["cat.png", "dog.png"]
    assert art.add_dir("images", name="images") == ["images/cat.png", "images/dog.png"]
    with pytest.raises(InvalidPath, match="already has an entry 'model.h5'"):
        art.add_file("checkpoints/model.h5")
    with pytest.raises(InvalidPath):
        art.add_file("labels.csv", name="../escape.csv")
    art.save()
    assert [e.path for e in art.files()] == ["cat.png", "dog.png", "images/cat.png", "images/dog.png",
                                             "model.h5", "models/mymodel.h5"]
    with pytest.raises(UsageError, match="immutable"):
        art.add_file("labels.csv")


def test_same_content_names_the_existing_version(workdir):
    first = artifactfs.Artifact("acme/p/same", type="dataset")
    first.add_file("labels.csv")
    first.save()
    second = artifactfs.Artifact("acme/p/same", type="dataset")
    second.add_file("labels.csv")
    second.save(aliases=["again"])
    assert second.version == "v0" and "again" in second.aliases


def test_api_errors(workdir):
    with pytest.raises(UsageError, match="no files"):
        artifactfs.Artifact("acme/p/empty", type="dataset").save()
    with pytest.raises(NotFound):
        artifactfs.artifact("acme/p/nothing:latest")
    with pytest.raises(UsageError, match="not committed"):
        artifactfs.Artifact("acme/p/x", type="dataset").files()
    with pytest.raises(artifactfs.errors.InvalidName):
        artifactfs.Artifact("nothing-but-a-name", type="dataset")  # no entity/project configured
    art = artifactfs.Artifact("acme/p/kept", type="dataset")
    art.add_file("labels.csv")
    art.save(aliases=["prod"])
    with pytest.raises(artifactfs.errors.Conflict, match="prod"):
        art.delete()
    art.delete(delete_aliases=True)
    with pytest.raises(NotFound):
        artifactfs.artifact("acme/p/kept:v0")


def test_listing_and_searching_across_projects(workdir):
    """artifacts/search/types over the whole store, an entity and a project; versions leave deleted
    ones out; bad paths and unknown artifacts are clear errors."""
    assert artifactfs.artifacts() == [] and artifactfs.types() == {}
    for name, kind in (("acme/vision/bikes", "dataset"), ("acme/text/corpus", "dataset"),
                       ("acme/text/tokenizer", "model"), ("beta/x/bikes", "dataset")):
        for n in range(2):
            art = artifactfs.Artifact(name, type=kind, metadata={"n": n})
            art.add_file("labels.csv", name=f"v{n}.csv")
            art.save(aliases=["best"] if n == 0 else ())
    assert [r.name for r in artifactfs.artifacts()] == ["acme/text/corpus", "acme/text/tokenizer", "acme/vision/bikes",
                                                        "beta/x/bikes"]
    assert [r.name for r in artifactfs.artifacts("acme", type="model")] == ["acme/text/tokenizer"]
    assert artifactfs.types("acme") == {"dataset": 2, "model": 1} and artifactfs.types("beta/x") == {"dataset": 1}
    assert [r.name for r in artifactfs.search("BIKES")] == ["acme/vision/bikes", "beta/x/bikes"]
    assert [r.name for r in artifactfs.search("bikes", path="beta")] == ["beta/x/bikes"]
    assert [r.name for r in artifactfs.search("best", type="model")] == ["acme/text/tokenizer"]  # an alias
    row = artifactfs.artifacts("acme/vision")[0]
    assert (row.versions, row.latest, row.aliases, row.entity, row.project) == (2, 1, {"best": 0, "latest": 1},
                                                                                 "acme", "vision")
    versions = artifactfs.versions("acme/vision/bikes")
    assert [(v.version, v.aliases, v.metadata, v.file_count) for v in versions] == [
        ("v1", ["latest"], {"n": 1}, 1), ("v0", ["best"], {"n": 0}, 1)]
    assert versions[0].created_at >= versions[1].created_at and versions[0].created_by
    artifactfs.artifact("acme/vision/bikes:v0").delete(delete_aliases=True)
    assert [v.version for v in artifactfs.versions("acme/vision/bikes")] == ["v1"]
    with pytest.raises(NotFound):
        artifactfs.versions("acme/vision/nothing")
    with pytest.raises(UsageError):
        artifactfs.artifacts("acme/vision/bikes")
    assert artifactfs.run_versions("no-such-run") == {"used": [], "produced": []}
