"""artifactfs:// through fsspec: listings, info, verified reads by range, paths with and without the
colon, errors, writes as versions, transactions, pickling and forked readers; on both stores."""

import errno
import io
import multiprocessing
import os
import pickle
import random

import fsspec
import pytest

import artifactfs
from artifactfs.hashing import CHUNK_SIZE

BIG = 3 * CHUNK_SIZE + 12345  # four 1 MiB chunks, the last one short


@pytest.fixture
def dataset(env, tmp_path):
    """acme/vision/cats v0 (labels.csv, images/, data/big.bin) and v1 (labels changed), alias best -> v0."""
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "data").mkdir()
    (src / "labels.csv").write_text("path,label\ncat.png,cat\ndog.png,dog\n")
    (src / "images" / "cat.png").write_bytes(b"\x89PNG cat" * 100)
    (src / "images" / "dog.png").write_bytes(b"\x89PNG dog" * 100)
    big = random.Random(7).randbytes(BIG)
    (src / "data" / "big.bin").write_bytes(big)
    art = artifactfs.Artifact("acme/vision/cats", type="dataset")
    art.add_dir(str(src))
    art.save(aliases=["best"])
    (src / "labels.csv").write_text("path,label\ncat.png,cat\n")
    art = artifactfs.Artifact("acme/vision/cats", type="dataset")
    art.add_dir(str(src))
    art.save()
    return {"src": src, "big": big}


def test_listings_mirror_the_mount(fs, dataset):
    assert fs.ls("", detail=False) == ["acme"]
    assert fs.ls("artifactfs://acme", detail=False) == ["acme/vision"]
    assert fs.ls("acme/vision", detail=False) == ["acme/vision/cats"]
    rows = {r["name"]: r for r in fs.ls("acme/vision/cats")}
    assert set(rows) == {"acme/vision/cats/v0", "acme/vision/cats/v1", "acme/vision/cats/best",
                         "acme/vision/cats/latest"}
    assert rows["acme/vision/cats/best"]["version"] == "v0" and rows["acme/vision/cats/latest"]["version"] == "v1"
    assert sorted(fs.ls("acme/vision/cats:latest", detail=False)) == [
        "acme/vision/cats:latest/data", "acme/vision/cats:latest/images", "acme/vision/cats:latest/labels.csv"]
    assert sorted(fs.ls("acme/vision/cats/v0/images", detail=False)) == [
        "acme/vision/cats/v0/images/cat.png", "acme/vision/cats/v0/images/dog.png"]
    assert sorted(fs.find("acme/vision/cats:v1")) == [
        "acme/vision/cats:v1/data/big.bin", "acme/vision/cats:v1/images/cat.png",
        "acme/vision/cats:v1/images/dog.png", "acme/vision/cats:v1/labels.csv"]
    assert fs.glob("acme/vision/cats/latest/images/*.png") == [
        "acme/vision/cats/latest/images/cat.png", "acme/vision/cats/latest/images/dog.png"]
    assert fs.du("acme/vision/cats:v0") == BIG + 800 + 800 + len("path,label\ncat.png,cat\ndog.png,dog\n")


def test_info_checksum_and_ukey(fs, dataset):
    info = fs.info("acme/vision/cats:best/data/big.bin")
    assert info["type"] == "file" and info["size"] == BIG and info["version"] == "v0"
    assert info["reference"] is None and len(info["digest"]) == 32
    assert fs.checksum("acme/vision/cats/v0/data/big.bin") == info["digest"]
    assert fs.ukey("acme/vision/cats/v0/labels.csv") != fs.ukey("acme/vision/cats/v1/labels.csv")
    assert fs.ukey("acme/vision/cats/v1/labels.csv") == fs.ukey("acme/vision/cats/v1/labels.csv")
    root = fs.info("acme/vision/cats/latest")
    assert root["type"] == "directory" and root["version"] == "v1" and root["files"] == 4
    assert fs.isdir("acme/vision/cats:v0/images") and fs.isfile("acme/vision/cats:v0/labels.csv")
    assert fs.isdir("acme/vision/cats") and fs.isdir("acme/vision") and fs.exists("acme")


