"""The web view through the ASGI test client: every page and its /api twin on a sample store, what
the store's texts and file names become in HTML, paths that try to leave a version, ranged verified
downloads, the token and Host checks, and that no request changes the store."""

from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from tests.ui_util import HOSTILE_FILE, make_sample

# Pages, downloads and freshness run on both backends (the `backend` fixture's default); what does not
# depend on the store (escaping, URL checks, the token, the command) runs on the local one only.
pytestmark = pytest.mark.usefixtures("env")
local_only = pytest.mark.parametrize("backend", ["local"], indirect=True)


@pytest.fixture
def sample(cli, tmp_path):
    return make_sample(cli, tmp_path)


@pytest.fixture
def web(client, sample):
    from artifactfs.ui.app import create_app

    app = create_app(client, hosts=("testserver",))
    yield TestClient(app)
    app.close()


def page(web, url, status=200):
    r = web.get(url, follow_redirects=False)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    return r


@local_only
def test_a_long_diff_is_paged_in_path_order(client, web, tmp_path):
    """1,300 changes: three pages of at most 500, in path order, each linking the next; the counts and
    sizes are those of the whole diff on every page, and the pages together are the whole diff."""
    src = tmp_path / "many"
    for i in range(800):
        (src / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 7}" / f"f{i:04d}").write_bytes(b"x" * i)
    client.commit_dir(str(src), "acme/ml/many", "dataset")
    for i in range(0, 800, 2):
        (src / f"d{i % 7}" / f"f{i:04d}").unlink()  # 400 removed
    for i in range(1, 800, 4):
        (src / f"d{i % 7}" / f"f{i:04d}").write_bytes(b"y" * i)  # 200 changed
    for i in range(700):
        (src / "new").mkdir(exist_ok=True)
        (src / "new" / f"g{i:04d}").write_bytes(b"z")  # 700 added
    client.commit_dir(str(src), "acme/ml/many", "dataset")
    seen, after, pages = [], "", 0
    while True:
        url = "/api/e/acme/ml/many/-/diff?from=v0&to=v1" + (f"&after={quote(after)}" if after else "")
        data = page(web, url).json()
        assert data["counts"] == {"added": 700, "removed": 400, "changed": 200}
        assert data["added_size"] == 700 and data["removed_size"] == sum(range(0, 800, 2))
        assert len(data["rows"]) <= 500
        seen += [(r["change"], r["path"]) for r in data["rows"]]
        pages += 1
        html = page(web, url.replace("/api", "")).text
        if data["next"] is None:
            assert 'rel="next"' not in html
            break
        assert f'after={quote(data["next"])}" rel="next"' in html
        after = data["next"]
    assert pages == 3 and len(seen) == 1300 and [p for _, p in seen] == sorted(p for _, p in seen)
    assert len(set(seen)) == 1300


def test_a_version_page_says_how_to_use_it_and_what_it_holds(cli, client, web, tmp_path):
    """The "use this version" box pins the version by number (an alias page too), for the mount (both
    spellings), `get`, Python and artifactfs://; metadata is a key/value table with nested values
    folded; directory rows give their size and entry count; the breadcrumb reads `raw:v1`."""
    src = tmp_path / "meta"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.bin").write_bytes(b"a" * 1000)
    (src / "sub" / "b.bin").write_bytes(b"b" * 500)
    (src / "top.txt").write_text("top")
    assert cli("commit", "--dir", str(src), "acme/ml/meta", "--alias", "prod", "--metadata", "epochs=3",
               "--metadata", 'optim={"name": "adam", "betas": [0.9, 0.99]}').exit_code == 0
    data = page(web, "/api/e/acme/ml/meta/prod/tree/").json()
    assert [u["text"] for u in data["use"]] == [
        "MOUNT/acme/ml/meta:v0/", "MOUNT/acme/ml/meta/v0/", "artifactfs get acme/ml/meta:v0 --root ./meta-v0",
        "artifactfs.artifact('acme/ml/meta:v0').download(root='./meta-v0')", "artifactfs://acme/ml/meta:v0/"]
    sub = next(c for c in data["entries"] if c["kind"] == "dir")
    assert (sub["name"], sub["entries"], sub["size"]) == ("sub", 2, 1500)
    assert data["below"] == 3 and data["below_size"] == 1503
    html = page(web, "/e/acme/ml/meta/prod/tree/").text
    assert '<code id="use-3">artifactfs get acme/ml/meta:v0 --root ./meta-v0</code>' in html
    assert 'class="copy" data-for="use-3"' in html and '<script src="/static/copy.js" defer></script>' in html
    assert '<tr><th>epochs</th><td><code>3</code></td></tr>' in html
    assert "<summary>{2 keys}</summary>" in html and "&#34;adam&#34;" in html  # nested: folded, its JSON inside
    assert 'title="1500 bytes">1.5 KiB</td><td></td><td>directory of 2 entries</td>' in html
    assert 'meta</a><span class="sel">:v0</span>' in html  # no gap in the breadcrumb
    deep = page(web, "/api/e/acme/ml/meta/v0/tree/sub").json()["use"]
    assert deep[2]["text"] == "artifactfs get acme/ml/meta:v0 --prefix sub --root ./meta-v0"
    assert deep[4]["text"] == "artifactfs://acme/ml/meta:v0/sub/"
    entry = page(web, "/api/e/acme/ml/raw/v1/file/blob.bin").json()["entry"]
    assert entry["pack"]  # a small file: stored in a pack, which the page shows only under "how it is stored"
    html = page(web, "/e/acme/ml/raw/v1/file/blob.bin").text
    assert html.index(entry["pack"]) > html.index('<details class="storage"><summary>how it is stored</summary>')


