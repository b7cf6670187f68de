"""A shuffled training epoch: many small files read in random order by several threads (open, read,
close each), cold and then warm, through the artifactfs mount beside rclone (`--vfs-cache-mode full`),
s3fs-fuse and a local-disk copy, on one SeaweedFS bucket in the same run.

Cold: a fresh mount with empty caches and the kernel's caches dropped (SeaweedFS reads its disk).
Warm: the same epoch again (another order) on the same mount. With `--cache-mib N` (a dataset larger
than the cache, e.g. half its size), artifactfs and rclone get the same disk-cache bound, the warm
epoch runs after the kernel's caches are dropped, and artifactfs's cache size is reported against it.
Each system's daemon CPU and the S3 server's CPU are read from /proc around each epoch. Medians of
--reps runs. A peer that is not installed is skipped with a line (apt-get install rclone s3fs). With
torch installed, a PyTorch DataLoader epoch (fork, 4 workers, shuffle) runs cold through the mount and
on local disk too. Run as root:
    .venv/bin/python bench/bench_epoch.py [--files 20000] [--kib 100] [--dirs 100] [--threads 8] [--reps 3]
                                          [--cache-mib N]
"""

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench_cold_read import cpu_seconds
from bench_mount import ForeignMount, close_ours, ours, upload_plain
from common import BUCKET, drop_caches, goal, seaweed_server, skipped

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.client import Client  # noqa: E402


def make_dataset(root: str, files: int, size: int, dirs: int) -> list[str]:
    rels = []
    for i in range(files):
        rel = f"d{i % dirs:03d}/f{i:06d}.bin"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(os.urandom(size))
        rels.append(rel)
    return rels


def epoch(root: str, rels: list[str], threads: int, seed: int) -> tuple[float, int]:
    order = list(rels)
    random.Random(seed).shuffle(order)

    def one(rel: str) -> int:
        with open(os.path.join(root, rel), "rb") as f:
            return len(f.read())

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(one, order))
    return time.perf_counter() - start, total


class _Files:
    """A map-style dataset of the files' bytes (a torch Dataset needs only these two methods)."""

    def __init__(self, root: str, rels: list[str]):
        self.root, self.rels = root, rels

    def __len__(self) -> int:
        return len(self.rels)

    def __getitem__(self, i: int) -> int:
        with open(os.path.join(self.root, self.rels[i]), "rb") as f:
            return len(f.read())


def dataloader_epoch(root: str, rels: list[str], size: int) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(_Files(root, rels), batch_size=32, shuffle=True, num_workers=4, collate_fn=sum,
                        multiprocessing_context="fork")
    start = time.perf_counter()
    total = sum(loader)
    assert total == size, f"DataLoader read {total} bytes, expected {size}"
    return time.perf_counter() - start


class Measured:
    """Times and CPU seconds of cold and warm epochs of one system over the repetitions."""

    def __init__(self, name: str):
        self.name = name
        self.cold, self.warm, self.daemon_cpu, self.server_cpu = [], [], [], []

    def run(self, root: str, rels, threads: int, rep: int, daemon_pid: int | None, weed_pid: int, size: int,
            drop_between: bool = False):
        for label in ("cold", "warm"):
            if label == "warm" and drop_between:
                drop_caches()
            d0 = cpu_seconds(daemon_pid) if daemon_pid else 0.0
            w0 = cpu_seconds(weed_pid)
            seconds, total = epoch(root, rels, threads, seed=rep * 2 + (label == "warm"))
            assert total == size, f"{self.name}: read {total} bytes, expected {size}"
            getattr(self, label).append(seconds)
            if label == "cold":
                self.daemon_cpu.append(cpu_seconds(daemon_pid) - d0 if daemon_pid else 0.0)
                self.server_cpu.append(cpu_seconds(weed_pid) - w0)

    def median(self, what: str) -> float:
        return statistics.median(getattr(self, what))