def test_reads_are_the_committed_bytes(fs, dataset):
    big = dataset["big"]
    assert fs.cat_file("acme/vision/cats:v0/labels.csv") == b"path,label\ncat.png,cat\ndog.png,dog\n"
    assert fs.cat_file("acme/vision/cats/latest/labels.csv") == b"path,label\ncat.png,cat\n"
    assert fs.cat_file("acme/vision/cats:v0/data/big.bin") == big
    assert fs.cat_file("acme/vision/cats:v0/data/big.bin", start=CHUNK_SIZE - 5, end=CHUNK_SIZE + 5) == \
        big[CHUNK_SIZE - 5:CHUNK_SIZE + 5]
    assert fs.cat_file("acme/vision/cats:v0/data/big.bin", start=-100) == big[-100:]
    rng = random.Random(1)
    with fs.open("artifactfs://acme/vision/cats/v0/data/big.bin", "rb") as f:
        assert f.seekable() and f.size == BIG
        for _ in range(200):
            at, n = rng.randrange(BIG), rng.choice([1, 100, 4096, 65536, CHUNK_SIZE + 3])
            f.seek(at)
            assert f.read(n) == big[at:at + n]
        f.seek(0)
        assert f.read() == big  # sequential: read ahead in whole GETs
    with fsspec.open("artifactfs://acme/vision/cats:best/labels.csv", "rt") as f:
        assert f.readline() == "path,label\n"
    starts = [0, 10, BIG - 10]
    assert fs.cat_ranges(["acme/vision/cats:v0/data/big.bin"] * 3, starts, [s + 10 for s in starts]) == \
        [big[s:s + 10] for s in starts]


def test_get_writes_verified_files(fs, dataset, tmp_path):
    fs.get("acme/vision/cats:v0/data/big.bin", str(tmp_path / "big.bin"))
    assert (tmp_path / "big.bin").read_bytes() == dataset["big"]
    fs.get("acme/vision/cats/v0/images", str(tmp_path / "out"), recursive=True)
    assert sorted(os.listdir(tmp_path / "out")) == ["cat.png", "dog.png"]
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]


def test_unknown_names_are_file_not_found(fs, dataset):
    for path in ("nobody", "acme/nothing", "acme/vision/dogs", "acme/vision/dogs:latest/x",
                 "acme/vision/cats:v9/labels.csv", "acme/vision/cats:nope/labels.csv",
                 "acme/vision/cats/latest/missing.csv", "acme/vision/cats:latest/../../etc/passwd",
                 "acme/vision/bad name/x", "acme/vision/cats:v0/images/cat.png/x"):
        with pytest.raises(FileNotFoundError) as err:
            fs.open(path).read() if ":" in path or path.count("/") > 2 else fs.ls(path)
        assert err.value.errno == errno.ENOENT, path
    with pytest.raises(FileNotFoundError, match="v9"):
        fs.cat_file("acme/vision/cats:v9/labels.csv")
    with pytest.raises(IsADirectoryError):
        fs.cat_file("acme/vision/cats:v0/images")


def test_api_entry_open_streams(env, dataset):
    entry = artifactfs.artifact("acme/vision/cats:v0").get_entry("data/big.bin")
    with entry.open() as f:
        f.seek(CHUNK_SIZE * 2 + 7)
        assert f.read(10) == dataset["big"][CHUNK_SIZE * 2 + 7:CHUNK_SIZE * 2 + 17]
        assert not isinstance(f, io.BytesIO)
    with entry.open() as f:
        assert f.read() == dataset["big"]


def test_writes_commit_versions(fs, dataset, tmp_path):
    fs.pipe_file("acme/vision/cats:latest/notes/README.txt", b"hello")
    rows = {r["name"]: r["version"] for r in fs.ls("acme/vision/cats")}
    assert rows["acme/vision/cats/latest"] == "v2"
    assert fs.cat_file("acme/vision/cats:v2/notes/README.txt") == b"hello"
    assert fs.cat_file("acme/vision/cats:v2/labels.csv") == b"path,label\ncat.png,cat\n"  # v1's files stay
    local = tmp_path / "model.bin"
    local.write_bytes(b"weights" * 1000)
    fs.put(str(local), "artifactfs://acme/models/net")  # a new artifact: the file at the root
    assert fs.ls("acme/models/net:latest", detail=False) == ["acme/models/net:latest/model.bin"]
    assert artifactfs.artifact("acme/models/net:v0").type == "dataset"
    fs.rm("acme/vision/cats/latest/images", recursive=True)
    assert sorted(fs.ls("acme/vision/cats:v3", detail=False)) == [
        "acme/vision/cats:v3/data", "acme/vision/cats:v3/labels.csv", "acme/vision/cats:v3/notes"]


