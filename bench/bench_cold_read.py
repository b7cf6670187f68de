"""Cold sequential read of one large file through the read-only mount, repeated, with the CPU each
process spent: the mount daemon, SeaweedFS and dd, beside raw parallel ranged GETs of the same bytes
measured just before each read (same server, same page-cache state).

On a small machine SeaweedFS runs on the same cores, so a ratio measured while other work runs moves
with that work; the CPU seconds per GiB do not, and are what this benchmark is for.
    python bench/bench_cold_read.py [--mib 1024] [--reps 3]     (root: FUSE, drop_caches)
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from bench_mount import dd, ours, raw_ranged_gets, upload_plain
from common import BUCKET, drop_caches, goal, make_big_file, seaweed_server

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.client import Client  # noqa: E402
from tests.fuse_util import wait_gone  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tmp", default="/var/tmp")
    args = parser.parse_args()
    size = args.mib * 2**20
    gib = size / 2**30
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-cold-", dir=args.tmp) as tmp, seaweed_server() as server:
        local = os.path.join(tmp, "big")
        os.makedirs(local)
        make_big_file(os.path.join(local, "big.bin"), size)
        env = dict(os.environ, ARTIFACTFS_STORE=f"s3://{BUCKET}/afs", ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"),
                   ARTIFACTFS_CACHE_DIR=os.path.join(tmp, "commit-cache"))
        client = Client(store=env["ARTIFACTFS_STORE"], cache_dir=env["ARTIFACTFS_CACHE_DIR"])
        client.commit_dir(local, "bench/cold/big", "dataset")
        client.close()
        upload_plain(server, local, "plain/big")
        weed = server.proc.pid
        print(f"1 file of {args.mib} MiB on SeaweedFS at {server.endpoint}; {os.cpu_count()} CPUs")
        print("rep  raw GETs   cold dd    ratio   CPU s/GiB: raw client  weed   mount: daemon  weed  dd   load")
        ratios, cold_times, daemon_cpu = [], [], []
        for rep in range(args.reps):
            drop_caches()  # SeaweedFS reads from disk in both
            w0, s0 = cpu_seconds(weed), os.times()
            t_raw = raw_ranged_gets(server, "plain/big/big.bin", size)
            w_raw, s1 = cpu_seconds(weed) - w0, os.times()
            client_raw = s1.user + s1.system - s0.user - s0.system
            m = ours(env, tmp)  # drops the kernel's caches, fresh mount, empty cache
            try:
                d0, w0, c0 = cpu_seconds(m.pid), cpu_seconds(weed), children_cpu()
                t_cold = dd(m.path("bench/cold/big:v0/big.bin"))
                d1, w1, c1 = cpu_seconds(m.pid), cpu_seconds(weed), children_cpu()
            finally:
                m.close()
                wait_gone(m.pid)
                shutil.rmtree(m.env["ARTIFACTFS_CACHE_DIR"], ignore_errors=True)
            ratios.append(t_raw / t_cold)
            cold_times.append(t_cold)
            daemon_cpu.append((d1 - d0) / gib)
            print(f"{rep:3d}  {size / t_raw / 1e6:5.0f} MB/s {size / t_cold / 1e6:5.0f} MB/s  {t_raw / t_cold:5.2f}x"
                  f"   {client_raw / gib:21.2f} {w_raw / gib:5.2f}   {(d1 - d0) / gib:13.2f} {(w1 - w0) / gib:5.2f}"
                  f" {(c1 - c0) / gib:4.2f}"
                  f"  {os.getloadavg()[0]:5.2f}", flush=True)
            time.sleep(1)
        print(f"load average {os.getloadavg()[0]:.2f}")
        goal(f"cold sequential read of {args.mib} MiB (dd) vs raw parallel ranged GETs", statistics.median(ratios), 0.9,
             f"median of {args.reps}; {size / statistics.median(cold_times) / 1e6:.0f} MB/s",
             daemon_cpu_s_per_gib=round(statistics.median(daemon_cpu), 2))


if __name__ == "__main__":
    main()