@local_only
def test_the_use_box_names_a_mount_of_this_store_on_this_machine(env, web, tmp_path):
    import os

    from tests.fuse_util import Mount, mount_factory

    with mount_factory(Mount, dict(os.environ), tmp_path, "mnt") as make:
        m = make()
        lines = [u["text"] for u in page(web, "/api/e/acme/ml/raw/clean/tree/").json()["use"]]
        assert lines[:2] == [f"{m.mountpoint}/acme/ml/raw:v1/", f"{m.mountpoint}/acme/ml/raw/v1/"]
        assert sorted(os.listdir(lines[0])) == sorted(os.listdir(lines[1])) == [
            "README.txt", "blob.bin", "config.json", "img.png", "tables"]  # the paths it names are real
    assert page(web, "/api/e/acme/ml/raw/clean/tree/").json()["use"][0]["text"].startswith("MOUNT/")


def test_pages_and_api(web, sample):
    home = page(web, "/")
    assert "acme" in home.text and home.headers["server-timing"].startswith("app;dur=")
    home_data = page(web, "/api/").json()
    assert home_data["entities"] == ["acme"] and home_data["projects"] == {"acme": ["ml", "xss"]}
    assert home_data["types"] == {"dataset": 2, "model": 1, "result": 1}, home_data["types"]
    recent = home_data["recent"]
    assert [r["created_at"] for r in recent] == sorted((r["created_at"] for r in recent), reverse=True)
    raw1 = next(r for r in recent if r["artifact"] == "acme/ml/raw" and r["version"] == 1)
    assert raw1["aliases"] == ["clean", "latest"] and raw1["type"] == "dataset" and raw1["file_count"] == 6
    assert 'href="/e/acme/ml/raw/v1/tree/"' in home.text and 'href="/e/acme/ml"' in home.text
    assert page(web, "/api/e/acme").json()["projects"] == ["ml", "xss"]
    rows = {a["name"]: a for a in page(web, "/api/e/acme/ml").json()["artifacts"]}
    assert rows["raw"]["versions"] == 2 and rows["raw"]["latest"] == "v1" and rows["raw"]["type"] == "dataset"
    assert rows["classifier"]["type"] == "model" and rows["classifier"]["aliases"] == {"best": 0, "latest": 0}
    html = page(web, "/e/acme/ml").text
    assert 'href="/e/acme/ml/raw"' in html and "model" in html

    art = page(web, "/api/e/acme/ml/raw").json()
    assert [v["version"] for v in art["versions"]] == [1, 0]
    assert art["versions"][0]["aliases"] == ["clean", "latest"]
    assert art["versions"][0]["metadata"] == {"rows": 3, "source": "field notes"}
    assert "lilies and trees" in page(web, "/e/acme/ml/raw").text
    assert page(web, "/api/e/acme/ml/report").json()["versions"][0]["expires_at"] > 0
    moves = [(m["alias"], m["version"], m["from"]) for m in art["alias_moves"]]  # newest first
    assert moves[0] == ("clean", 1, None) and ("latest", 1, 0) in moves and ("latest", 0, None) in moves
    assert all(m["at"] and m["by"] for m in art["alias_moves"])
    history = page(web, "/e/acme/ml/raw").text.split('<h2>Alias history</h2>')[1]
    assert '<span class="alias">clean</span>' in history and "raw:prod~1" in history
    assert page(web, "/api/e/acme/ml/raw/latest~1/tree/").json()["version"] == 0  # a past position

    root = page(web, "/api/e/acme/ml/raw/clean/tree/").json()
    assert root["version"] == 1
    assert [(c["name"], c["kind"]) for c in root["entries"]] == [
        ("README.txt", "file"), ("blob.bin", "file"), ("config.json", "file"), ("img.png", "file"),
        ("tables", "dir")]
    sub = page(web, "/api/e/acme/ml/raw/v1/tree/tables").json()
    assert [c["path"] for c in sub["entries"]] == ["tables/flowers.csv", "tables/trees.tsv"]
    assert page(web, "/e/acme/ml/raw/v1", 307).headers["location"] == "/e/acme/ml/raw/v1/tree/"

    csv = page(web, "/e/acme/ml/raw/v1/file/tables/flowers.csv").text
    assert "<td>lily</td><td>6</td><td>white</td>" in csv and "<th>petals</th>" in csv
    assert page(web, "/api/e/acme/ml/raw/v1/file/tables/trees.tsv").json()["preview"]["rows"] == [["oak", "30"]]
    assert '"lr": 0.1' in page(web, "/api/e/acme/ml/raw/v1/file/config.json").json()["preview"]["text"]
    assert page(web, "/api/e/acme/ml/raw/v1/file/README.txt").json()["preview"]["kind"] == "text"
    hexed = page(web, "/api/e/acme/ml/raw/v1/file/blob.bin").json()["preview"]
    assert hexed["kind"] == "hex" and hexed["rows"][0]["hex"].startswith("00 01 02")
    assert '<img src="/e/acme/ml/raw/v1/raw/img.png"' in page(web, "/e/acme/ml/raw/v1/file/img.png").text
    for path, data in sample.items():
        assert page(web, f"/e/acme/ml/raw/v1/raw/{path}").content == data


