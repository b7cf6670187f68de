"""Hostile and bad input: what `commit --dir` refuses (devices, sockets, symlink tricks, huge metadata,
names and paths the format cannot hold), manifests crafted with traversal or duplicates and placed
straight into the store, and property-based tests of path normalization and canonical manifests.

Each refusal is one clear line with a documented exit code, and nothing is written where it does not
belong: no blob or version in the store, no file outside the download directory. Already covered in
test_cli.py: outside symlink, FIFO, non-UTF-8 name, `..`/absolute --prefix, bad artifact names."""

import errno
import gzip
import json
import os
import socket
import stat
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifactfs import layout
from artifactfs.errors import InvalidPath
from artifactfs.hashing import digest_bytes
from artifactfs.manifest import Entry, Manifest, canonical_json
from artifactfs.paths import MAX_PATH_BYTES, normalize_entry_path
from tests.fault_util import plant_version, stored_key, tally, write_files
from tests.fuse_util import Mount
from tests.staging_util import StageMount

NAME = "acme/vision/hostile"


def refused(res, code: int, *fragments: str) -> str:
    assert res.exit_code == code, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("artifactfs: error:"), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def store_keys(client) -> list[str]:
    return sorted(info.key for info in client.store.list(""))


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    write_files(d, {"ok.txt": b"fine\n", "sub/inner.txt": b"inner\n"})
    return d


# ---- commit --dir ---------------------------------------------------------------------------------
def test_special_files_are_refused_and_symlinks_stored_unfollowed(cli, client, data, tmp_path):
    """Devices and sockets are refused; every symbolic link, whatever it points at (outside, a loop,
    nothing, through ..), is stored as the link it is: its target is never read."""
    before = store_keys(client)
    outside = tmp_path / "outside"
    write_files(outside, {"secret.txt": b"what no link may leak\n"})
    cases = []
    if os.geteuid() == 0:
        os.mknod(data / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        cases.append("null")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(data / "sock"))
    cases.append("sock")
    try:
        for name in cases:
            refused(cli("commit", "--dir", data, NAME), 8, "not a regular file")
            os.unlink(data / name)
    finally:
        sock.close()
    links = {"dir-link": str(outside), "loop": str(data / "loop2"), "loop2": str(data / "loop"),
             "dangling": str(data / "missing"), "via-dotdot": "sub/../../outside/secret.txt",
             "inside-link": "sub/inner.txt"}
    for name, target in links.items():
        os.symlink(target, data / name)
    assert cli("commit", "--dir", data, NAME).exit_code == 0
    files = {e["path"]: e for e in json.loads(cli("files", f"{NAME}:v0", "--json").stdout)}
    assert sorted(files) == sorted([*links, "ok.txt", "sub/inner.txt"])
    assert all(files[name] == {"kind": "link", "path": name, "size": 0, "target": target}
               for name, target in links.items())
    assert before == [] and not any(b"no link may leak" in client.store.get(k)[0] for k in store_keys(client))
    tally("special files and symlinks", faults=len(cases) + len(links))


def test_names_and_paths_the_format_cannot_hold(cli, client, data):
    """Through the in-process CLI, so arguments can hold what a shell cannot pass (NUL)."""
    long_prefix = "/".join(["d" * 200] * 25)  # 5 KB: over the 4096-byte path limit
    cases = [
        (("--prefix", "a\x00b"), 2, "NUL"),
        (("--prefix", long_prefix), 2, f"over {MAX_PATH_BYTES} bytes"),
        (("--prefix", "x" * 300), 2, "over 255 bytes"),
        (("--prefix", "a//b"), 2, "empty segment"),
        (("--prefix", "a/../../b"), 2, "'..'"),
        (("--alias", "../x"), 2, "invalid alias"),
        (("--alias", "v3"), 2, "reserved"),
        (("--alias", "a\x00"), 2, "invalid alias"),
        (("--type", "../model"), 2, "invalid type"),
    ]
    for args, code, fragment in cases:
        refused(cli("commit", "--dir", data, NAME, *args), code, fragment)
    for ref in ("../vision/x", "acme/../x", "/acme/vision/x", "acme/vision/x\x00y", "acme/vision/" + "n" * 129,
                "acme/vision/x:..", "acme/vision/ü"):
        refused(cli("commit", "--dir", data, ref), 2, "invalid")
    assert not [k for k in store_keys(client) if k.startswith(("blobs/", "manifests/", "artifacts/"))]
    tally("bad names and paths", faults=len(cases) + 7)


