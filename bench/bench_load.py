"""Many parallel readers on one read-only mount: throughput, latency, errors and the daemon's memory.

A 20,000-file version (4-16 KiB each) is committed to a SeaweedFS on 127.0.0.1 and mounted; then 16
reader processes open and read random files for a bounded time, checking each file's xxh3-128 against
the manifest. Two phases: `cold` (fresh mount, empty cache: every first read goes to the store) and
`remount` (a new mount on the same disk cache: the page cache is gone, pieces read before are local).
The daemon's RSS is sampled every 0.5 s.

Run: .venv/bin/python bench/bench_load.py [--files 20000] [--readers 16] [--seconds 20]

Measured 2026-11-24 on the 2-core dev VM while other test suites ran (load average ~10), defaults:
    commit of 20,000 files (4-16 KiB, 195 MiB): 121 s
    cold     478 files/s, 4.9 MB/s, p50 32.8 ms, p99 79.5 ms, 0 errors, 0 wrong; RSS 69 -> 140 MiB
    remount  754 files/s, 7.7 MB/s, p50 11.2 ms, p99 110 ms, 0 errors, 0 wrong; RSS 68 -> 169 MiB
RSS grows with the distinct files read: recent pieces are kept in the mount's memory LRU, which is
capped at 256 MiB (mount/reader.py MEMORY_BYTES), so the daemon stays under ~70 MiB + that cap.
"""

import argparse
import multiprocessing as mp
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid

import xxhash
from common import BUCKET, seaweed_server

from artifactfs.client import Client

NAME = "bench/load/many"


def make_files(root: str, count: int, min_kib: int, max_kib: int) -> None:
    rnd = random.Random(1)
    block = os.urandom(max_kib * 1024)
    for i in range(count):
        sub = os.path.join(root, f"d{i // 1000:02d}")
        os.makedirs(sub, exist_ok=True)
        size = rnd.randint(min_kib * 1024, max_kib * 1024)
        with open(os.path.join(sub, f"f{i:05d}.bin"), "wb") as f:
            f.write(i.to_bytes(8, "little") + block[8:size])  # unique content per file


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reader(root: str, paths: list[str], digests: list[str], deadline: float, seed: int, out) -> None:
    rnd = random.Random(seed)
    latencies, nbytes, errors, wrong, touched = [], 0, 0, 0, set()
    while time.monotonic() < deadline:
        i = rnd.randrange(len(paths))
        start = time.perf_counter()
        try:
            with open(os.path.join(root, paths[i]), "rb") as f:
                data = f.read()
        except OSError:
            errors += 1
            continue
        latencies.append(time.perf_counter() - start)
        nbytes += len(data)
        touched.add(i)
        if xxhash.xxh3_128_hexdigest(data) != digests[i]:
            wrong += 1
    out.put((latencies, nbytes, errors, wrong, touched))


def mount(mountpoint: str, env: dict) -> int:
    os.makedirs(mountpoint, exist_ok=True)
    res = subprocess.run([sys.executable, "-m", "artifactfs_cli.main", "mount", mountpoint], env=env,
                         capture_output=True, text=True, check=True)
    return int(re.search(r"\(pid (\d+)", res.stdout).group(1))


def unmount(mountpoint: str, pid: int) -> None:
    subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)


def phase(label: str, mountpoint: str, env: dict, paths, digests, readers: int, seconds: float) -> None:
    pid = mount(mountpoint, env)
    try:
        root = os.path.join(mountpoint, NAME + ":v0")
        os.listdir(root)  # load the manifest before the clock starts
        rss_before = rss_kib(pid)
        out = mp.Queue()
        deadline = time.monotonic() + seconds
        procs = [mp.Process(target=reader, args=(root, paths, digests, deadline, seed, out)) for seed in range(readers)]
        start = time.monotonic()
        for p in procs:
            p.start()
        rss_max = rss_before
        while any(p.is_alive() for p in procs) and out.qsize() < readers:
            rss_max = max(rss_max, rss_kib(pid))
            time.sleep(0.5)
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.monotonic() - start
        rss_after = rss_kib(pid)
    finally:
        unmount(mountpoint, pid)
    lat = sorted(x for r in results for x in r[0])
    nbytes, errors, wrong = (sum(r[i] for r in results) for i in (1, 2, 3))
    touched = set().union(*(r[4] for r in results))
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    print(f"\n{label}: {readers} reader processes for {seconds:g} s")
    print(f"  reads                {len(lat):9d} ({len(touched)} distinct files)")
    print(f"  throughput           {len(lat) / elapsed:9.0f} files/s  {nbytes / elapsed / 1e6:7.1f} MB/s")
    print(f"  latency p50 / p99    {pct(0.5):9.2f} ms  {pct(0.99):7.2f} ms   "
          f"(max {lat[-1] * 1000 if lat else 0:.1f} ms)")
    print(f"  errors / wrong bytes {errors:9d} / {wrong}")
    print(f"  daemon RSS           {rss_before / 1024:9.1f} MiB before, {rss_max / 1024:.1f} MiB max, "
          f"{rss_after / 1024:.1f} MiB after")
    print(f"  bytes checked        {nbytes:9d}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--min-kib", type=int, default=4)
    parser.add_argument("--max-kib", type=int, default=16)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-load-") as tmp, seaweed_server():
        src = os.path.join(tmp, "src")
        make_files(src, args.files, args.min_kib, args.max_kib)
        store = f"s3://{BUCKET}/{uuid.uuid4().hex}"
        cache = os.path.join(tmp, "cache")
        client = Client(store=store, cache_dir=os.path.join(tmp, "commit-cache"))
        start = time.monotonic()
        client.commit_dir(src, NAME, "dataset")
        print(f"committed {args.files} files of {args.min_kib}-{args.max_kib} KiB in {time.monotonic() - start:.1f} s")
        manifest = client.manifest(client.resolve(NAME + ":v0"))
        paths = [e.path for e in manifest]
        digests = [e.digest for e in manifest]
        client.close()
        env = dict(os.environ, ARTIFACTFS_STORE=store, ARTIFACTFS_CACHE_DIR=cache,
                   ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"))
        mountpoint = os.path.join(tmp, "mnt")
        phase("cold (empty cache)", mountpoint, env, paths, digests, args.readers, args.seconds)
        phase("remount (disk cache from the cold phase)", mountpoint, env, paths, digests, args.readers, args.seconds)


if __name__ == "__main__":
    main()
