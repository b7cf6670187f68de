"""artifactfs:// (the fsspec filesystem) against python s3fs reading the same bytes as plain objects of
the same SeaweedFS, in one run: a whole large file cold and warm (`cat_file`), random 1 MiB ranged
reads of a larger file cold, and many small files in random order from several threads cold; raw
boto3 ranged GETs (16 threads, 8 MiB) as the ceiling of the first. Needs `pip install s3fs` (the
`bench` extra); without it only artifactfs is measured. Run as root (drops the page cache):
    .venv/bin/python bench/bench_fsspec.py [--big-mib 1024] [--random-mib 4096] [--reads 1000] [--files 20000]
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor

from bench_epoch import make_dataset
from bench_mount import raw_ranged_gets, upload_plain
from common import BUCKET, drop_caches, goal, make_big_file, mbps, seaweed_server, skipped, timed

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.client import Client  # noqa: E402
from artifactfs.fsspec import ArtifactFileSystem  # noqa: E402

MIB = 1024 * 1024
STORE = f"s3://{BUCKET}/afs"


def ours(tmp: str) -> ArtifactFileSystem:
    """A new instance with an empty cache: a new job on a new machine."""
    drop_caches()
    return ArtifactFileSystem(store=STORE, cache_dir=os.path.join(tmp, f"cache-{uuid.uuid4().hex[:8]}"),
                              skip_instance_cache=True)


def forget(fs: ArtifactFileSystem) -> None:
    shutil.rmtree(fs.settings.cache_dir, ignore_errors=True)


def peer(server):
    try:
        import s3fs
    except ImportError:
        print("s3fs: not installed (pip install s3fs, or .[bench]); only artifactfs is measured")
        return None
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    return s3fs.S3FileSystem(key=key, secret=secret, client_kwargs={"endpoint_url": server.endpoint},
                             skip_instance_cache=True, use_listings_cache=False)


def random_reads(fs, path: str, offsets: list[int]) -> float:
    return timed(lambda: [fs.cat_file(path, start=o, end=o + MIB) for o in offsets])


def raw_random_gets(server, key: str, offsets: list[int]) -> float:
    """The same reads as one ranged GET each through boto3, one thread: what no client can beat without
    knowing the next offset."""
    client = server.client()
    return timed(lambda: [client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={o}-{o + MIB - 1}")["Body"].read()
                          for o in offsets])


def shuffled(fs, root: str, rels: list[str], threads: int) -> float:
    order = random.Random(5).sample(rels, len(rels))
    with ThreadPoolExecutor(threads) as pool:
        return timed(lambda: list(pool.map(lambda rel: fs.cat_file(f"{root}/{rel}"), order)))


def ratio(theirs: float, mine: float) -> str:
    return f"{theirs / mine:.2f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--random-mib", type=int, default=4096)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--tmp", default="/var/tmp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-fsspec-", dir=args.tmp) as tmp, \
            seaweed_server() as server:
        big, rnd, small = (os.path.join(tmp, d) for d in ("big", "random", "small"))
        os.makedirs(big)
        os.makedirs(rnd)
        make_big_file(os.path.join(big, "big.bin"), args.big_mib * MIB)
        make_big_file(os.path.join(rnd, "random.bin"), args.random_mib * MIB)
        rels = make_dataset(small, args.files, args.kib * 1024, 100)
        client = Client(store=STORE, cache_dir=os.path.join(tmp, "commit-cache"))
        for local, name in ((big, "big"), (rnd, "random"), (small, "small")):
            client.commit_dir(local, f"bench/fs/{name}", "dataset")
        client.close()
        s3 = peer(server)
        if s3 is not None:
            for local, name in ((big, "big"), (rnd, "random"), (small, "small")):
                upload_plain(server, local, f"plain/{name}")
        print(f"SeaweedFS at {server.endpoint}; {os.cpu_count()} CPUs; every artifactfs run with an empty cache "
              "and a new instance, page cache dropped before each cold run\n")

        size = args.big_mib * MIB
        drop_caches()
        t_raw = raw_ranged_gets(server, "plain/big/big.bin", size) if s3 is not None else None
        fs = ours(tmp)
        t_cold = timed(fs.cat_file, "bench/fs/big:v0/big.bin")
        t_warm = timed(fs.cat_file, "bench/fs/big:v0/big.bin")
        forget(fs)
        print(f"cat_file of {args.big_mib} MiB      artifactfs cold {mbps(size, t_cold)}, warm (cached) "
              f"{mbps(size, t_warm)}")
        if s3 is not None:
            drop_caches()
            t_s3 = timed(s3.cat_file, f"{BUCKET}/plain/big/big.bin")
            t_s3_again = timed(s3.cat_file, f"{BUCKET}/plain/big/big.bin")
            print(f"                            s3fs {mbps(size, t_s3)}, again {mbps(size, t_s3_again)}; "
                  f"raw boto3 ranged GETs {mbps(size, t_raw)}")
            print(f"                            cold: artifactfs is {ratio(t_s3, t_cold)} s3fs (goal >= 1.5x), "
                  f"{ratio(t_raw, t_cold)} raw GETs; warm: {ratio(t_s3_again, t_warm)} s3fs (goal >= 5x)")

        size = args.random_mib * MIB
        rnd = random.Random(9)
        offsets = [rnd.randrange(0, size - MIB) for _ in range(args.reads)]
        fs = ours(tmp)
        t_ours = random_reads(fs, "bench/fs/random:v0/random.bin", offsets)
        fetched = fs.client.fetcher.fetched_bytes
        forget(fs)
        print(f"\n{args.reads} random 1 MiB reads of {args.random_mib} MiB, cold, one thread: artifactfs "
              f"{args.reads / t_ours:7.1f} reads/s, fetched {fetched / (args.reads * MIB):.2f} bytes per byte read")
        if s3 is not None:
            drop_caches()
            t_s3 = random_reads(s3, f"{BUCKET}/plain/random/random.bin", offsets)
            drop_caches()
            t_floor = raw_random_gets(server, "plain/random/random.bin", offsets)
            print(f"{'':60s}s3fs {args.reads / t_s3:7.1f} reads/s; artifactfs is {ratio(t_s3, t_ours)} s3fs "
                  f"(goal >= 1.5x)\n{'':60s}one raw boto3 GET per read (the floor of a reader that cannot "
                  f"prefetch) {args.reads / t_floor:7.1f} reads/s: artifactfs is {ratio(t_floor, t_ours)}")
            goal(f"artifactfs:// random 1 MiB reads of {args.random_mib} MiB, cold, vs python s3fs", t_s3 / t_ours, 1.5,
                 f"{args.reads / t_ours:.1f} vs {args.reads / t_s3:.1f} reads/s; one raw GET per read "
                 f"{args.reads / t_floor:.1f}/s ({t_floor / t_ours:.2f}x of that floor)",
                 bytes_per_byte=round(fetched / (args.reads * MIB), 2))
        else:
            skipped("artifactfs:// random 1 MiB reads vs python s3fs", "s3fs not installed: pip install s3fs")

        total = args.files * args.kib * 1024
        fs = ours(tmp)
        t_ours = shuffled(fs, "bench/fs/small:v0", rels, args.threads)
        forget(fs)
        print(f"\n{args.files} x {args.kib} KiB, shuffled, {args.threads} threads, cold: artifactfs "
              f"{t_ours:6.1f} s ({args.files / t_ours:6.0f} files/s, {mbps(total, t_ours)})")
        if s3 is not None:
            drop_caches()
            t_s3 = shuffled(s3, f"{BUCKET}/plain/small", rels, args.threads)
            print(f"{'':56s}s3fs {t_s3:6.1f} s ({args.files / t_s3:6.0f} files/s); artifactfs is "
                  f"{ratio(t_s3, t_ours)} s3fs (goal >= 3x)")


if __name__ == "__main__":
    main()