def test_ten_megabytes_of_metadata_is_refused_before_any_upload(cli, client, data, tmp_path, monkeypatch):
    big = tmp_path / "meta.json"
    big.write_text(json.dumps({"blob": "x" * (10 * 1024 * 1024)}))
    refused(cli("commit", "--dir", data, NAME, "--metadata-file", big), 2, "metadata is", "limit")
    assert not [k for k in store_keys(client) if k.startswith(("blobs/", "manifests/", "artifacts/"))]
    monkeypatch.setenv("ARTIFACTFS_STAGE_DIR", str(tmp_path / "stages"))
    st = StageMount(tmp_path / "mp", dict(os.environ), NAME, "--empty")
    try:
        write_files(st.mountpoint, {"staged.txt": b"staged\n"})
        refused(cli("commit", st.mountpoint, "--metadata-file", big), 2, "limit")
        refused(cli("commit", st.mountpoint, "--alias", "v9"), 2, "reserved")
        assert open(st.path("staged.txt"), "rb").read() == b"staged\n"  # the stage is untouched
    finally:
        st.close()
    assert not [k for k in store_keys(client) if k.startswith(("blobs/", "manifests/", "artifacts/"))]
    assert cli("commit", "--dir", data, NAME).exit_code == 0
    refused(cli("update", f"{NAME}:v0", "--metadata-file", big), 2, "limit")
    assert json.loads(cli("show", f"{NAME}:v0", "--json").stdout)["metadata"] == {}
    tally("10 MB metadata", faults=2)


# ---- crafted manifests in the store ---------------------------------------------------------------
BAD_PATHS = ["../escape.txt", "/etc/evil.txt", "a/../../escape.txt", "dup", "a//b"]


def test_crafted_manifests_are_refused_everywhere(cli, client, tmp_path, env):
    """Manifests no commit writes (traversal, absolute, duplicates, empty segment), planted with valid
    digests: get, files and verify exit 7 naming the manifest, nothing lands outside the download
    directory, and the mount refuses the version while the daemon stays up."""
    blob = b"evil!\n"
    digest = digest_bytes(blob)
    client.store.put(layout.blob_key(digest), blob)
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    for i, bad in enumerate(BAD_PATHS):
        name = f"{NAME}{i}"
        if bad == "dup":
            same = {"path": "same.txt", "size": 6, "digest": digest}
            lines = [same, dict(same)]
        else:
            lines = [{"path": bad, "size": 6, "digest": digest}]
        plant_version(client.store, lines, name)
        assert cli("show", f"{name}:v0", "--json").exit_code == 0  # the record alone is fine
        for args in (("get", name, "--root", out), ("files", name), ("verify", name)):
            res = cli(*args)
            line = refused(res, 7)
            if args[0] == "verify":  # the summary is on stderr, each problem on stdout
                line = res.stdout
            assert "manifest" in line and ("duplicate" in line if bad == "dup" else "path" in line), line
    for root, _, names in os.walk(tmp_path):
        assert "escape.txt" not in names and "evil.txt" not in names and "same.txt" not in names, root
    assert not os.path.exists("/etc/evil.txt")
    m = Mount(tmp_path / "mp", env)
    try:
        for i in range(len(BAD_PATHS)):
            with pytest.raises(OSError):
                os.listdir(m.path(f"{NAME}{i}:v0"))
        assert os.path.ismount(m.mountpoint)  # the daemon stays up
        assert os.listdir(m.path("acme")) == ["vision"]
    finally:
        m.close()
    tally("crafted manifests", faults=len(BAD_PATHS))


CS = 8 * 1024 * 1024


def _size_cases(d: str, tiny: bytes) -> dict:
    """Manifests whose sizes, chunks, offsets or chunk size do not fit the bytes they name."""
    head = {"chunk_size": CS, "format": 1, "type": "artifactfs-manifest"}
    one = {"path": "f.bin", "digest": d}
    return {
        "size 0 of a non-empty blob": ([{**one, "size": 0}], None),
        "size shorter than the blob": ([{**one, "size": 3}], None),
        "size 1 GiB of a tiny blob": ([{**one, "size": 2**30}], None),
        "1 GiB in 128 chunks of a tiny blob": ([{**one, "size": 2**30, "chunks": [d] * 128}], None),
        "size beyond its chunks": ([{**one, "size": 3 * CS, "chunks": [d, d]}], None),
        "chunks for a small file": ([{**one, "size": len(tiny), "chunks": [d]}], None),
        "pack offset 2^64-1": ([{**one, "size": len(tiny), "pack": d, "offset": 2**64 - 1}], None),
        "negative size": ([{**one, "size": -1}], None),
        "size 2^64": ([{**one, "size": 2**64}], None),
        "no chunk_size": ([{**one, "size": len(tiny)}], {k: v for k, v in head.items() if k != "chunk_size"}),
        "chunk_size 0": ([{**one, "size": len(tiny)}], {**head, "chunk_size": 0}),
        "chunk_size big": ([{**one, "size": len(tiny)}], {**head, "chunk_size": "big"}),
    }


