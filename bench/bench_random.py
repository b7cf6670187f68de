"""Random reads of one large file, as sqlite, parquet column reads, HDF5 and `np.load(mmap_mode="r")` do:
fio `--rw=randread` at 4 KiB and 64 KiB through the artifactfs mount, cold (fresh mount, empty cache) and
warm (the bytes in the disk cache, not in the page cache: a new job on the same machine), beside the
same file on local disk with its page cache dropped and read through the pyfuse3 floor (fuse_floor.py
--backing: what any pyfuse3 file system reading a local file pays); the read amplification (bytes the daemon read
from the store and its cache per byte returned); and the time to the first byte of a cold file (open
+ read 4 KiB) through artifactfs, rclone and s3fs; and, when h5py is installed (`pip install h5py`),
h5py reading random small slices of a chunked HDF5 file, cold, with the bytes fetched per byte needed.
Run as root:
    .venv/bin/python bench/bench_random.py [--mib 1024] [--seconds 15] [--h5-mib 512]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from bench_mount import ForeignMount, close_ours, ours, upload_plain
from common import BUCKET, drop_caches, goal, make_big_file, seaweed_server, skipped
from fuse_floor import FloorMount

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.client import Client  # noqa: E402
from tests.fuse_util import Mount  # noqa: E402

NAME = "bench/random/big"


def fio(path: str, bs: str, seconds: int, size: int) -> dict:
    """IOPS, median latency (ms) and bytes read of a random-read fio job on `path`."""
    escaped = path.replace(":", "\\:")  # fio splits --filename at ':'
    out = subprocess.run(["fio", "--name=r", f"--filename={escaped}", "--rw=randread", f"--bs={bs}",
                          f"--size={size}", f"--runtime={seconds}", "--time_based", "--ioengine=psync",
                          "--invalidate=1", "--output-format=json"], capture_output=True, text=True, check=True)
    job = json.loads(out.stdout)["jobs"][0]["read"]
    return {"iops": job["iops"], "p50": job["clat_ns"]["percentile"]["50.000000"] / 1e6, "bytes": job["io_bytes"]}


def stats(mount) -> dict:
    return json.loads(os.getxattr(mount.mountpoint, "user.artifactfs.stats"))


def first_byte(path: str) -> float:
    start = time.perf_counter()
    with open(path, "rb") as f:
        f.read(4096)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--h5-mib", type=int, default=512)
    parser.add_argument("--tmp", default="/var/tmp")
    args = parser.parse_args()
    size = args.mib * 2**20
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-random-", dir=args.tmp) as tmp, \
            seaweed_server() as server:
        local = os.path.join(tmp, "big")
        os.makedirs(local)
        local_file = os.path.join(local, "big.bin")
        make_big_file(local_file, size)
        env = dict(os.environ, ARTIFACTFS_STORE=f"s3://{BUCKET}/afs", ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"),
                   ARTIFACTFS_CACHE_DIR=os.path.join(tmp, "commit-cache"))
        client = Client(store=env["ARTIFACTFS_STORE"], cache_dir=env["ARTIFACTFS_CACHE_DIR"])
        client.commit_dir(local, NAME, "dataset")
        client.close()
        upload_plain(server, local, "plain/big")
        print(f"1 file of {args.mib} MiB on SeaweedFS at {server.endpoint}; fio psync, {args.seconds} s a run; "
              f"{os.cpu_count()} CPUs")
        print("\n         bs   system                     IOPS   p50 ms   amplification (store + cache bytes per byte)")
        for bs in ("4k", "64k"):
            drop_caches()
            base = fio(local_file, bs, args.seconds, size)
            print(f"  {bs:>8}   local disk, cold page cache {base['iops']:8.0f} {base['p50']:8.2f}")
            fm = FloorMount(os.path.join(tmp, "floor"), args.mib, 1, 1, backing=local_file)
            try:
                drop_caches()
                floor = fio(fm.path("big", "big.bin"), bs, args.seconds, size)
            finally:
                fm.close()
            print(f"  {bs:>8}   pyfuse3 floor over it       {floor['iops']:8.0f} {floor['p50']:8.2f}   "
                  f"({floor['iops'] / base['iops']:.2f}x local; fuse_floor.py --backing: a pread in a thread per read)")
            for label in ("cold", "warm"):
                m = ours(env, tmp) if label == "cold" else warm_mount(env, tmp)
                try:
                    before = stats(m)
                    r = fio(m.path(f"{NAME}:v0", "big.bin"), bs, args.seconds, size)
                    after = stats(m)
                finally:
                    close_ours(m)
                moved = sum(after[k] - before[k] for k in ("fetched_bytes", "cache_read_bytes"))
                print(f"  {bs:>8}   artifactfs {label:16s} {r['iops']:8.0f} {r['p50']:8.2f}   "
                      f"{moved / max(r['bytes'], 1):6.2f}   ({r['iops'] / base['iops']:.2f}x local, "
                      f"{r['iops'] / floor['iops']:.2f}x the floor)")
                if label == "warm":
                    goal(f"random {bs} reads of a file in the disk cache, new mount, vs local disk",
                         r["iops"] / base["iops"], 0.3, f"{r['iops']:,.0f} vs {base['iops']:,.0f} IOPS",
                         bytes_per_byte=round(moved / max(r["bytes"], 1), 2))
        print("\ntime to first byte of a cold 1 file (open + read 4 KiB, after a stat), median of 3")
        results = {}
        for kind in ("artifactfs", "rclone", "s3fs"):
            if kind != "artifactfs" and shutil.which(kind) is None:
                skipped(f"first byte of a cold file vs {kind}", f"{kind} not installed: apt-get install {kind}")
                continue
            times = []
            for rep in range(3):
                if kind == "artifactfs":
                    m = ours(env, tmp)
                    try:
                        path = m.path(f"{NAME}:v0", "big.bin")
                        os.stat(path)
                        times.append(first_byte(path))
                    finally:
                        close_ours(m)
                else:
                    drop_caches()
                    fm = ForeignMount(kind, server, os.path.join(tmp, f"{kind}-{rep}"), tmp)
                    try:
                        path = os.path.join(fm.mountpoint, "big", "big.bin")
                        os.stat(path)
                        times.append(first_byte(path))
                    finally:
                        fm.close()
            results[kind] = sorted(times)[1]
            print(f"  {kind:12s} {results[kind] * 1000:7.1f} ms")
        for kind in set(results) - {"artifactfs"}:
            goal(f"first byte of a cold {args.mib} MiB file vs {kind}", results[kind] / results["artifactfs"], 1.0,
                 f"{results['artifactfs'] * 1000:.1f} ms vs {results[kind] * 1000:.1f} ms")
        h5_slices(env, tmp, args.h5_mib)


H5_NAME = "bench/random/h5"
ROW = 1024  # float32 values per row: 4 KiB
SLICES = 200


def h5_slices(env: dict, tmp: str, mib: int) -> None:
    """h5py reading SLICES random rows of a chunked dataset, cold, through the mount and from local disk."""
    try:
        import h5py
        import numpy as np
    except ImportError:
        skipped("h5py random slices, cold: bytes fetched per byte needed", "h5py not installed: pip install h5py")
        return
    rows = mib * 2**20 // (ROW * 4)
    src = os.path.join(tmp, "h5")
    os.makedirs(src, exist_ok=True)
    path = os.path.join(src, "data.h5")
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", (rows, ROW), dtype="float32", chunks=(64, ROW))
        for start in range(0, rows, 4096):
            d[start:start + 4096] = np.random.default_rng(start).random((min(4096, rows - start), ROW), "float32")
    client = Client(store=env["ARTIFACTFS_STORE"], cache_dir=env["ARTIFACTFS_CACHE_DIR"])
    client.commit_dir(src, H5_NAME, "dataset")
    client.close()
    picks = np.random.default_rng(7).integers(0, rows, SLICES)

    def read(file_path: str) -> float:
        start = time.perf_counter()
        with h5py.File(file_path, "r") as f:
            total = sum(float(f["x"][int(i), :8].sum()) for i in picks)
        assert total == total  # read every slice
        return time.perf_counter() - start

    drop_caches()
    t_local = read(path)
    m = ours(env, tmp)
    try:
        t_ours = read(m.path(f"{H5_NAME}:v0", "data.h5"))
        fetched = stats(m)["fetched_bytes"]
    finally:
        close_ours(m)
    needed = SLICES * 64 * ROW * 4  # each slice lies in one HDF5 chunk of 64 rows
    print(f"\nh5py, {SLICES} random row slices of a {mib} MiB chunked dataset (HDF5 chunks of 256 KiB), cold")
    print(f"  local disk {t_local:6.2f} s; artifactfs {t_ours:6.2f} s ({t_local / t_ours:.2f}x local); fetched "
          f"{fetched / 2**20:.0f} MiB for {needed / 2**20:.0f} MiB of HDF5 chunks ({fetched / needed:.1f}x)")
    goal("h5py random slices, cold: bytes fetched per byte needed", fetched / needed, 1.5,
         f"{fetched / 2**20:.0f} MiB for {needed / 2**20:.0f} MiB; {t_ours:.2f} s vs {t_local:.2f} s local",
         at_most=True)


def warm_mount(env: dict, tmp: str) -> Mount:
    """A mount whose disk cache holds the whole file (`cache warm`), the page cache dropped: a new job on
    a machine that read the file before."""
    warm_env = dict(env, ARTIFACTFS_CACHE_DIR=os.path.join(tmp, f"cache-{uuid.uuid4().hex[:8]}"))
    subprocess.run([sys.executable, "-m", "artifactfs_cli.main", "cache", "warm", NAME], env=warm_env, check=True,
                   capture_output=True)
    drop_caches()
    return Mount(os.path.join(tmp, f"mnt-{uuid.uuid4().hex[:8]}"), warm_env)


if __name__ == "__main__":
    main()
