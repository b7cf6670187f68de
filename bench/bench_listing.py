"""Listing the upper levels of a store that holds many versions, against SeaweedFS on 127.0.0.1.

A project of A artifacts with V versions each (plus their aliases and content-index entries: ~2 objects
per version) is written straight through the repository, then each level is listed as `artifactfs ls`
and the mount's lookups do: entities, an entity's projects, a project's artifacts. Compared in the
same process: one delimiter listing per level (ObjectStore.list_dirs on S3, what artifactfs uses) vs
listing every key below the level (the generic ObjectStore.list_dirs, which is how levels were found
before). A fresh mount's first `ls MOUNT/<entity>` and `stat MOUNT/<entity>/<project>` are timed too.

Run: .venv/bin/python bench/bench_listing.py [--artifacts 10] [--versions 300]

Measured 2026-11-24 on the 2-core dev VM, defaults (6,030 objects under artifacts/, written in 88 s):
entities 4.7 ms vs 834 ms (176x), projects of acme 3.7 vs 836 ms (224x), artifacts of acme/vision
3.9 vs 765 ms (198x); fresh mount: ls MOUNT/acme 6.5 ms, ls MOUNT/acme/vision 1.09 s (3,020 names:
each artifact's versions/ and aliases/ are listed in full, and up to 16 records per artifact read to
leave deleted versions out). With --versions 1000 (20,030 objects): 756x, 790x, 690x.
"""

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from common import BUCKET, seaweed_server

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.client import Client  # noqa: E402
from artifactfs.manifest import Entry, Manifest  # noqa: E402
from artifactfs.names import ArtifactName  # noqa: E402
from artifactfs.store.base import ObjectStore  # noqa: E402
from tests.fuse_util import Mount  # noqa: E402


def best_of(n: int, fn, *args) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=10)
    parser.add_argument("--versions", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-listing-") as tmp, seaweed_server():
        url = f"s3://{BUCKET}/listing"
        client = Client(store=url, cache_dir=os.path.join(tmp, "cache"))
        digest = "0" * 32
        start = time.perf_counter()

        def fill(a: int) -> None:
            name = ArtifactName("acme", "vision", f"model{a:03d}")
            for v in range(args.versions):  # distinct content per version: a new version each time
                manifest = Manifest.from_entries([Entry(f"v{v}.txt", 0, digest)])
                client.repo.put_manifest(manifest)
                client.repo.commit(name, "model", manifest, aliases=["best"] if v % 100 == 0 else ())

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(fill, range(args.artifacts)))
        keys = sum(1 for _ in client.store.list("artifacts/"))
        print(f"store: {args.artifacts} artifacts x {args.versions} versions, {keys:,} objects under artifacts/, "
              f"written in {time.perf_counter() - start:.0f} s")

        store = client.store
        print(f"\n{'level':28} {'delimiter listing':>18} {'every key below':>16} {'ratio':>7}")
        for label, prefix in (("entities", "artifacts/"), ("projects of acme", "artifacts/acme/"),
                              ("artifacts of acme/vision", "artifacts/acme/vision/")):
            assert store.list_dirs(prefix) == ObjectStore.list_dirs(store, prefix)
            fast = best_of(3, store.list_dirs, prefix)
            slow = best_of(3, ObjectStore.list_dirs, store, prefix)
            print(f"{label:28} {fast * 1000:15.1f} ms {slow * 1000:13.1f} ms {slow / fast:6.0f}x")
        client.close()

        env = dict(os.environ, ARTIFACTFS_STORE=url, ARTIFACTFS_CACHE_DIR=os.path.join(tmp, "mcache"),
                   ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"))
        m = Mount(os.path.join(tmp, "mnt"), env)
        try:
            t0 = time.perf_counter()
            projects = os.listdir(m.path("acme"))
            t1 = time.perf_counter()
            os.stat(m.path("acme", "vision"))
            t2 = time.perf_counter()
            selectors = os.listdir(m.path("acme", "vision"))
            t3 = time.perf_counter()
        finally:
            m.close()
        print(f"\nfresh mount: ls MOUNT/acme {1000 * (t1 - t0):.1f} ms ({len(projects)} project), "
              f"stat MOUNT/acme/vision {1000 * (t2 - t1):.1f} ms, "
              f"ls MOUNT/acme/vision {1000 * (t3 - t2):.0f} ms ({len(selectors):,} name:vN and name:alias)")


if __name__ == "__main__":
    main()