def report_goals(args, systems: dict, peers: list, gib: float, held_bytes: list) -> None:
    ours, local = systems["artifactfs"], systems["local disk"]
    cpu = {"daemon_cpu_s_per_gib": round(ours.median("daemon_cpu") / gib, 2),
           "server_cpu_s_per_gib": round(ours.median("server_cpu") / gib, 2)}
    if args.cache_mib:
        where = f"a dataset of {args.files * args.kib / 1024:.0f} MiB, cache bound {args.cache_mib} MiB"
        goal(f"larger than the cache: cache within its bound ({where})", max(held_bytes) / (args.cache_mib * 2**20),
             1.0, f"largest {max(held_bytes) / 2**20:.0f} MiB after a warm epoch", at_most=True)
        goal("larger than the cache: warm epoch not slower than the cold one",
             ours.median("cold") / ours.median("warm"), 1.0,
             f"{ours.median('warm'):.2f} s vs {ours.median('cold'):.2f} s")
        if "rclone" in peers:
            goal("larger than the cache: warm epoch vs rclone with the same bound",
                 systems["rclone"].median("warm") / ours.median("warm"), 1.0,
                 f"{ours.median('warm'):.2f} s vs {systems['rclone'].median('warm'):.2f} s", **cpu)
        else:
            skipped("larger than the cache: warm epoch vs rclone", "rclone not installed: apt-get install rclone")
        return
    for kind in ("rclone", "s3fs"):
        if kind not in peers:
            skipped(f"cold shuffled epoch vs {kind}", f"{kind} not installed: apt-get install {kind}")
            continue
        goal(f"cold shuffled epoch vs {kind}", systems[kind].median("cold") / ours.median("cold"), 3.0,
             f"{ours.median('cold'):.2f} s vs {systems[kind].median('cold'):.2f} s", **cpu)
    goal("cold shuffled epoch vs local disk", local.median("cold") / ours.median("cold"), 0.3,
         f"{ours.median('cold'):.2f} s vs {local.median('cold'):.2f} s")
    if "rclone" in peers:
        goal("cold shuffled epoch: S3 server CPU per GiB vs rclone's",
             ours.median("server_cpu") / max(systems["rclone"].median("server_cpu"), 1e-9), 1.0,
             f"{ours.median('server_cpu') / gib:.1f} vs {systems['rclone'].median('server_cpu') / gib:.1f} CPU s/GiB",
             at_most=True)
    goal("warm epoch in the same mount vs local disk", local.median("warm") / ours.median("warm"), 0.8,
         f"{ours.median('warm'):.2f} s vs {local.median('warm'):.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--dirs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--peers", default="rclone,s3fs")
    parser.add_argument("--tmp", default="/var/tmp")
    parser.add_argument("--cache-mib", type=int, default=0, help="the disk-cache bound of artifactfs and rclone")
    args = parser.parse_args()
    size = args.files * args.kib * 1024
    gib = size / 2**30
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-epoch-", dir=args.tmp) as tmp, \
            seaweed_server() as server:
        local = os.path.join(tmp, "local")
        rels = make_dataset(local, args.files, args.kib * 1024, args.dirs)
        env = dict(os.environ, ARTIFACTFS_STORE=f"s3://{BUCKET}/afs", ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"),
                   ARTIFACTFS_CACHE_DIR=os.path.join(tmp, "commit-cache"))
        if args.cache_mib:
            env["ARTIFACTFS_CACHE_SIZE"] = f"{args.cache_mib}M"
        client = Client(store=env["ARTIFACTFS_STORE"], cache_dir=env["ARTIFACTFS_CACHE_DIR"])
        client.commit_dir(local, "bench/epoch/data", "dataset")
        client.close()
        peers = [p for p in args.peers.split(",") if p]
        for kind in list(peers):
            if shutil.which(kind) is None:
                print(f"{kind}: not installed (apt-get install {kind}); skipped")
                peers.remove(kind)
        if peers:
            upload_plain(server, local, "plain/epoch")
        weed = server.proc.pid
        print(f"{args.files} files of {args.kib} KiB in {args.dirs} directories ({size / 2**20:.0f} MiB), "
              f"{args.threads} reader threads, shuffled; SeaweedFS at {server.endpoint}; {os.cpu_count()} CPUs")
        systems = {name: Measured(name) for name in ["local disk", "artifactfs", *peers]}
        held_bytes: list[int] = []  # the disk cache after each warm epoch (--cache-mib)
        for rep in range(args.reps):
            drop_caches()
            systems["local disk"].run(local, rels, args.threads, rep, None, weed, size)
            m = ours(env, tmp)  # drops the kernel's caches
            try:
                systems["artifactfs"].run(m.path("bench/epoch/data:v0"), rels, args.threads, rep, m.pid, weed, size,
                                          drop_between=bool(args.cache_mib))
                if args.cache_mib:
                    cache_dir = m.env["ARTIFACTFS_CACHE_DIR"]
                    held_bytes.append(held := sum(  # what the bound covers
                        os.path.getsize(os.path.join(d, f)) for sub in ("pieces", "runs", "manifests")
                        for d, _, fs in os.walk(os.path.join(cache_dir, sub)) for f in fs))
                    print(f"  artifactfs disk cache after the warm epoch: {held / 2**20:.0f} MiB ({held:,} bytes) "
                          f"(bound {args.cache_mib} MiB: {'within' if held <= args.cache_mib * 2**20 else 'OVER'})")
                    st = json.loads(os.getxattr(m.mountpoint, "user.artifactfs.stats"))
                    print(f"  both epochs: fetched {st['fetched_bytes'] / size:.2f}x the dataset, read back from "
                          f"the disk cache {st['cache_read_bytes'] / size:.2f}x, {st['cache_bypassed']} pieces "
                          f"not cached (the cache full of recent ones); the daemon counts {st['cache_bytes']:,} "
                          "bytes cached")
            finally:
                close_ours(m)
            for kind in peers:
                drop_caches()
                cache = os.path.join(tmp, f"rclone-cache-{rep}") if kind == "rclone" else None
                fm = ForeignMount(kind, server, os.path.join(tmp, f"{kind}-{rep}"), tmp, rclone_cache=cache,
                                  cache_max=f"{args.cache_mib}M" if args.cache_mib else "100G")
                try:
                    systems[kind].run(os.path.join(fm.mountpoint, "epoch"), rels, args.threads, rep, fm.pid, weed,
                                      size, drop_between=bool(args.cache_mib))
                    if cache and args.cache_mib:
                        held = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache) for f in fs)
                        print(f"  rclone's disk cache after the warm epoch: {held / 2**20:.0f} MiB "
                              f"(--vfs-cache-max-size {args.cache_mib}M, checked every 5 s)")
                finally:
                    fm.close()
                    if cache:
                        shutil.rmtree(cache, ignore_errors=True)
            print(f"rep {rep}: " + "  ".join(f"{s.name} {s.cold[-1]:.1f}/{s.warm[-1]:.1f} s" for s in systems.values()),
                  flush=True)
        print(f"\nmedians of {args.reps}        cold epoch   warm epoch   daemon CPU s/GiB   "
              "S3 server CPU s/GiB (cold)")
        for s in systems.values():
            print(f"  {s.name:18s} {s.median('cold'):8.2f} s {s.median('warm'):10.2f} s "
                  f"{s.median('daemon_cpu') / gib:14.2f} {s.median('server_cpu') / gib:18.2f}")
        print()
        report_goals(args, systems, peers, gib, held_bytes)
        try:
            import torch  # noqa: F401
        except ImportError:
            skipped("PyTorch DataLoader, cold epoch vs local disk", "torch is not installed: pip install torch")
            return
        drop_caches()
        t_local = dataloader_epoch(local, rels, size)
        m = ours(env, tmp)
        try:
            t_ours = dataloader_epoch(m.path("bench/epoch/data:v0"), rels, size)
        finally:
            close_ours(m)
        goal("PyTorch DataLoader (fork, 4 workers, shuffle), cold epoch vs local disk", t_local / t_ours, 0.3,
             f"{t_ours:.1f} s vs {t_local:.1f} s")


if __name__ == "__main__":
    main()
