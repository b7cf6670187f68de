"""artifactfs:// from the data tools that speak fsspec (pandas, pyarrow, duckdb, polars, Dask,
universal-pathlib), and what it does with a damaged cache, a store that is gone and two writers at
once."""

import os
import socket
import threading
import time

import fsspec
import pytest

import artifactfs
from artifactfs.client import Client
from artifactfs.fsspec import ArtifactFileSystem

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def tables(env, tmp_path):
    """acme/tabular/sales:v0 with a CSV and a Parquet directory of two files."""
    ArtifactFileSystem.clear_instance_cache()
    src = tmp_path / "src"
    (src / "parquet").mkdir(parents=True)
    df = pd.DataFrame({"id": range(1000), "region": ["north", "south"] * 500, "amount": [i * 0.5 for i in range(1000)]})
    df.to_csv(src / "sales.csv", index=False)
    pq.write_table(pa.Table.from_pandas(df.iloc[:500], preserve_index=False), src / "parquet" / "part-0.parquet")
    pq.write_table(pa.Table.from_pandas(df.iloc[500:], preserve_index=False), src / "parquet" / "part-1.parquet")
    art = artifactfs.Artifact("acme/tabular/sales", type="dataset")
    art.add_dir(str(src))
    art.save()
    yield df
    ArtifactFileSystem.clear_instance_cache()


def test_pandas_reads_csv_and_parquet(tables):
    df = pd.read_csv("artifactfs://acme/tabular/sales:latest/sales.csv")
    pd.testing.assert_frame_equal(df, tables)
    part = pd.read_parquet("artifactfs://acme/tabular/sales/v0/parquet/part-1.parquet", columns=["amount"])
    assert part["amount"].tolist() == tables["amount"].iloc[500:].tolist()


def test_pyarrow_dataset_through_fsspec_handler(tables):
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs = PyFileSystem(FSSpecHandler(fsspec.filesystem("artifactfs")))
    table = ds.dataset("acme/tabular/sales:v0/parquet", filesystem=fs, format="parquet").to_table(
        columns=["id", "region"], filter=ds.field("region") == "south")
    assert sorted(table.column("id").to_pylist()) == list(range(1, 1000, 2))
    assert pq.read_table("acme/tabular/sales/latest/parquet/part-0.parquet", filesystem=fs).num_rows == 500


def test_duckdb_reads_parquet_through_the_registered_filesystem(tables):
    """duckdb asks fsspec for `modified` (a version's files were made at its commit) before it reads."""
    duckdb = pytest.importorskip("duckdb")
    fs = fsspec.filesystem("artifactfs")
    assert fs.modified("acme/tabular/sales:v0/sales.csv") == fs.created("acme/tabular/sales:v0/sales.csv")
    assert fs.modified("acme/tabular/sales:v0/sales.csv").tzinfo is not None
    con = duckdb.connect()
    try:
        con.register_filesystem(fs)
        rows, total = con.execute("select count(*), sum(amount) from "
                                  "read_parquet('artifactfs://acme/tabular/sales:v0/parquet/*.parquet')").fetchone()
        south = con.execute("select count(*) from read_csv('artifactfs://acme/tabular/sales:latest/sales.csv') "
                            "where region = 'south'").fetchone()[0]
    finally:
        con.close()
    assert (rows, total, south) == (1000, tables["amount"].sum(), 500)


def test_polars_reads_through_pyarrow_and_file_objects(tables):
    """polars hands no unknown scheme to fsspec itself; `use_pyarrow=True`, a file object, or a pyarrow
    dataset (lazy) reach artifactfs:// (docs/PYTHON_API.md shows these)."""
    pl = pytest.importorskip("polars")
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    url = "artifactfs://acme/tabular/sales:v0/parquet/part-1.parquet"
    assert pl.read_parquet(url, use_pyarrow=True)["id"].to_list() == list(range(500, 1000))
    with fsspec.open(url, "rb") as f:
        assert pl.read_parquet(f).height == 500
    arrow_fs = PyFileSystem(FSSpecHandler(fsspec.filesystem("artifactfs")))
    lazy = pl.scan_pyarrow_dataset(ds.dataset("acme/tabular/sales:v0/parquet", filesystem=arrow_fs, format="parquet"))
    totals = lazy.group_by("region").agg(pl.col("amount").sum()).collect()
    assert dict(totals.iter_rows()) == tables.groupby("region")["amount"].sum().to_dict()


