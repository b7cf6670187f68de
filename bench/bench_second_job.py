"""The second job on a machine: a shuffled epoch over small files whose bytes an earlier job left in
the disk cache (or `cache warm` put there), read by a new mount and by `artifactfs://` in a new
process, with the kernel's page cache dropped, beside the same files on local disk after drop_caches,
in the same run. Also the first (cold) job, so that "never slower than the cold run" is checked, and
a second epoch in the same mount (page cache). Prints files/s, ratios, and the daemon's CPU per file.

The store is a local directory (the disk cache, not the store, is what a second job reads). Run as root:
    .venv/bin/python bench/bench_second_job.py [--files 5000] [--kib 100] [--threads 8] [--reps 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid

from bench_cold_read import cpu_seconds
from bench_epoch import epoch, make_dataset
from common import drop_caches, goal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.client import Client  # noqa: E402
from tests.fuse_util import Mount, wait_gone  # noqa: E402

NAME = "bench/second/data"

FSSPEC_EPOCH = """
import random, sys, time
from concurrent.futures import ThreadPoolExecutor
import fsspec
rels, threads, seed = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
random.Random(seed).shuffle(rels)
fs = fsspec.filesystem("artifactfs")
start = time.perf_counter()
with ThreadPoolExecutor(threads) as pool:
    total = sum(pool.map(lambda r: len(fs.cat_file(f"{NAME}:v0/" + r)), rels))
print(time.perf_counter() - start, total)
""".replace("{NAME}", NAME)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tmp", default="/var/tmp")
    args = parser.parse_args()
    size = args.files * args.kib * 1024
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-second-", dir=args.tmp) as tmp:
        local = os.path.join(tmp, "local")
        rels = make_dataset(local, args.files, args.kib * 1024, dirs=50)
        cache = os.path.join(tmp, "cache")
        env = dict(os.environ, ARTIFACTFS_STORE=os.path.join(tmp, "store"), ARTIFACTFS_CACHE_DIR=cache,
                   ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"))
        client = Client(store=env["ARTIFACTFS_STORE"], cache_dir=os.path.join(tmp, "commit-cache"))
        client.commit_dir(local, NAME, "dataset")
        client.close()
        print(f"{args.files} files of {args.kib} KiB ({size / 2**20:.0f} MiB), {args.threads} threads, shuffled; "
              f"local-directory store; {os.cpu_count()} CPUs")
        rows: dict[str, list[float]] = {k: [] for k in ("local disk", "mount cold job", "mount second job",
                                                        "mount second epoch", "artifactfs:// second job")}
        cpu_per_file: list[float] = []
        for rep in range(args.reps):
            drop_caches()
            seconds, total = epoch(local, rels, args.threads, seed=rep)
            assert total == size
            rows["local disk"].append(seconds)
            subprocess.run(["rm", "-rf", cache], check=True)
            for job in ("mount cold job", "mount second job"):  # the first fills the disk cache
                drop_caches()
                m = Mount(os.path.join(tmp, f"mnt-{uuid.uuid4().hex[:8]}"), env)
                try:
                    c0 = cpu_seconds(m.pid)
                    seconds, total = epoch(m.path(f"{NAME}:v0"), rels, args.threads, seed=rep * 7 + len(job))
                    assert total == size, (job, total)
                    rows[job].append(seconds)
                    if job == "mount second job":
                        cpu_per_file.append((cpu_seconds(m.pid) - c0) / args.files)
                        seconds, total = epoch(m.path(f"{NAME}:v0"), rels, args.threads, seed=rep * 7 + 99)
                        rows["mount second epoch"].append(seconds)
                finally:
                    m.close()
                    wait_gone(m.pid)
            drop_caches()
            out = subprocess.run([sys.executable, "-c", FSSPEC_EPOCH, ",".join(rels), str(args.threads), str(rep)],
                                 env=env, capture_output=True, text=True, check=True).stdout.split()
            assert int(out[1]) == size
            rows["artifactfs:// second job"].append(float(out[0]))
            print(f"rep {rep}: " + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()), flush=True)
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"\nmedians of {args.reps}:")
        for k, v in med.items():
            print(f"  {k:26s} {v:7.2f} s {args.files / v:9.0f} files/s {med['local disk'] / v:6.2f}x local disk")
        cpu = statistics.median(cpu_per_file)
        print(f"  daemon CPU per file, second job: {cpu * 1e6:.0f} µs")
        local = med["local disk"]
        for row, key, target in (("second job, mount vs local disk", "mount second job", 0.8),
                                 ("second job, artifactfs:// vs local disk", "artifactfs:// second job", 0.8),
                                 ("second epoch in the same mount vs local disk", "mount second epoch", 0.8)):
            goal(row, local / med[key], target, f"{args.files / med[key]:,.0f} vs {args.files / local:,.0f} files/s",
                 **({"daemon_cpu_us_per_file": round(cpu * 1e6)} if key == "mount second job" else {}))
        goal("second job not slower than the cold job (mount)", med["mount cold job"] / med["mount second job"], 1.0,
             f"{med['mount second job']:.2f} s vs {med['mount cold job']:.2f} s cold")


if __name__ == "__main__":
    main()