def test_manifest_sizes_that_do_not_fit_their_bytes_are_corrupt(cli, client, tmp_path, env):
    """A size, chunk list, pack offset or chunk size that does not fit the bytes named is corrupt data:
    exit 7 from get, cache warm and verify, EIO from the mount, never an empty, short or wrong-sized file,
    with the right bytes in the cache (a `get` before) or not; a 1 GiB size on a tiny blob allocates no
    1 GiB (the daemon's peak RSS stays low)."""
    tiny = b"tiny!\n"
    d = digest_bytes(tiny)
    client.store.put(layout.blob_key(d), tiny)
    client.store.put(layout.pack_key(d), tiny)
    plant_version(client.store, [{"path": "f.bin", "size": len(tiny), "digest": d}], f"{NAME}-good")
    assert cli("get", f"{NAME}-good", "--root", tmp_path / "good").exit_code == 0  # the cache holds the blob
    cases = _size_cases(d, tiny)
    for i, (why, (lines, header)) in enumerate(cases.items()):
        name = f"{NAME}{i}"
        plant_version(client.store, lines, name, header)
        out = tmp_path / f"out{i}"
        for args in (("get", name, "--root", out), ("cache", "warm", name), ("verify", name)):
            res = cli(*args)
            assert res.exit_code == 7, (why, args, res.output)
            assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output, (why, res.output)
        assert not os.path.exists(out / "f.bin"), why
    assert (tmp_path / "good" / "f.bin").read_bytes() == tiny
    m = Mount(tmp_path / "mp", env)
    try:
        for i, why in enumerate(cases):
            path = m.path(f"{NAME}{i}:v0", "f.bin")
            for _ in range(20 if "1 GiB" in why else 1):
                with pytest.raises(OSError) as exc, open(path, "rb") as f:
                    f.read()
                assert exc.value.errno in (errno.EIO, errno.ENOENT), why
        with open(m.path(f"{NAME}-good:v0", "f.bin"), "rb") as f:
            assert f.read() == tiny
        with open(f"/proc/{m.pid}/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        assert peak < 400 * 1024, f"daemon peak RSS {peak} KiB"
        assert os.path.ismount(m.mountpoint)
    finally:
        m.close()
    tally("manifest sizes that do not fit", faults=len(cases))


# ---- properties -----------------------------------------------------------------------------------
segment = st.one_of(st.sampled_from([".", "..", "", "a", "b.txt", "ü", " ", "\\", "x" * 256]),
                    st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12),
                    st.text(min_size=1, max_size=6))
raw_path = st.builds(lambda segs, lead, trail: ("/" if lead else "") + "/".join(segs) + ("/" if trail else ""),
                     st.lists(segment, min_size=0, max_size=6), st.booleans(), st.booleans())


@settings(max_examples=400, deadline=None)
@given(raw_path)
def test_normalized_paths_are_safe_and_stable(path):
    try:
        norm = normalize_entry_path(path)
    except InvalidPath:
        segs = [s for s in path.split("/") if s != "."]
        assert (path.startswith("/") or "\x00" in path or ".." in segs or "" in segs[:-1] or not segs
                or segs == [""] or any(len(s.encode("utf-8", "surrogatepass")) > 255 for s in segs)
                or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES
                or any(0xD800 <= ord(c) <= 0xDFFF for c in path)), path
        return
    assert normalize_entry_path(norm) == norm  # idempotent
    parts = norm.split("/")
    assert not norm.startswith("/") and "" not in parts and ".." not in parts and "." not in parts
    assert "\x00" not in norm
    assert os.path.normpath(os.path.join("/root", norm)).startswith("/root/")  # never escapes a root
    assert [s for s in path.split("/") if s not in (".", "")] == parts