def test_dask_reads_parquet(tables):
    dd = pytest.importorskip("dask.dataframe")
    import dask

    with dask.config.set(scheduler="threads"):
        frame = dd.read_parquet("artifactfs://acme/tabular/sales:latest/parquet")
        total = frame.groupby("region")["amount"].sum().compute()
    assert total.to_dict() == tables.groupby("region")["amount"].sum().to_dict()


def test_universal_pathlib(tables):
    upath = pytest.importorskip("upath")
    root = upath.UPath("artifactfs://acme/tabular/sales/v0")
    assert sorted(p.name for p in root.iterdir()) == ["parquet", "sales.csv"]
    assert (root / "sales.csv").read_bytes().startswith(b"id,region,amount")
    assert sorted(p.name for p in (root / "parquet").glob("*.parquet")) == ["part-0.parquet", "part-1.parquet"]


def test_damaged_cache_piece_is_never_returned(env, tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "w.bin").write_bytes(data)
    art = artifactfs.Artifact("acme/models/w", type="model")
    art.add_file(str(tmp_path / "w.bin"))
    art.save()
    ArtifactFileSystem.clear_instance_cache()
    first = fsspec.filesystem("artifactfs")
    assert first.cat_file("acme/models/w:v0/w.bin") == data
    assert first.flush_cache(timeout=30)  # now cached
    client = Client()
    m = client.manifest(client.resolve("acme/models/w:v0"))
    chunks = m[m.find("w.bin")].chunks
    damaged = client.cache.path(chunks[1])
    with open(damaged, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    ArtifactFileSystem.clear_instance_cache()
    fs = fsspec.filesystem("artifactfs")
    assert fs.cat_file("acme/models/w:v0/w.bin", start=(1 << 20) + 990, end=(1 << 20) + 1010) == \
        data[(1 << 20) + 990:(1 << 20) + 1010]
    assert fs.cat_file("acme/models/w:v0/w.bin") == data
    ArtifactFileSystem.clear_instance_cache()


def test_store_outage_is_an_oserror_within_the_timeout(env, backend, tmp_path):
    if backend != "s3":
        pytest.skip("an outage of an S3 endpoint")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    fs = ArtifactFileSystem(endpoint_url=f"http://127.0.0.1:{port}", timeout=1, skip_instance_cache=True)
    started = time.monotonic()
    with pytest.raises(OSError) as err:
        fs.cat_file("acme/vision/cats:latest/labels.csv")
    assert not isinstance(err.value, FileNotFoundError)
    assert time.monotonic() - started < 15


def test_two_writers_at_once_lose_nothing(env, tmp_path):
    ArtifactFileSystem.clear_instance_cache()
    fsspec.filesystem("artifactfs").pipe_file("acme/runs/metrics:latest/start.txt", b"0")
    errors = []

    def writer(n: int):
        try:
            fs = ArtifactFileSystem(skip_instance_cache=True)
            for i in range(3):
                fs.pipe_file(f"acme/runs/metrics:latest/w{n}/{i}.txt", f"{n}.{i}".encode())
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    fs = ArtifactFileSystem(skip_instance_cache=True)
    latest = fs.info("acme/runs/metrics:latest")
    assert latest["version"] == "v9" and latest["files"] == 10  # every write, on top of every other
    assert sorted(fs.find("acme/runs/metrics/latest")) == sorted(
        ["acme/runs/metrics/latest/start.txt"]
        + [f"acme/runs/metrics/latest/w{n}/{i}.txt" for n in range(3) for i in range(3)])
    ArtifactFileSystem.clear_instance_cache()