def test_diff_lineage_search(web):
    diff = page(web, "/api/e/acme/ml/raw/-/diff?from=v0&to=v1").json()
    assert diff["counts"] == {"added": 1, "removed": 1, "changed": 1}
    assert [(r["change"], r["path"]) for r in diff["rows"]] == [
        ("removed", "old.txt"), ("changed", "tables/flowers.csv"), ("added", "tables/trees.tsv")]  # path order
    assert diff["next"] is None
    assert 'href="/e/acme/ml/raw/-/diff?from=v0&amp;to=v1"' in page(web, "/e/acme/ml/raw").text

    lin = page(web, "/api/e/acme/ml/classifier/v0/lineage?depth=2").json()
    labels = {n["label"]: n["kind"] for n in lin["nodes"]}
    assert labels == {"acme/ml/classifier:v0": "focus", "train-7": "run", "acme/ml/raw:v1": "version",
                      "ingest-2": "run", "eval-3": "run", "acme/ml/report:v0": "version"}
    types = {n["label"]: n["type"] for n in lin["nodes"] if n["kind"] != "run"}
    assert types == {"acme/ml/classifier:v0": "model", "acme/ml/raw:v1": "dataset", "acme/ml/report:v0": "result"}
    svg = page(web, "/e/acme/ml/classifier/v0/lineage").text
    assert '<a href="/run/train-7" class="node run"' in svg and 'href="/e/acme/ml/report/v0/tree/"' in svg
    assert 'class="node focus t-model version"' in svg and 'class="node version t-dataset"' in svg
    assert '<title>model (this page) acme/ml/classifier:v0</title>' in svg
    legend = svg[svg.index('<ul class="legend"'):svg.index("</ul>")]
    assert all(f">{word}" in legend for word in ("run", "dataset", "model", "another type", "deleted version"))
    run = page(web, "/api/run/eval-3").json()
    assert run == {"run": "eval-3", "inputs": ["acme/ml/classifier:v0"], "outputs": ["acme/ml/report:v0"]}

    names = lambda q: [r["artifact"] for r in page(web, f"/api/search?q={q}").json()["results"]]  # noqa: E731
    assert names("clas") == ["acme/ml/classifier"]
    assert names("result") == ["acme/ml/report"]  # by type
    assert names("best") == ["acme/ml/classifier", "acme/xss/evil"]  # by alias
    assert names("") == []


