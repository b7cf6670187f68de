"""Real tools on a warm machine: h5py random slices and Parquet scans (pandas, pyarrow, duckdb) of files
whose bytes are in the disk cache (`cache warm`), read through a new mount and through `artifactfs://`
in a new instance, the page cache dropped before each run, against the same files on local disk after
drop_caches, in the same run; a PyTorch DataLoader epoch (fork and spawn, through the mount and through
artifactfs://, each worker with its own instance) over small files when torch is installed. A tool
that is not installed is skipped with the line that installs it. Medians of --reps. The store is a
local directory: warm reads never reach it. Run as root:
    .venv/bin/python bench/bench_tools.py [--h5-mib 256] [--parquet-rows 4000000] [--reps 3]
"""

import argparse
import importlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from common import drop_caches, goal, skipped

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.fuse_util import Mount, wait_gone  # noqa: E402

NAME = "bench/tools/data"
SLICES = 200
ROW = 1024  # float32 values per HDF5 row: 4 KiB
FILES, FILE_KIB = 2000, 64  # the DataLoader's small files


def have(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def make_data(root: str, h5_mib: int, parquet_rows: int) -> None:
    import numpy as np

    os.makedirs(root, exist_ok=True)
    if have("h5py"):
        import h5py

        rows = h5_mib * 2**20 // (ROW * 4)
        with h5py.File(os.path.join(root, "data.h5"), "w") as f:
            d = f.create_dataset("x", (rows, ROW), dtype="float32", chunks=(64, ROW))
            for start in range(0, rows, 4096):
                d[start:start + 4096] = np.random.default_rng(start).random((min(4096, rows - start), ROW), "float32")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    table = pa.table({"id": np.arange(parquet_rows, dtype="int64"), "x": rng.random(parquet_rows),
                      "y": rng.integers(0, 1000, parquet_rows, dtype="int32"),
                      "tag": pa.array([f"tag{i % 5000}" for i in range(parquet_rows)])})
    pq.write_table(table, os.path.join(root, "data.parquet"), row_group_size=500_000)
    for i in range(FILES):
        sub = os.path.join(root, "small", f"d{i // 200:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:05d}.bin"), "wb") as f:
            f.write(random.Random(i).randbytes(FILE_KIB * 1024))


# ---- the workloads: each takes an opener (path -> binary file object) or a path, returns a checksum ----
def h5_slices(open_file, rel: str = "data.h5") -> float:
    import h5py
    import numpy as np

    with open_file(rel) as raw, h5py.File(raw, "r") as f:
        d = f["x"]
        picks = np.random.default_rng(7).integers(0, d.shape[0], SLICES)
        return sum(float(d[int(i), :8].sum()) for i in picks)


def pandas_scan(open_file) -> float:
    import pandas as pd

    with open_file("data.parquet") as f:
        df = pd.read_parquet(f)
    return float(df["x"].sum()) + int(df["y"].sum()) + len(df["tag"].unique())


def pyarrow_scan(open_file) -> float:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with open_file("data.parquet") as f:
        t = pq.read_table(f)
    return pc.sum(t["x"]).as_py() + pc.sum(t["y"]).as_py() + len(pc.unique(t["tag"]))


def duckdb_scan(path: str) -> float:
    import duckdb

    con = duckdb.connect()
    try:
        x, y, tags = con.execute(f"select sum(x), sum(y), count(distinct tag) from read_parquet('{path}')").fetchone()
    finally:
        con.close()
    return x + y + tags


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


class Places:
    """Where the files are read from: local disk, a new mount on a warm cache, artifactfs:// (new instance)."""

    def __init__(self, tmp: str, local: str, env: dict):
        self.tmp, self.local, self.env = tmp, local, env
        self.mount: Mount | None = None

    def local_open(self, rel):
        return open(os.path.join(self.local, rel), "rb")

    def new_mount(self) -> str:
        self.close_mount()
        drop_caches()
        self.mount = Mount(os.path.join(self.tmp, f"mnt{time.monotonic_ns()}"), self.env)
        return self.mount.path(f"{NAME}:v0")

    def close_mount(self) -> None:
        if self.mount is not None:
            self.mount.close()
            wait_gone(self.mount.pid)
            self.mount = None

    def new_fs(self):
        import fsspec

        drop_caches()
        os.environ.update(ARTIFACTFS_STORE=self.env["ARTIFACTFS_STORE"],
                          ARTIFACTFS_CACHE_DIR=self.env["ARTIFACTFS_CACHE_DIR"],
                          ARTIFACTFS_CONFIG=self.env["ARTIFACTFS_CONFIG"])
        return fsspec.filesystem("artifactfs", skip_instance_cache=True)


def compare(row: str, places: Places, run, reps: int, target: float, fsspec_too: bool = True) -> None:
    """Time `run(opener)` on local disk, through a new mount and through a new artifactfs:// instance,
    each after drop_caches; check every answer against local disk's; report the goal for both."""
    times: dict[str, list[float]] = {"local disk": [], "mount": [], "artifactfs://": []}
    expected = run(places.local_open)  # untimed: imports and first-call setup of the tool
    for _ in range(reps):
        drop_caches()
        t, expected = timed(run, places.local_open)
        times["local disk"].append(t)
        root = places.new_mount()
        t, got = timed(run, lambda rel, root=root: open(os.path.join(root, rel), "rb"))
        assert got == expected, (row, "mount", got, expected)
        times["mount"].append(t)
        places.close_mount()
        if fsspec_too:
            fs = places.new_fs()
            t, got = timed(run, lambda rel, fs=fs: fs.open(f"{NAME}:v0/{rel}", "rb"))
            assert got == expected, (row, "artifactfs://", got, expected)
            times["artifactfs://"].append(t)
    local = statistics.median(times["local disk"])
    for where in ("mount", "artifactfs://"):
        if times[where]:
            ours = statistics.median(times[where])
            goal(f"{row}, warm, through {where} vs local disk (time)", ours / local, target,
                 f"{ours:.3f} s vs {local:.3f} s", at_most=True)