entry = st.builds(
    lambda path, size, d, ex: Entry(path, size, d, executable=ex),
    st.lists(st.text(string.ascii_lowercase + "é0", min_size=1, max_size=4), min_size=1, max_size=3).map("/".join),
    st.integers(0, 10**12), st.binary(min_size=16, max_size=16).map(bytes.hex), st.booleans())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entry, max_size=30, unique_by=lambda e: e.path), st.randoms())
def test_canonical_manifest_is_independent_of_order(entries, rnd):
    try:
        m = Manifest.from_entries(entries)
    except InvalidPath as exc:  # a file that is also a directory: refused, whatever the order
        assert "both a file and a directory" in str(exc)
        shuffled = entries[:]
        rnd.shuffle(shuffled)
        with pytest.raises(InvalidPath):
            Manifest.from_entries(shuffled)
        return
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    again = Manifest.from_entries(shuffled)
    assert again.to_bytes() == m.to_bytes() and again.digest == m.digest
    parsed = Manifest.parse(m.to_bytes())
    assert parsed.digest == m.digest and list(parsed) == list(m) == sorted(entries, key=lambda e: e.path.encode())
    lines = m.to_bytes().split(b"\n")
    assert lines[-1] == b"" and all(b" " not in ln or b'"path"' in ln for ln in lines)
    for ln in lines[:-1]:
        obj = json.loads(ln)
        assert canonical_json(obj) == ln  # sorted keys, no spaces


@settings(max_examples=100, deadline=None)
@given(st.lists(entry, min_size=1, max_size=10, unique_by=lambda e: e.path), st.data())
def test_duplicate_paths_are_refused(entries, data):
    dup = data.draw(st.sampled_from(entries))
    with pytest.raises(InvalidPath):
        Manifest.from_entries([*entries, Entry(dup.path, 1, "0" * 32)])


def test_one_damaged_record_is_reported_and_isolated(cli, client, tmp_path, env):
    """A garbage version record, alias record, ttl record and manifest, each in its own artifact: the
    others list (CLI and mount), verify and collect as usual; verify and gc name each damaged key and
    exit 7; gc keeps what the damaged objects still name; `rm --force` tombstones a damaged record."""
    def commit(ref, files):
        d = tmp_path / f"src-{len(os.listdir(tmp_path))}"
        write_files(d, files)
        assert cli("commit", ref, "--dir", d).exit_code == 0

    commit("acme/vision/good", {"only-v0.txt": b"freed by gc\n"})
    commit("acme/vision/good", {"kept.txt": b"kept\n"})
    freed = stored_key(client, "acme/vision/good:v0", "only-v0.txt")
    assert cli("rm", "acme/vision/good:v0").exit_code == 0
    commit("acme/vision/badrec", {"a.txt": b"v0 of badrec\n"})
    commit("acme/vision/badrec", {"b.txt": b"only in the damaged v1\n"})
    commit("acme/vision/badman", {"c.txt": b"named by a damaged manifest\n"})
    commit("acme/vision/badalias", {"d.txt": b"d\n"})
    assert cli("alias", "set", "acme/vision/badalias:v0", "prod").exit_code == 0
    assert cli("ttl", "acme/vision/badalias:v0", "30d").exit_code == 0
    store = client.store

    v1 = "artifacts/acme/vision/badrec/versions/1.json"
    record = store.get(v1)[0]
    v1_blob = stored_key(client, "acme/vision/badrec:v1", "b.txt")
    man_blob = stored_key(client, "acme/vision/badman:v0", "c.txt")
    store.put(v1, record[:record.index(b'"metadata"')])  # cut short, still naming its manifest
    v1_manifest = json.loads(record)["manifest"]
    man = client.resolve("acme/vision/badman").manifest
    text = gzip.decompress(store.get(layout.manifest_key(man))[0])
    store.put(layout.manifest_key(man), gzip.compress(text.replace(b"c.txt", b"x.txt")))  # wrong digest
    store.delete(layout.manifest_columns_key(man))
    store.put("artifacts/acme/vision/badalias/aliases/prod.json", b"\xff not json")
    store.put("artifacts/acme/vision/badalias/ttl/0.json", b'{"expires_at": "soon"}')

    res = cli("ls", "acme/vision/badrec")
    assert res.stdout.splitlines()[1].startswith("v0\t")
    refused(res, 7, v1)
    assert cli("ls", "acme/vision/badalias").exit_code == 0
    assert cli("ls", "acme/vision").stdout.split() == ["acme/vision/badalias", "acme/vision/badman",
                                                       "acme/vision/badrec", "acme/vision/good"]
    m = Mount(tmp_path / "mp", env)
    try:
        listed = os.listdir(m.path("acme/vision"))
        assert "badrec:v0" in listed and "badrec:v1" not in listed and "good:v1" in listed
        assert "badalias:v0" in listed and "badalias:prod" not in listed
        assert open(m.path("acme/vision/good:latest/kept.txt"), "rb").read() == b"kept\n"
        with pytest.raises(OSError):
            os.listdir(m.path("acme/vision/badrec:v1"))
    finally:
        m.close()

    res = cli("verify", "--all")
    assert res.exit_code == 7 and "Traceback" not in res.stderr
    assert v1 in res.stdout and man in res.stdout
    assert "checked 4 versions" in res.stdout  # good:v1, badrec:v0, badman:v0, badalias:v0

    assert cli("cache", "clean").exit_code == 0  # else gc marks from this machine's verified copy
    res = cli("gc", "--grace", "0s")
    assert res.exit_code == 7 and "Traceback" not in res.stderr, res.output
    assert v1 in res.stdout and man in res.stdout
    keys = set(store_keys(client))
    assert freed not in keys  # the rest was collected as usual
    assert {v1_blob, man_blob, layout.manifest_key(v1_manifest), layout.manifest_key(man)} <= keys

    assert cli("rm", "acme/vision/badrec:v1").exit_code == 7  # not without --force
    assert cli("rm", "--force", "acme/vision/badrec:v1").exit_code == 0
    assert cli("ls", "acme/vision/badrec").exit_code == 0
    res = cli("verify", "--all")
    assert res.exit_code == 7 and v1 not in res.stdout and man in res.stdout