def test_a_new_version_shows_on_the_next_load(web, cli, tmp_path):
    assert page(web, "/api/e/acme/ml/raw").json()["total"] == 2
    src = tmp_path / "again"
    src.mkdir()
    (src / "x.txt").write_text("v2")
    assert cli("commit", "acme/ml/raw", "--dir", src).exit_code == 0
    assert page(web, "/api/e/acme/ml/raw").json()["total"] == 3
    assert {a["name"]: a["latest"] for a in page(web, "/api/e/acme/ml").json()["artifacts"]}["raw"] == "v2"
    assert cli("rm", "acme/ml/raw:v0").exit_code == 0  # a tombstone: still listed, no longer counted
    rows = {a["name"]: a for a in page(web, "/api/e/acme/ml").json()["artifacts"]}
    assert rows["raw"]["versions"] == 2 and rows["classifier"]["versions"] == 1
    assert [v["version"] for v in page(web, "/api/e/acme/ml/raw").json()["versions"]] == [2, 1]


def test_damaged_records_hide_themselves_only(web, client):
    from artifactfs import layout
    from artifactfs.names import ArtifactName

    raw, model = ArtifactName("acme", "ml", "raw"), ArtifactName("acme", "ml", "classifier")
    client.store.put(layout.version_key(raw, 0), b"{not json")
    client.store.put(layout.artifact_key(model), b"\xff\xfe")
    client.store.put(layout.alias_key(model, "best"), b'{"version": "zero"}')
    rows = {a["name"]: a for a in page(web, "/api/e/acme/ml").json()["artifacts"]}
    assert rows["raw"]["versions"] == 1 and rows["raw"]["latest"] == "v1"
    assert rows["classifier"]["type"] == "" and rows["classifier"]["aliases"] == {"latest": 0}
    assert [v["version"] for v in page(web, "/api/e/acme/ml/raw").json()["versions"]] == [1]
    r = page(web, "/e/acme/ml/raw/v0/tree/", 502)
    assert "v0" in r.text
    page(web, "/e/acme/ml")


@local_only
def test_store_texts_are_escaped(web):
    for url in ["/e/acme/xss/evil", "/e/acme/xss/evil/v0/tree/", "/e/acme/xss", "/search?q=evil",
                "/e/acme/xss/evil/v0/file/" + quote(HOSTILE_FILE)]:
        html = page(web, url).text
        assert "<script>" not in html and "alert('x')" not in html and "<b onmouseover" not in html, url
    html = page(web, "/e/acme/xss/evil").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;&#39;" in html
    tree = page(web, "/e/acme/xss/evil/v0/tree/").text
    assert f'href="/e/acme/xss/evil/v0/file/{quote(HOSTILE_FILE)}"' in tree
    assert page(web, "/api/e/acme/xss/evil/v0/tree/..dots").json()["entries"][0]["name"] == "%2e%2e.txt"
    headers = page(web, "/").headers
    policy = headers["content-security-policy"]  # the one script is the copy buttons', served from here
    assert "script-src 'self';" in policy and "unsafe" not in policy and headers["x-content-type-options"] == "nosniff"


@local_only
@pytest.mark.parametrize("url, status", [
    ("/e/acme/ml/raw/v1/raw/%2e%2e/%2e%2e/classifier/v0/raw/weights.bin", 400),
    ("/e/acme/ml/raw/v1/file/..%2f..%2fetc%2fpasswd", 400),
    ("/e/acme/ml/raw/v1/raw//etc/passwd", 400),
    ("/e/acme/ml/raw/v1/raw/tables/%00", 400),
    ("/e/acme/ml/raw/v1/raw/tables", 404),  # a directory is not a file
    ("/e/acme/ml/raw/v1/tree/README.txt", 404),
    ("/e/acme/ml/raw/v7/tree/", 404),
    ("/e/acme/ml/raw/v-1/tree/", 404),  # an alias nobody set
    ("/e/acme/ml/raw/no%20such/tree/", 400),
    ("/e/a%20b", 400),
    ("/e/acme/nope", 404),
    ("/e/acme/ml/nope", 404),
    ("/e/acme/ml?page=x", 400),
    ("/e/acme/ml/raw/-/diff?from=v0", 400),
    ("/e/acme/ml/raw/v1/lineage?depth=99", 400),
    ("/run/a%20b", 400),
    ("/e/acme/ml?page=%C2%B2", 400),  # "²": str.isdigit says yes, int() says no
    ("/e/acme/ml/raw/v1/tree/?start=%C2%B2", 400),
    ("/e/acme/ml/raw/v1/lineage?depth=%C2%B2", 400),
    ("/api/e/acme/ml/raw/v1/tree/?start=%C2%B2", 400),
    ("/no/such/page", 404),
    ("/api/e/acme/ml/raw/v9/tree/", 404),
])
def test_bad_urls(web, url, status):
    r = page(web, url, status)
    assert ("application/json" in r.headers["content-type"]) == url.startswith("/api/")