def test_copies_and_moves_are_new_entries_for_the_same_bytes(fs, dataset, client):
    """cp within or across artifacts, from any version, uploads nothing (an entry for the same
    content); a move within one artifact is one version; moving out of an immutable version writes
    nothing at all."""
    def content():
        return sorted(o.key for p in ("blobs/", "packs/") for o in client.repo.store.list(p))

    before = content()
    fs.cp("acme/vision/cats:v0/labels.csv", "acme/vision/cats:latest/old/labels.csv")  # v2
    fs.cp("acme/vision/cats:v0/data/", "acme/vision/copy/", recursive=True)  # a new artifact, its content
    fs.mv("acme/vision/cats:latest/images", "acme/vision/cats:latest/pictures", recursive=True)  # v3
    assert content() == before
    assert fs.cat_file("acme/vision/cats:v2/old/labels.csv") == b"path,label\ncat.png,cat\ndog.png,dog\n"
    assert fs.cat_file("acme/vision/copy:v0/big.bin") == dataset["big"]
    assert fs.checksum("acme/vision/copy:v0/big.bin") == fs.checksum("acme/vision/cats:v0/data/big.bin")
    assert fs.ls("acme/vision/cats:v3/pictures", detail=False) == [
        "acme/vision/cats:v3/pictures/cat.png", "acme/vision/cats:v3/pictures/dog.png"]
    assert not fs.exists("acme/vision/cats:v3/images") and fs.exists("acme/vision/cats:v2/images/cat.png")
    with pytest.raises(PermissionError, match="immutable"):
        fs.mv("acme/vision/cats:v0/labels.csv", "acme/vision/cats:latest/moved.csv")
    assert not fs.exists("acme/vision/cats:latest/moved.csv") and client.resolve("acme/vision/cats").version == 3


def test_exclusive_creation_holds_against_other_writers(fs, dataset, client):
    """open 'xb' / pipe_file(mode='create') refuse a path latest has, and again at commit against a
    version another writer made meanwhile: nothing of the losing block is written."""
    name = "acme/vision/cats:latest"
    with pytest.raises(FileExistsError):
        fs.open(f"{name}/labels.csv", "xb")
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{name}/labels.csv", b"x", mode="create")
    with pytest.raises(FileExistsError), fs.transaction:
        fs.pipe_file(f"{name}/other.txt", b"other")
        with fs.open(f"{name}/claim.txt", "xb") as f:
            f.write(b"mine")
        other = artifactfs.Artifact("acme/vision/cats", type="dataset")
        other.add_file(__file__, "claim.txt")
        other.save()  # v2: another writer took claim.txt first
    assert client.resolve("acme/vision/cats").version == 2
    assert not fs.exists("acme/vision/cats:latest/other.txt")
    fs.pipe_file(f"{name}/fresh.txt", b"fresh", mode="create")
    assert fs.cat_file(f"{name}/fresh.txt") == b"fresh"


def test_removing_every_file_leaves_an_empty_version(fs, dataset, cli, tmp_path):
    fs.rm(["acme/vision/cats:latest/labels.csv", "acme/vision/cats:latest/images"], recursive=True)
    fs.rm("acme/vision/cats:latest/data/*")  # a glob
    assert fs.ls("acme/vision/cats:v3") == [] and fs.info("acme/vision/cats:v3")["files"] == 0
    assert fs.du("acme/vision/cats:v1", withdirs=True) == fs.du("acme/vision/cats:v1")  # directories are 0
    res = cli("get", "acme/vision/cats:v3", "--root", tmp_path / "out")
    assert res.exit_code == 0 and os.listdir(tmp_path / "out") == []
    assert cli("files", "acme/vision/cats:v3").output == ""


def test_a_transaction_describes_the_version_it_makes(fs, dataset, client):
    """describe(): description, metadata, aliases, run and inputs of the version a transaction makes,
    checked when called; one for an artifact nothing was written to changes nothing; a block that
    raises records none of it."""
    from artifactfs.errors import UsageError

    with fs.transaction:
        fs.transaction.describe("acme/vision/cats", description="relabelled", metadata={"by": "ann", "n": [1, 2]},
                                aliases=["review"], run="relabel-1", inputs=["acme/vision/cats:best"])
        fs.transaction.describe("acme/vision/untouched", description="never written")
        fs.pipe_file("acme/vision/cats:latest/notes.txt", b"relabelled")
    record = client.resolve("acme/vision/cats:review")
    assert (record.version, record.description, record.metadata) == (2, "relabelled", {"by": "ann", "n": [1, 2]})
    assert record.run == "relabel-1" and record.inputs == ["acme/vision/cats:v0"]  # pinned as a commit pins it
    assert not fs.exists("acme/vision/untouched")
    for bad in ({"metadata": {"x": object()}}, {"aliases": ["v3"]}, {"inputs": ["acme/vision/cats:v0"]}):
        with pytest.raises(UsageError), fs.transaction:
            fs.transaction.describe("acme/vision/cats", **bad)
    with pytest.raises(RuntimeError, match="boom"), fs.transaction:
        fs.transaction.describe("acme/vision/cats", aliases=["never"])
        fs.pipe_file("acme/vision/cats:latest/c.txt", b"c")
        raise RuntimeError("boom")
    assert "never" not in client.repo.aliases(client.artifact_name("acme/vision/cats"))