def test_references_read_only_what_the_user_allows(cli, client, tmp_path, env, monkeypatch):
    """A manifest from the store names a local file outside the reference roots (directly, or through
    a link inside them), a loopback server the user did not allow, cloud metadata at 169.254.169.254,
    or an allowed host that redirects to a forbidden one: get, verify and the mount refuse (exit 6 /
    EIO) and nothing of the source is written; commit refuses such references up front."""
    from tests.refserver import RefServer

    secret = tmp_path.parent / f"secret-{tmp_path.name}"
    secret.write_bytes(b"root:$6$hash:19000:0:99999:7:::\n")
    (tmp_path / "inside").mkdir()
    os.symlink(secret, tmp_path / "inside" / "link")
    body = secret.read_bytes()
    d = digest_bytes(body)
    with RefServer() as server:
        server.files["/secret"] = body
        local_host = server.url.replace("127.0.0.1", "localhost")
        server.redirects["/hop"] = f"{server.url}/secret"
        cases = {
            "file outside the roots": f"file://{secret}",
            "link leaving the roots": f"file://{tmp_path}/inside/link",
            "etc shadow": "file:///etc/shadow",
            "loopback server": f"{server.url}/secret",
            "cloud metadata": "http://169.254.169.254/latest/meta-data/",
            "private network": "http://10.1.2.3/data",
            "redirect to loopback": f"{local_host}/hop",
        }
        monkeypatch.setenv("ARTIFACTFS_REFERENCE_HOSTS", "localhost")  # by name only: 127.0.0.1 stays refused
        env = dict(env, ARTIFACTFS_REFERENCE_HOSTS="localhost")
        for i, (why, uri) in enumerate(cases.items()):
            plant_version(client.store, [{"path": "f", "size": len(body), "digest": d, "ref": uri}], f"{NAME}{i}")
            out = tmp_path / f"out{i}"
            refused(cli("get", f"{NAME}{i}", "--root", out), 6, "127.0.0.1" if "redirect" in why else uri)
            assert not (out / "f").exists(), why
            res = cli("verify", f"{NAME}{i}")
            assert res.exit_code == 7 and "reference" in res.stdout, (why, res.output)
        m = Mount(tmp_path / "mp", env)
        try:
            for i, why in enumerate(cases):
                with pytest.raises(OSError) as exc:
                    open(m.path(f"{NAME}{i}:v0", "f"), "rb").read()
                assert exc.value.errno == errno.EIO, why
            assert os.path.ismount(m.mountpoint)
        finally:
            m.close()
        assert not any(path == "/secret" for _, path, _ in server.requests)  # never fetched, even by redirect
        refused(cli("commit", f"{NAME}-c", "--reference", f"file://{secret}"), 6, str(secret))
        refused(cli("commit", f"{NAME}-c", "--reference", f"{server.url}/secret"), 6, "127.0.0.1")
    tally("references outside what the user allows", faults=len(cases) + 2)
