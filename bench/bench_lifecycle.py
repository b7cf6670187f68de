"""Figures for verify, gc and reference reads on a local store.

    python bench/bench_lifecycle.py [--files 2000] [--big-mib 512]

Commits one version of many small files plus one large file, then times `verify --all` (re-hashes
every blob, chunk by chunk), a gc that finds nothing to delete, a gc that deletes a removed version's
objects, and reading the large file as a file:// reference through the verified fetch path.
"""

import argparse
import os
import tempfile
import time

from artifactfs import Artifact
from artifactfs.client import Client
from artifactfs.fetch import pieces_of
from artifactfs.gc import gc
from artifactfs.lifecycle import delete_version, live_versions
from artifactfs.verify import verify


def timed(label, fn):
    t = time.perf_counter()
    result = fn()
    print(f"{label}: {time.perf_counter() - t:.2f} s")
    return result, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--big-mib", type=int, default=512)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ARTIFACTFS_REFERENCE_ROOTS"] = tmp  # the file:// reference below lives here
        client = Client(store=os.path.join(tmp, "store"), cache_dir=os.path.join(tmp, "cache"))
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        for i in range(args.files):
            with open(os.path.join(src, f"f{i:05d}.txt"), "w") as f:
                f.write(f"small file {i}\n" * 20)
        big = os.path.join(tmp, "big.bin")
        with open(big, "wb") as f:
            for _ in range(args.big_mib):
                f.write(os.urandom(1024 * 1024))
        art = Artifact("bench/p/data", type="dataset", client=client)
        art.add_dir(src)
        art.add_file(big)
        timed(f"commit {args.files} files + {args.big_mib} MiB", art.save)
        report, secs = timed("verify --all", lambda: verify(client.repo, live_versions(client.repo), client.references))
        assert not report.problems
        print(f"  {report.blobs} blobs, {(args.big_mib * 2**20) / secs / 2**20:.0f} MiB/s overall")
        timed("gc (nothing to delete)", lambda: gc(client.repo, grace=0))
        art2 = Artifact("bench/p/data", type="dataset", client=client)
        art2.add_dir(src, name="copy")
        art2.save()
        delete_version(client.repo, client.ref("bench/p/data:v0"))
        rep, _ = timed("gc (deletes v0: 1 manifest + the big blob)", lambda: gc(client.repo, grace=0))
        print(f"  deleted {len(rep.deleted)} objects, {rep.deleted_bytes / 2**20:.0f} MiB")

        ref = Artifact("bench/p/ref", type="dataset", client=client)
        timed("add_reference(file://, hashes it) + save",
              lambda: (ref.add_reference("file://" + big), ref.save()))
        m = client.manifest(client.resolve("bench/p/ref"))
        client.cache.clean()
        _, secs = timed("read the reference cold (ranged, verified)",
                        lambda: sum(len(client.fetcher.piece(p)) for p in pieces_of(m[0], m.chunk_size)))
        print(f"  {args.big_mib / secs:.0f} MiB/s")
        client.close()


if __name__ == "__main__":
    main()
