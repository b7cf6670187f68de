"""The bad-input corpus: every malformed input a user, an environment or a store can hand artifactfs
(names, refs, paths, sizes, durations, URLs, metadata JSON, store URIs, environment values, config
files, damaged store files) ends in one line on stderr that names the bad value and an exit code that
means something: never 0, never 70 (internal error), never a traceback, and nothing written."""

import json
import os
import shutil

import pytest

from artifactfs import layout
from artifactfs.hashing import digest_bytes
from artifactfs.manifest import canonical_json
from artifactfs.store import LocalStore
from tests.fault_util import af, af_ok, plant_version, write_files

SAMPLE = "acme/p/a"
HEADER = {"chunk_size": 8 * 1024 * 1024, "format": 1, "type": "artifactfs-manifest"}
TINY = b"tiny!\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A local store holding acme/p/a:v0 (alias prod), and the environment that uses it."""
    root = tmp_path_factory.mktemp("corpus")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTIFACTFS_", "AWS_"))}
    env.update(ARTIFACTFS_STORE=str(root / "store"), ARTIFACTFS_CACHE_DIR=str(root / "cache"),
               ARTIFACTFS_CONFIG=str(root / "no-config.toml"), ARTIFACTFS_TIMEOUT="10")
    write_files(root / "src", {"a.txt": b"a\n", "dir/b.txt": b"b\n"})
    af_ok(env, "commit", SAMPLE, "--dir", root / "src", "--alias", "prod")
    write_files(root, {"file": b"a regular file\n", "list.json": b"[1, 2]", "bad.json": b"{nope",
                       "bad.toml": b"timeout = = 3", "unknown.toml": b'colour = "blue"\n',
                       "timeout.toml": b'timeout = "abc"\n', "store.toml": b"store = 5\n",
                       "size.toml": b'cache_size = "huge"\n', "bool.toml": b"cache_size = true\n",
                       "huge.json": json.dumps({"k": "x" * 2**21}).encode(), "nan.json": b'{"k": NaN}'})
    (root / "mp").mkdir()
    return root, env


# ---- damage planted in a copy of the base store -------------------------------------------------
def _tiny(store: LocalStore) -> str:
    d = digest_bytes(TINY)
    store.put(layout.blob_key(d), TINY)
    store.put(layout.pack_key(d), TINY)
    return d


def _record(text: bytes):
    return lambda s: s.put(f"artifacts/{SAMPLE}/versions/0.json", text)


DAMAGE = {
    "record-not-json": _record(b"\x00garbage"),
    "record-a-list": _record(b"[1]"),
    "record-bad-manifest": _record(canonical_json({"version": 0, "manifest": "../../etc/passwd", "size": 1,
                                                   "file_count": 1})),
    "record-negative-size": _record(canonical_json({"version": 0, "manifest": "0" * 32, "size": -1,
                                                    "file_count": 1})),
    "record-other-number": _record(canonical_json({"version": 7, "manifest": "0" * 32, "size": 1,
                                                   "file_count": 1})),
    "alias-not-json": lambda s: s.put(f"artifacts/{SAMPLE}/aliases/prod.json", b"{"),
    "alias-no-version": lambda s: s.put(f"artifacts/{SAMPLE}/aliases/prod.json", b'{"version": "zero"}'),
    "artifact-not-json": lambda s: s.put(f"artifacts/{SAMPLE}/artifact.json", b"\xff\xfe"),
    "ttl-not-json": lambda s: s.put(f"artifacts/{SAMPLE}/ttl/0.json", b"soon"),
    "header-no-chunk-size": lambda s: plant_version(s, [{"path": "f", "size": 6, "digest": _tiny(s)}], "acme/p/h",
                                             {"format": 1, "type": "artifactfs-manifest"}),
    "header-chunk-size-0": lambda s: plant_version(s, [{"path": "f", "size": 6, "digest": _tiny(s)}], "acme/p/h",
                                            {**HEADER, "chunk_size": 0}),
    "header-chunk-size-big": lambda s: plant_version(s, [{"path": "f", "size": 6, "digest": _tiny(s)}], "acme/p/h",
                                              {**HEADER, "chunk_size": "big"}),
    "header-format-99": lambda s: plant_version(s, [{"path": "f", "size": 6, "digest": _tiny(s)}], "acme/p/h",
                                         {**HEADER, "format": 99}),
    "pack-offset-2^64-1": lambda s: plant_version(s, [{"path": "f", "size": 6, "digest": _tiny(s),
                                                            "pack": _tiny(s), "offset": 2**64 - 1}], "acme/p/h"),
    "size-1GiB-tiny-blob": lambda s: plant_version(s, [{"path": "f", "size": 2**30, "digest": _tiny(s)}], "acme/p/h"),
    "size-negative": lambda s: plant_version(s, [{"path": "f", "size": -6, "digest": _tiny(s)}], "acme/p/h"),
    "entry-path-traversal": lambda s: plant_version(s, [{"path": "../up", "size": 6, "digest": _tiny(s)}], "acme/p/h"),
}


