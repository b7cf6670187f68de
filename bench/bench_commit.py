"""Commit speed against SeaweedFS on 127.0.0.1, with baselines measured in the same run.

Workloads: one 1 GiB file, and 5,000 files of 64 KiB.
Baselines: raw xxh3-128 hashing of the same files (read + hash, page cache warm), and raw boto3
uploads (upload_file with multipart for the big file; upload_file from 16 threads for the small ones).
Figures: a first commit (hash + upload) vs raw upload, and a re-commit of unchanged data (hash +
existence checks, nothing uploaded) vs raw hashing.

Run: .venv/bin/python bench/bench_commit.py [--big-size-mib 1024] [--small-count 5000]
"""

import argparse
import os
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor

from common import BUCKET, make_big_file, make_small_files, mbps, seaweed_server, timed

from artifactfs.client import Client
from artifactfs.hashing import hash_file
from artifactfs.ingest import walk_directory


def all_files(root):
    return [f.source for f in walk_directory(root)]


def raw_hash(paths):
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(hash_file, paths))


def raw_upload(server, paths, root):
    from boto3.s3.transfer import TransferConfig

    client = server.client()
    prefix = uuid.uuid4().hex
    config = TransferConfig(max_concurrency=10)  # boto3's defaults: multipart above 8 MiB
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: client.upload_file(p, BUCKET, f"raw/{prefix}/{os.path.relpath(p, root)}",
                                                   Config=config), paths))


def commit(root):
    client = Client(store=f"s3://{BUCKET}/{uuid.uuid4().hex}", cache_dir=tempfile.mkdtemp())
    timings = [timed(client.commit_dir, root, "bench/commit/data", "dataset")]
    timings.append(timed(client.commit_dir, root, "bench/commit/data", "dataset"))  # unchanged: hash + HEADs
    client.close()
    return timings


def run_workload(server, label, root):
    paths = all_files(root)
    size = sum(os.path.getsize(p) for p in paths)
    raw_hash(paths)  # warm the page cache so every contender reads from memory
    t_hash = timed(raw_hash, paths)
    t_upload = timed(raw_upload, server, paths, root)
    t_commit, t_recommit = commit(root)
    print(f"\n{label}: {len(paths)} files, {size / 2**20:.0f} MiB")
    print(f"  raw xxh3 hashing          {t_hash:7.2f} s {mbps(size, t_hash)}")
    print(f"  raw boto3 upload          {t_upload:7.2f} s {mbps(size, t_upload)}")
    print(f"  artifactfs commit         {t_commit:7.2f} s {mbps(size, t_commit)}   "
          f"{t_upload / t_commit:.2f}x raw upload (goal >= 0.9x)")
    print(f"  artifactfs re-commit      {t_recommit:7.2f} s {mbps(size, t_recommit)}   "
          f"{t_hash / t_recommit:.2f}x raw hashing (goal >= 0.8x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-size-mib", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-") as tmp, seaweed_server() as server:
        big = os.path.join(tmp, "big")
        os.makedirs(big)
        make_big_file(os.path.join(big, "big.bin"), args.big_size_mib * 2**20)
        small = os.path.join(tmp, "small")
        make_small_files(small, args.small_count, 64 * 1024)
        run_workload(server, "one large file", big)
        run_workload(server, "many small files", small)


if __name__ == "__main__":
    main()