def test_ranged_downloads(web, sample):
    data = sample["blob.bin"]
    url = "/e/acme/ml/raw/v1/raw/blob.bin"
    r = web.get(url, headers={"range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}" and r.headers["accept-ranges"] == "bytes"
    assert web.get(url, headers={"range": "bytes=-10"}).content == data[-10:]
    assert web.get(url, headers={"range": "bytes=10000-"}).content == data[10000:]
    r = web.get(url, headers={"range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    assert web.get(url, headers={"range": "bytes=0-1,5-6"}).content == data  # several ranges: all of it
    nines = "9" * 5000  # past Python's int() digit limit
    assert web.get(url, headers={"range": f"bytes={nines}-"}).status_code == 416
    r = web.get(url, headers={"range": f"bytes=10-{nines}"})
    assert r.status_code == 206 and r.content == data[10:]
    assert web.get(url, headers={"range": f"bytes=-{nines}"}).content == data
    r = web.get(url)
    assert r.headers["content-disposition"].startswith("attachment") and r.headers["etag"]
    assert "sandbox" in r.headers["content-security-policy"]


def test_damaged_cache_and_store(web, client, tmp_path, sample):
    from tests.fault_util import damage_cached, overwrite_stored

    url = "/e/acme/ml/raw/v1/raw/blob.bin"
    assert web.get(url).content == sample["blob.bin"]
    manifest = client.manifest(client.resolve("acme/ml/raw:v1"))
    entry = manifest[manifest.find("blob.bin")]
    damage_cached(tmp_path / "cache", entry, "flip")
    assert web.get(url).content == sample["blob.bin"]  # the damaged copy is refetched
    overwrite_stored(client, entry, b"y" * entry.size)
    import shutil

    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    r = web.get("/e/acme/ml/raw/v1/file/blob.bin")
    assert r.status_code == 502 and ("does not match" in r.text or "digest" in r.text)
    body = web.get(url).content
    assert body != b"y" * entry.size and len(body) < entry.size  # cut short, never the wrong bytes


@local_only
def test_token_and_host(client, sample):
    from artifactfs.ui.app import create_app

    app = create_app(client, token="s3cret", hosts=("testserver",))
    web = TestClient(app)
    assert web.get("/").status_code == 401
    assert web.get("/", headers={"x-artifactfs-token": "wrong"}).status_code == 401
    assert web.get("/api/", headers={"x-artifactfs-token": "s3cret"}).json()["entities"] == ["acme"]
    assert web.get("/api/", headers={"authorization": "Bearer s3cret"}).status_code == 200
    r = web.get("/e/acme?token=s3cret&x=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/e/acme?x=1"
    assert web.get("/e/acme").status_code == 200  # the cookie carries it now
    app.close()
    local = create_app(client)
    assert TestClient(local, base_url="http://evil.example").get("/").status_code == 400
    assert TestClient(local, base_url="http://127.0.0.1:8765").get("/").status_code == 200
    local.close()


def test_no_request_changes_the_store(web, client):
    before = {(i.key, i.etag) for i in client.store.list("")}
    for method in ("post", "put", "delete", "patch"):
        assert getattr(web, method)("/e/acme/ml/raw").status_code == 405
    for url in ["/", "/e/acme/ml", "/e/acme/ml/raw", "/e/acme/ml/raw/v1/tree/", "/search?q=raw",
                "/e/acme/ml/raw/-/diff?from=v0&to=v1", "/e/acme/ml/raw/v1/lineage"]:
        page(web, url)
    assert {(i.key, i.etag) for i in client.store.list("")} == before


@local_only
def test_a_large_directory_pages(cli, client, tmp_path):
    from artifactfs.ui.app import create_app

    src = tmp_path / "many"
    src.mkdir()
    for i in range(450):
        (src / f"f{i:04d}").write_text(str(i))
    assert cli("commit", "acme/big/flat", "--dir", src).exit_code == 0
    app = create_app(client, hosts=("testserver",))
    web = TestClient(app)
    seen, url = [], "/api/e/acme/big/flat/v0/tree/"
    while url:
        data = page(web, url).json()
        seen += [c["name"] for c in data["entries"]]
        url = f"/api/e/acme/big/flat/v0/tree/?start={data['next']}" if data["next"] is not None else None
    assert seen == [f"f{i:04d}" for i in range(450)]
    app.close()


@local_only
def test_ui_command(cli, env, sample):
    import json
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    res = cli("ui", "--host", "0.0.0.0")
    assert res.exit_code == 2 and "--allow-remote" in res.output and "Traceback" not in res.output
    proc = subprocess.Popen([sys.executable, "-m", "artifactfs", "ui", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "api/", timeout=10) as r:
            assert json.load(r)["entities"] == ["acme"]
        taken = url.rsplit(":", 1)[1].strip("/")
        again = cli("ui", "--port", taken)
        assert again.exit_code != 0 and "pick another with --port" in again.output
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, 130) and "Traceback" not in err, err  # 130: stopped by Ctrl-C


@local_only
def test_a_json_file_nested_past_the_parser_is_shown_as_text(web, cli, tmp_path):
    src = tmp_path / "deep"
    src.mkdir()
    (src / "deep.json").write_text("[" * 30000 + "]" * 30000)
    assert cli("commit", "--dir", src, "acme/ml/deep").exit_code == 0
    html = page(web, "/e/acme/ml/deep/v0/file/deep.json").text
    assert "[[[[" in html


@local_only
@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
def test_ui_on_another_loopback_address_answers_its_url_and_only_it(env, sample, host):
    """The URL `ui --host` prints works (127.0.0.2 answered 400 before), and a request naming another
    host (a page whose name resolves to the loopback address: DNS rebinding) gets nothing, over IPv6 too."""
    import http.client
    import re
    import signal
    import socket
    import subprocess
    import sys

    if host == "::1":
        try:
            socket.socket(socket.AF_INET6).bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
    proc = subprocess.Popen([sys.executable, "-m", "artifactfs", "ui", "--host", host, "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://(\S+?):(\d+)/", proc.stdout.readline())
        shown, port = url.group(1), int(url.group(2))

        def get(host_header: str) -> int:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", "/api/", headers={"Host": host_header})
            status = conn.getresponse().status
            conn.close()
            return status

        assert get(f"{shown}:{port}") == 200
        assert get(f"evil.example:{port}") == 400
        assert get("evil.example") == 400
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def test_this_page_as_json_keeps_the_query(web):
    import html as html_mod
    import re

    text = page(web, "/e/acme/ml/raw/-/diff?from=v0&to=v1").text
    link = html_mod.unescape(re.search(r'<a href="([^"]+)">this page as JSON</a>', text).group(1))
    assert link == "/api/e/acme/ml/raw/-/diff?from=v0&to=v1"
    data = page(web, link).json()
    assert (data["old"], data["new"]) == ("v0", "v1") and set(data["counts"]) == {"added", "removed", "changed"}


@local_only
def test_a_parquet_preview_reads_a_bounded_part(web, cli, client, tmp_path, monkeypatch):
    """A table preview reads the footer and the first rows of the columns it shows; when the first row
    group is larger than a preview reads, the page says so instead of fetching it all."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import os as os_mod

    from artifactfs.ui import preview

    src = tmp_path / "pq"
    src.mkdir()
    rows = 200_000
    table = pa.table({"id": list(range(rows)), "blob": [os_mod.urandom(16).hex() for _ in range(rows)]})
    pq.write_table(table, src / "one-group.parquet", row_group_size=rows)  # one row group, ~7 MB
    assert cli("commit", "--dir", src, "acme/ml/pq").exit_code == 0
    html = page(web, "/e/acme/ml/pq/v0/file/one-group.parquet").text
    assert "<td>199</td>" not in html and "<td>0</td>" in html and "the first 50 rows of 200000" in html
    monkeypatch.setattr(preview, "PARQUET_PREVIEW_BYTES", 1024 * 1024)
    client.fetcher.fetched_bytes = client.fetcher.cache_read_bytes = 0
    html = page(web, "/e/acme/ml/pq/v0/file/one-group.parquet").text
    assert "No rows shown: its first row group holds" in html and "download the file" in html
    size = (src / "one-group.parquet").stat().st_size
    read = client.fetcher.fetched_bytes + client.fetcher.cache_read_bytes
    assert 0 < read < size / 2, (read, size)  # the head and the footer, not the row group