# ---- the corpus: (id, args, environment changes, fragment the error line must name, damage) --------
# "{root}" in an argument or a value is the module's temp directory.
CASES = [
    # names and refs
    ("name-dotdot", ["show", "acme/p/.."], {}, "'..'", None),
    ("name-space", ["show", "acme/p/na me"], {}, "na me", None),
    ("name-too-long", ["show", "acme/p/" + "x" * 200], {}, "xxxx", None),
    ("name-empty-part", ["show", "acme//a"], {}, "'acme//a'", None),
    ("ref-empty", ["show", ""], {}, "''", None),
    ("ref-empty-selector", ["show", "acme/p/a:"], {}, "acme/p/a:", None),
    ("ref-no-project", ["show", "a"], {}, "'a'", None),
    ("ref-negative-version", ["show", "acme/p/a:v-1"], {}, "v-1", None),
    ("ref-huge-version", ["show", "acme/p/a:v" + "9" * 30], {}, "9999", None),
    ("ref-unknown-alias", ["show", "acme/p/a:nosuch"], {}, "nosuch", None),
    ("ref-missing-version", ["show", "acme/p/a:v9"], {}, "v9", None),
    ("ref-unknown-artifact", ["get", "acme/p/nosuch", "--root", "{root}/out"], {}, "nosuch", None),
    ("ls-too-deep", ["ls", "acme/p/a/b"], {}, "acme/p/a/b", None),
    ("alias-like-version", ["alias", "set", "acme/p/a:v0", "v3"], {}, "v3", None),
    ("alias-latest", ["alias", "set", "acme/p/a:v0", "latest"], {}, "latest", None),
    ("alias-slash", ["alias", "set", "acme/p/a:v0", "bad/alias"], {}, "bad/alias", None),
    ("alias-rm-missing", ["alias", "rm", "acme/p/a", "nosuch"], {}, "nosuch", None),
    ("rm-missing", ["rm", "acme/p/a:v9"], {}, "v9", None),
    ("diff-missing", ["diff", "acme/p/a:v0", "acme/p/zz:v0"], {}, "zz", None),
    ("commit-bad-name", ["commit", "acme/p/b c", "--dir", "{root}/src"], {}, "b c", None),
    ("commit-bad-alias", ["commit", "acme/p/b", "--dir", "{root}/src", "--alias", "v1"], {}, "v1", None),
    ("entity-env", ["show", "p/a"], {"ARTIFACTFS_ENTITY": "bad entity"}, "bad entity", None),
    ("project-env", ["show", "a"], {"ARTIFACTFS_ENTITY": "acme", "ARTIFACTFS_PROJECT": "../x"}, "../x", None),
    # paths
    ("get-root-is-a-file", ["get", SAMPLE, "--root", "{root}/file"], {}, "file", None),
    ("get-root-under-a-file", ["get", SAMPLE, "--root", "{root}/file/sub"], {}, "file", None),
    ("get-prefix-traversal", ["get", SAMPLE, "--prefix", "../x", "--root", "{root}/out"], {}, "../x", None),
    ("get-prefix-missing", ["get", SAMPLE, "--prefix", "nosuch/", "--root", "{root}/out"], {}, "nosuch", None),
    ("files-prefix-absolute", ["files", SAMPLE, "--prefix", "/abs"], {}, "/abs", None),
    ("commit-dir-missing", ["commit", "acme/p/b", "--dir", "{root}/nosuch"], {}, "nosuch", None),
    ("commit-dir-is-a-file", ["commit", "acme/p/b", "--dir", "{root}/file"], {}, "file", None),
    ("commit-prefix-traversal", ["commit", "acme/p/b", "--dir", "{root}/src", "--prefix", "../up"], {}, "../up",
     None),
    ("commit-not-a-stage", ["commit", "{root}/src"], {}, "src", None),
    ("stage-mountpoint-is-a-file", ["stage", SAMPLE, "{root}/file"], {}, "file", None),
    ("mount-mountpoint-is-a-file", ["mount", "{root}/file"], {}, "file", None),
    ("umount-not-mounted", ["umount", "{root}/src"], {}, "src", None),
    # metadata
    ("metadata-file-missing", ["update", SAMPLE, "--metadata-file", "{root}/nosuch.json"], {}, "nosuch.json", None),
    ("metadata-file-not-json", ["update", SAMPLE, "--metadata-file", "{root}/bad.json"], {}, "bad.json", None),
    ("metadata-file-a-list", ["update", SAMPLE, "--metadata-file", "{root}/list.json"], {}, "list.json", None),
    ("metadata-no-equals", ["update", SAMPLE, "--metadata", "novalue"], {}, "novalue", None),
    ("metadata-no-key", ["update", SAMPLE, "--metadata", "=v"], {}, "=v", None),
    ("metadata-huge", ["update", SAMPLE, "--metadata-file", "{root}/huge.json"], {}, "metadata", None),
    ("metadata-not-serializable", ["update", SAMPLE, "--metadata-file", "{root}/nan.json"], {}, "NaN", None),
    # sizes
    ("cache-size-word", ["--cache-size", "abc", "ls"], {}, "abc", None),
    ("cache-size-negative", ["--cache-size", "-5", "ls"], {}, "-5", None),
    ("cache-size-env", ["ls"], {"ARTIFACTFS_CACHE_SIZE": "10X"}, "10X", None),
    ("cache-size-config", ["ls"], {"ARTIFACTFS_CONFIG": "{root}/size.toml"}, "huge", None),
    ("cache-size-config-bool", ["ls"], {"ARTIFACTFS_CONFIG": "{root}/bool.toml"}, "True", None),
    # durations
    ("ttl-huge", ["ttl", f"{SAMPLE}:v0", "999999999999d"], {}, "999999999999d", None),
    ("ttl-word", ["ttl", f"{SAMPLE}:v0", "abc"], {}, "abc", None),
    ("ttl-negative", ["ttl", f"{SAMPLE}:v0", "-1d"], {}, "'-1'", None),
    ("ttl-negative-after-dashes", ["ttl", f"{SAMPLE}:v0", "--", "-1d"], {}, "-1d", None),
    ("gc-grace-word", ["gc", "--grace", "abc"], {}, "abc", None),
    ("gc-grace-years", ["gc", "--grace", "1y"], {}, "1y", None),
    ("timeout-negative", ["--timeout", "-1", "ls"], {}, "-1", None),
    ("timeout-nan", ["--timeout", "nan", "ls"], {}, "nan", None),
    ("timeout-zero", ["--timeout", "0", "ls"], {}, "'0'", None),
    ("timeout-inf", ["--timeout", "inf", "ls"], {}, "inf", None),
    ("timeout-env", ["ls"], {"ARTIFACTFS_TIMEOUT": "abc"}, "ARTIFACTFS_TIMEOUT", None),
    ("timeout-config", ["ls"], {"ARTIFACTFS_TIMEOUT": "", "ARTIFACTFS_CONFIG": "{root}/timeout.toml"}, "abc",
     None),
    ("mount-timeout-negative", ["mount", "{root}/mp", "--timeout", "-1"], {}, "-1", None),
    ("mount-alias-ttl-nan", ["mount", "{root}/mp", "--alias-ttl", "nan"], {}, "alias-ttl", None),
    ("mount-alias-ttl-negative", ["mount", "{root}/mp", "--alias-ttl", "-1"], {}, "alias-ttl", None),
    ("reference-root-relative", ["ls"], {"ARTIFACTFS_REFERENCE_ROOTS": "data/refs"}, "data/refs", None),
    ("reference-host-bad", ["ls"], {"ARTIFACTFS_REFERENCE_HOSTS": "bad host!"}, "bad host!", None),
    # URLs and stores
    ("endpoint-no-scheme", ["ls"], {"ARTIFACTFS_STORE": "s3://bucket", "AWS_ENDPOINT_URL": "127.0.0.1:8333"},
     "127.0.0.1:8333", None),
    ("endpoint-ftp", ["--endpoint-url", "ftp://127.0.0.1", "--store", "s3://bucket", "ls"], {}, "ftp://", None),
    ("endpoint-port-out-of-range", ["ls"], {"ARTIFACTFS_STORE": "s3://bucket",
                                            "AWS_ENDPOINT_URL": "http://127.0.0.1:70000"}, "70000", None),
    ("store-empty", ["--store", "", "ls"], {}, "--store", None),
    ("store-s3-no-bucket", ["--store", "s3://", "ls"], {}, "s3://", None),
    ("store-s3-no-bucket-prefix", ["--store", "s3:///prefix", "ls"], {}, "s3:///prefix", None),
    ("store-s3-bad-bucket", ["--store", "s3://Bad_Bucket!", "ls"], {}, "Bad_Bucket!", None),
    ("store-other-scheme", ["--store", "gs://bucket", "ls"], {}, "gs://bucket", None),
    ("store-is-a-file", ["--store", "{root}/file", "ls"], {}, "file", None),
    # config files
    ("config-not-toml", ["ls"], {"ARTIFACTFS_CONFIG": "{root}/bad.toml"}, "bad.toml", None),
    ("config-unknown-key", ["ls"], {"ARTIFACTFS_CONFIG": "{root}/unknown.toml"}, "colour", None),
    ("config-store-number", ["ls"], {"ARTIFACTFS_STORE": "", "ARTIFACTFS_CONFIG": "{root}/store.toml"}, "5",
     None),
    ("config-is-a-directory", ["ls"], {"ARTIFACTFS_CONFIG": "{root}/src"}, "src", None),
    # damaged store files
    *[(f"store-{kind}-{args[0]}", args, {}, fragment, kind) for kind, args, fragment in [
        ("record-not-json", ["show", f"{SAMPLE}:v0"], "versions/0.json"),
        ("record-a-list", ["show", f"{SAMPLE}:v0"], "versions/0.json"),
        ("record-bad-manifest", ["get", SAMPLE, "--root", "{root}/out"], "../../etc/passwd"),
        ("record-negative-size", ["show", SAMPLE], "versions/0.json"),
        ("record-other-number", ["show", SAMPLE], "versions/0.json"),
        ("alias-not-json", ["show", f"{SAMPLE}:prod"], "aliases/prod.json"),
        ("alias-no-version", ["show", f"{SAMPLE}:prod"], "aliases/prod.json"),
        ("artifact-not-json", ["show", SAMPLE], "artifact.json"),
        ("ttl-not-json", ["ttl", f"{SAMPLE}:v0"], "ttl/0.json"),
        ("header-no-chunk-size", ["get", "acme/p/h", "--root", "{root}/out"], "chunk_size"),
        ("header-chunk-size-0", ["get", "acme/p/h", "--root", "{root}/out"], "chunk_size"),
        ("header-chunk-size-big", ["get", "acme/p/h", "--root", "{root}/out"], "big"),
        ("header-format-99", ["get", "acme/p/h", "--root", "{root}/out"], "99"),
        ("pack-offset-2^64-1", ["get", "acme/p/h", "--root", "{root}/out"], "offset"),
        ("pack-offset-2^64-1", ["cache", "warm", "acme/p/h"], "offset"),
        ("size-1GiB-tiny-blob", ["get", "acme/p/h", "--root", "{root}/out"], "f"),
        ("size-negative", ["files", "acme/p/h"], "size"),
        ("entry-path-traversal", ["get", "acme/p/h", "--root", "{root}/out"], "../up"),
    ]],
]