DATALOADER = """
import os, sys, time, torch
from torch.utils.data import DataLoader, Dataset
root, method = sys.argv[1], sys.argv[2]
REMOTE = root.startswith("artifactfs://")
_fs = None
def fs():  # each worker process its own artifactfs:// instance (what unpickling one gives it)
    global _fs
    if _fs is None:
        import fsspec
        _fs = fsspec.filesystem("artifactfs", skip_instance_cache=True)
    return _fs
if REMOTE:
    paths = sorted(fs().find(root))
    _fs = None  # not inherited by forked workers
else:
    paths = sorted(os.path.join(d, f) for d, _, fs_ in os.walk(root) for f in fs_)
class Files(Dataset):
    def __len__(self): return len(paths)
    def __getitem__(self, i):
        if REMOTE:
            return len(fs().cat_file(paths[i]))
        with open(paths[i], "rb") as f: return len(f.read())
if __name__ == "__main__":
    start = time.perf_counter()
    loader = DataLoader(Files(), batch_size=32, shuffle=True, num_workers=4, multiprocessing_context=method)
    total = sum(int(b.sum()) for b in loader)
    print(time.perf_counter() - start, total)
"""


def dataloader(places: Places, reps: int) -> None:
    if not have("torch"):
        skipped("PyTorch DataLoader (fork and spawn), warm, vs local disk", "torch not installed: pip install torch")
        return
    script = os.path.join(places.tmp, "loader.py")
    with open(script, "w") as f:
        f.write(DATALOADER)
    env = dict(os.environ, **{k: v for k, v in places.env.items() if k.startswith("ARTIFACTFS_")})
    for method in ("fork", "spawn"):
        times: dict[str, list[float]] = {"local disk": [], "mount": [], "artifactfs://": []}
        for _ in range(reps):
            for where in times:
                if where == "mount":
                    root = os.path.join(places.new_mount(), "small")
                elif where == "artifactfs://":
                    drop_caches()
                    root = f"artifactfs://{NAME}:v0/small"
                else:
                    drop_caches()
                    root = os.path.join(places.local, "small")
                out = subprocess.run([sys.executable, script, root, method], capture_output=True, text=True,
                                     check=True, env=env).stdout.split()
                assert int(out[1]) == FILES * FILE_KIB * 1024, out
                times[where].append(float(out[0]))
                places.close_mount()
        local = statistics.median(times["local disk"])
        for where in ("mount", "artifactfs://"):
            ours = statistics.median(times[where])
            goal(f"PyTorch DataLoader ({method}, 4 workers, shuffle), warm, through {where} vs local disk (time)",
                 ours / local, 1.5, f"{ours:.2f} s vs {local:.2f} s", at_most=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--h5-mib", type=int, default=256)
    parser.add_argument("--parquet-rows", type=int, default=4_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tmp", default="/var/tmp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-tools-", dir=args.tmp) as tmp:
        local = os.path.join(tmp, "local")
        make_data(local, args.h5_mib, args.parquet_rows)
        env = dict(os.environ, ARTIFACTFS_STORE=os.path.join(tmp, "store"),
                   ARTIFACTFS_CACHE_DIR=os.path.join(tmp, "cache"), ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"))
        cli = [sys.executable, "-m", "artifactfs_cli.main"]
        subprocess.run([*cli, "commit", "--dir", local, NAME], env=env, check=True, capture_output=True)
        subprocess.run([*cli, "cache", "warm", NAME], env=env, check=True, capture_output=True)
        sizes = {rel: os.path.getsize(os.path.join(local, rel)) for rel in ("data.h5", "data.parquet")
                 if os.path.exists(os.path.join(local, rel))}
        print(f"local-directory store, every file in the disk cache (cache warm); {os.cpu_count()} CPUs; "
              f"files: {', '.join(f'{k} {v / 2**20:.0f} MiB' for k, v in sizes.items())}, "
              f"{FILES} x {FILE_KIB} KiB; medians of {args.reps}, page cache dropped before each run")
        places = Places(tmp, local, env)
        try:
            if have("h5py"):
                compare(f"h5py, {SLICES} random row slices", places, h5_slices, args.reps, 1.5)
            else:
                skipped("h5py random slices, warm, vs local disk", "h5py not installed: pip install h5py")
            compare("pandas.read_parquet scan", places, pandas_scan, args.reps, 1.2)
            compare("pyarrow.parquet.read_table scan", places, pyarrow_scan, args.reps, 1.2)
            if have("duckdb"):
                # duckdb opens the path itself: through the mount only (artifactfs:// with duckdb: issue 34)
                compare("duckdb read_parquet scan", places,
                        lambda opener: duckdb_scan(_path_of(opener)), args.reps, 1.2, fsspec_too=False)
            else:
                skipped("duckdb Parquet scan, warm, vs local disk", "duckdb not installed: pip install duckdb")
            dataloader(places, args.reps)
        finally:
            places.close_mount()


def _path_of(opener) -> str:
    with opener("data.parquet") as f:
        return f.name


if __name__ == "__main__":
    main()
