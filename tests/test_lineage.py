"""Lineage: commits record their run and exact input versions; `use` records consumers; the graph
is walked both ways from any version, through the CLI and the Python API."""

import json

from artifactfs import artifact


def commit(cli, tmp_path, ref, content, *args):
    d = tmp_path / f"src-{ref.replace('/', '_')}-{content}"
    d.mkdir()
    (d / "f.txt").write_text(content)
    res = cli("commit", ref, "--dir", d, *args)
    assert res.exit_code == 0, res.output + res.stderr
    return res


def test_lineage_both_ways(cli, client, tmp_path):
    commit(cli, tmp_path, "acme/ml/raw", "raw0", "--run", "ingest-1")
    commit(cli, tmp_path, "acme/ml/raw", "raw1", "--run", "ingest-2", "--alias", "clean")
    commit(cli, tmp_path, "acme/ml/model", "m0", "--run", "train-7", "--input", "acme/ml/raw:clean",
           "--type", "model")
    commit(cli, tmp_path, "acme/ml/raw", "raw2", "--run", "ingest-3")  # moves latest; the input stays v1
    assert cli("use", "acme/ml/model:latest", "--run", "eval-3").exit_code == 0
    commit(cli, tmp_path, "acme/ml/report", "r0", "--run", "eval-3", "--input", "acme/ml/model:v0",
           "--type", "result")

    record = client.resolve("acme/ml/model:v0")
    assert record.run == "train-7" and record.inputs == ["acme/ml/raw:v1"]  # resolved to the exact version
    shown = cli("show", "acme/ml/model:v0").output
    assert "  run:         train-7" in shown and "  inputs:      acme/ml/raw:v1" in shown

    res = cli("lineage", "acme/ml/raw:v1", "--json")
    graph = json.loads(res.output)
    assert graph["ref"] == "acme/ml/raw:v1"
    assert [r["run"] for r in graph["upstream"]] == ["ingest-2"]
    (train,) = graph["downstream"]
    assert train["run"] == "train-7" and [a["ref"] for a in train["artifacts"]] == ["acme/ml/model:v0"]
    (evaluation,) = train["artifacts"][0]["runs"]
    assert evaluation["run"] == "eval-3" and [a["ref"] for a in evaluation["artifacts"]] == ["acme/ml/report:v0"]

    text = cli("lineage", "acme/ml/report:latest").output
    assert "<- run eval-3" in text and "<- acme/ml/model:v0" in text and "<- run train-7" in text
    assert "<- acme/ml/raw:v1" in text

    shallow = json.loads(cli("lineage", "acme/ml/raw:v1", "--depth", "1", "--json").output)
    assert shallow["downstream"][0]["artifacts"][0]["runs"] == []

    # the Python API walks the same graph
    model = artifact("acme/ml/model:v0", client=client)
    assert model.logged_by() == "train-7"
    assert model.used_by() == ["eval-3"]
    assert [a.qualified_name for a in model.inputs()] == ["acme/ml/raw:v1"]
    assert model.lineage(depth=1).to_json()["downstream"][0]["run"] == "eval-3"


def test_lineage_errors(cli, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "x").write_text("x")
    res = cli("commit", "acme/ml/a", "--dir", d, "--input", "acme/ml/missing:v0", "--run", "r1")
    assert res.exit_code == 3 and "missing" in res.stderr
    res = cli("commit", "acme/ml/a", "--dir", d, "--input", "acme/ml/a", "--run", "r1")
    assert res.exit_code == 3  # acme/ml/a has no version yet
    res = cli("commit", "acme/ml/a", "--dir", d, "--run", "bad run")
    assert res.exit_code == 2 and "run id" in res.stderr
    commit(cli, tmp_path, "acme/ml/b", "b")
    res = cli("commit", "acme/ml/a", "--dir", d, "--input", "acme/ml/b")
    assert res.exit_code == 2 and "--run" in res.stderr
    assert cli("use", "acme/ml/b:v9", "--run", "r").exit_code == 3
    assert "(no recorded lineage)" in cli("lineage", "acme/ml/b").output


def test_a_densely_linked_lineage_is_walked_once_per_version(client, tmp_path):
    """24 versions where vN was made by run rN from v0..vN-1: the graph has 24 versions and ~300 edges,
    but walked as a tree of paths it has millions of nodes. Each version is expanded once (a version
    reached again is named and marked `seen`); the CLI, the API and the web view answer at once."""
    import re
    import time

    from starlette.testclient import TestClient

    from artifactfs import Artifact, lineage
    from artifactfs.ui.app import create_app

    for n in range(24):
        src = tmp_path / f"v{n}"
        src.mkdir()
        (src / "f.txt").write_text(str(n))
        art = Artifact("acme/ml/chain", type="dataset", client=client)
        art.add_dir(str(src))
        art.save(run=f"r{n}", inputs=[f"acme/ml/chain:v{i}" for i in range(n)])
    top = client.resolve("acme/ml/chain:v23")
    start = time.monotonic()
    graph = lineage.walk(client.repo, top, depth=10)
    assert time.monotonic() - start < 10
    text = json.dumps(graph.to_json())
    assert text.count('"seen": true') > 0 and len(text) < 200_000
    expanded = set(re.findall(r'"ref": "(acme/ml/chain:v\d+)", "runs": \[\{', text))
    assert len(expanded) == 23  # v0 has no inputs: every other version is expanded exactly once
    assert not graph.capped
    capped = lineage.walk(client.repo, top, depth=10, max_nodes=5)
    assert capped.capped and capped.to_json()["capped"] == 5
    app = create_app(client, hosts=("testserver",))
    try:
        r = TestClient(app).get("/api/e/acme/ml/chain/v23/lineage?depth=10")
        assert r.status_code == 200 and r.json()["lineage"]["ref"] == "acme/ml/chain:v23"
        page = TestClient(app).get("/e/acme/ml/chain/v23/lineage?depth=10")
        assert page.status_code == 200 and page.text.count('class="node ') == 48  # 24 versions, 24 runs
    finally:
        app.close()