def test_transaction_is_one_version_or_nothing(fs, dataset, tmp_path):
    with fs.transaction:
        fs.pipe_file("acme/vision/cats:latest/a.txt", b"a")
        with fs.open("acme/vision/cats/latest/sub/b.txt", "wb") as f:
            f.write(b"b")
        fs.rm("acme/vision/cats:latest/labels.csv")
        assert fs.info("acme/vision/cats:latest")["version"] == "v1"  # nothing committed yet
    assert fs.info("acme/vision/cats:latest")["version"] == "v2"
    assert fs.cat_file("acme/vision/cats:v2/a.txt") == b"a" and fs.cat_file("acme/vision/cats:v2/sub/b.txt") == b"b"
    assert not fs.exists("acme/vision/cats:v2/labels.csv")
    with pytest.raises(RuntimeError, match="boom"), fs.transaction:
        fs.pipe_file("acme/vision/cats:latest/c.txt", b"c")
        raise RuntimeError("boom")
    assert fs.info("acme/vision/cats:latest")["version"] == "v2"
    assert not [n for n in os.listdir(tmp_path) if n.startswith("artifactfs-write-")]


def test_writes_to_versions_are_refused(fs, dataset):
    with pytest.raises(PermissionError, match="immutable"):
        fs.pipe_file("acme/vision/cats:v0/x.txt", b"x")
    with pytest.raises(PermissionError, match="alias 'best'"):
        fs.pipe_file("acme/vision/cats/best/x.txt", b"x")
    assert fs.info("acme/vision/cats:latest")["version"] == "v1"


def test_pickled_instance_reads(fs, dataset):
    again = pickle.loads(pickle.dumps(fs))
    assert again.cat_file("acme/vision/cats:v0/labels.csv").startswith(b"path,label")


def _worker_reads(args):
    fs, paths, expected = args
    return all(fs.cat_file(p) == expected[p] for p in paths)


def test_forked_workers_read_like_a_dataloader(fs, dataset):
    src = dataset["src"]
    files = {f"acme/vision/cats:v0/{p}": (src / p).read_bytes() for p in ("images/cat.png", "images/dog.png")}
    files["acme/vision/cats:v0/data/big.bin"] = dataset["big"]
    fs.cat_file("acme/vision/cats:v0/images/cat.png")  # the parent has used its client before the fork
    rng = random.Random(3)
    jobs = [(fs, rng.sample(sorted(files), k=len(files)), files) for _ in range(8)]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        assert pool.map(_worker_reads, jobs) == [True] * 8


def test_shuffled_small_files_bring_their_pack_in_one_fetch(fs, env, tmp_path):
    """Once an eighth of a pack's files were read cold, the rest arrive with one background GET: the
    reader that follows finds them in the disk cache, each still checked against its digest."""

    src = tmp_path / "many"
    src.mkdir()
    files = {f"f{i:03d}.bin": random.Random(i).randbytes(10_000) for i in range(200)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    art = artifactfs.Artifact("acme/vision/many", type="dataset")
    art.add_dir(str(src))
    art.save()
    order = random.Random(3).sample(sorted(files), len(files))
    fetcher = fs.client.fetcher
    for name in order[:30]:  # more than 200 / 8 cold reads
        assert fs.cat_file(f"acme/vision/many:v0/{name}") == files[name]
    fetcher.wait_prefetches(timeout=10)
    fetched = fetcher.fetched_bytes
    assert fetched < 1.3 * sum(map(len, files.values()))  # each file once, give or take the 30 alone
    for name in order[30:]:
        assert fs.cat_file(f"acme/vision/many/v0/{name}") == files[name]
    assert fetcher.fetched_bytes == fetched  # all from the cache
