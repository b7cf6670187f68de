"""What checking every read from the disk cache costs (issue 16): the cache read with and without the
check, side by side in one run, and reads through a fresh mount whose disk cache is warm.

1. PieceCache.get of 8 MiB pieces (the files in the page cache, so the check is not hidden behind the
   disk): checked against the piece digest (what every read does now) vs the bytes alone (what a read
   after the first one did before: it trusted a piece this process had checked once).
2. 4 KiB random reads of cached 8 MiB pieces: by range, checking only the 16 KiB blocks touched (now)
   vs the whole piece read and checked, then sliced (what a whole-piece cache would have to do).
3. A fresh mount reading a 1 GiB file whose pieces are all in the disk cache (a new job on the same
   machine): sequential dd, and 4 KiB preads at random offsets (IOPS), vs a local copy of the file.

    .venv/bin/python bench/bench_cache_read.py [--mib 1024] [--reads 3000]
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.cache import PieceCache  # noqa: E402
from artifactfs.hashing import CHUNK_SIZE, digest_bytes  # noqa: E402
from bench.common import drop_caches, make_big_file, mbps  # noqa: E402
from tests.fuse_util import Mount, run_cli  # noqa: E402

PIECES = 64


def cache_get(tmp: str, reads: int) -> None:
    from artifactfs import piecefile

    cache = PieceCache(os.path.join(tmp, "pieces-bench"), 1 << 40)
    pieces = []
    for _ in range(PIECES):
        data = os.urandom(CHUNK_SIZE)
        pieces.append(digest_bytes(data))
        cache.put(pieces[-1], data)
    checked = piecefile.whole_ok
    for label, check in (("checked (now)", checked), ("unchecked (before)", lambda data, digest: True)):
        piecefile.whole_ok = check
        cache.get(pieces[0], CHUNK_SIZE)
        start = time.perf_counter()
        for d in pieces * 2:
            assert cache.get(d, CHUNK_SIZE) is not None
        t = time.perf_counter() - start
        print(f"  PieceCache.get, {label:22s} {mbps(2 * PIECES * CHUNK_SIZE, t)}")
        if check is checked:
            t_checked = t
    piecefile.whole_ok = checked
    print(f"  the check costs {100 * (t_checked / t - 1):.0f} % of a whole-piece cache read")
    rnd = random.Random(1)
    offsets = [(rnd.choice(pieces), rnd.randrange(CHUNK_SIZE - 4096)) for _ in range(reads)]
    start = time.perf_counter()
    for d, off in offsets:
        assert cache.get_range(d, CHUNK_SIZE, off, 4096) is not None
    t_range = time.perf_counter() - start
    start = time.perf_counter()
    for d, off in offsets[:reads // 10]:
        assert cache.get(d, CHUNK_SIZE)[off:off + 4096]
    t_whole = (time.perf_counter() - start) * 10
    print(f"  4 KiB random reads, by block range   {reads / t_range:8.0f} reads/s")
    print(f"  4 KiB random reads, whole piece      {reads / t_whole:8.0f} reads/s   "
          f"range reads are {t_whole / t_range:.0f}x faster")


def through_mount(tmp: str, mib: int, reads: int) -> None:
    env = dict(os.environ, ARTIFACTFS_STORE=os.path.join(tmp, "store"), ARTIFACTFS_CACHE_DIR=os.path.join(tmp, "cache"),
               ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"), ARTIFACTFS_CACHE_SIZE="8G")
    src = os.path.join(tmp, "src")
    os.makedirs(src)
    local = os.path.join(src, "big.bin")
    size = mib * 1024 * 1024
    make_big_file(local, size)
    run_cli(["commit", "--dir", src, "bench/cache/big"], env, timeout=600, check=True)
    run_cli(["cache", "warm", "bench/cache/big:v0"], env, timeout=600, check=True)
    rnd = random.Random(2)
    offsets = [rnd.randrange(size - 4096) & ~4095 for _ in range(reads)]

    def seq(path: str) -> float:
        start = time.perf_counter()
        subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True, capture_output=True)
        return time.perf_counter() - start

    def rand(path: str) -> float:
        fd = os.open(path, os.O_RDONLY)
        try:
            start = time.perf_counter()
            for off in offsets:
                os.pread(fd, 4096, off)
            return time.perf_counter() - start
        finally:
            os.close(fd)

    results = {}
    for label, fn in (("sequential dd", seq), ("random 4 KiB", rand)):
        drop_caches()
        m = Mount(os.path.join(tmp, f"mp-{fn.__name__}"), env)
        try:
            results[label] = fn(m.path("bench/cache/big:v0/big.bin"))
        finally:
            m.close()
        local_t = fn(local)
        results[label + " local"] = local_t
    print(f"\nfresh mount, every piece in the disk cache ({mib} MiB file; the local copy in the page cache)")
    print(f"  sequential dd      artifactfs {mbps(size, results['sequential dd'])}   local "
          f"{mbps(size, results['sequential dd local'])}   "
          f"{results['sequential dd local'] / results['sequential dd']:.2f}x local")
    print(f"  random 4 KiB reads artifactfs {reads / results['random 4 KiB']:8.0f} IOPS   local "
          f"{reads / results['random 4 KiB local']:8.0f} IOPS   "
          f"{results['random 4 KiB local'] / results['random 4 KiB']:.2f}x local")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--mount-only", action="store_true", help="part 3 only (runs on older artifactfs too)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-cache-") as tmp:
        if not args.mount_only:
            print(f"cache reads of {PIECES} x 8 MiB pieces, twice each")
            cache_get(tmp, args.reads)
        through_mount(tmp, args.mib, args.reads)


if __name__ == "__main__":
    main()