def _fill(value: str, root) -> str:
    return str(value).replace("{root}", str(root))


@pytest.mark.parametrize("args,changes,fragment,damage", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_a_meaningful_exit(base, tmp_path, args, changes, fragment, damage):
    root, env = base
    env = {**env, **{k: _fill(v, root) for k, v in changes.items()}}
    env["ARTIFACTFS_CACHE_DIR"] = str(tmp_path / "cache")
    if damage is not None:
        shutil.copytree(env["ARTIFACTFS_STORE"], tmp_path / "store")
        env["ARTIFACTFS_STORE"] = str(tmp_path / "store")
        DAMAGE[damage](LocalStore(env["ARTIFACTFS_STORE"]))
    store = env.get("ARTIFACTFS_STORE") or ""
    before = _snapshot(store)
    res = af(env, *[_fill(a, root) for a in args], timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode not in (0, 70), (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    assert len(lines) == 1 and lines[0].startswith("artifactfs: error:"), res.stderr
    assert fragment in lines[0], lines[0]
    assert _snapshot(store) == before, "a bad input changed the store"
    assert not os.path.exists(root / "out" / "up") and not os.path.exists(root / "up")


def _snapshot(store: str) -> dict:
    if not os.path.isdir(store):
        return {}
    out = {}
    for dirpath, _, names in os.walk(store):
        for n in names:
            path = os.path.join(dirpath, n)
            if "/.locks" not in path:
                out[path] = os.stat(path).st_mtime_ns
    return out


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


def test_a_ttl_that_expires_at_once_says_what_gc_will_do(base, tmp_path):
    root, env = base
    shutil.copytree(env["ARTIFACTFS_STORE"], tmp_path / "store")
    env = dict(env, ARTIFACTFS_STORE=str(tmp_path / "store"))
    res = af(env, "ttl", f"{SAMPLE}:v0", "0d")
    assert res.returncode == 0 and "next `artifactfs gc` deletes it" in res.stderr, res.stderr
    assert af(env, "ttl", f"{SAMPLE}:v0", "none").returncode == 0


def test_a_hung_store_costs_the_timeout_once_not_per_retry(base):
    """A store that accepts connections and never answers: the request fails after about --timeout in
    all (the attempts share it), not three times over."""
    import socket
    import time

    _, env = base
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        env = dict(env, ARTIFACTFS_STORE="s3://bucket/x", AWS_ENDPOINT_URL=f"http://127.0.0.1:{hung.getsockname()[1]}",
                   AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", ARTIFACTFS_TIMEOUT="4")
        start = time.monotonic()
        res = af(env, "ls")
        elapsed = time.monotonic() - start
    assert res.returncode == 5 and "unreachable" in res.stderr, res.stderr
    assert elapsed < 4 * 1.6 + 1.5, f"{elapsed:.1f} s for a 4 s timeout"  # backoff and startup on top
