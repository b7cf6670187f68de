"""Read speed of the read-only mount against SeaweedFS on 127.0.0.1, with baselines from the same run.

Workloads and baselines:
- one 1 GiB file, read sequentially with `dd bs=1M` through a fresh mount with an empty cache (cold)
  vs raw boto3: 16 threads of 8 MiB ranged GETs of the same bytes (goal >= 0.9x);
- the same file read again through the mount (page cache, keep_cache) vs a local copy read from the
  page cache (goal >= 0.8x), medians of 5 alternating runs (each read takes ~0.1 s);
- 5,000 files of 64 KiB, all read by 16 threads, cold (fresh mount, empty cache);
- `find -ls` (find + stat) over a version of 20,000 files through a fresh mount vs on a local copy
  (goal >= 0.5x): against the local copy cold (caches dropped: its peer) and warm (the strictest), and
  again on the same mount vs the warm local copy; medians of 3 fresh mounts;
- the large and small workloads through `rclone mount` and `s3fs` (Debian packages) over plain objects
  in the same bucket (goals: artifactfs >= 2x on the large file, >= 3x on the small files);
- all three workloads on the pyfuse3 floor (fuse_floor.py: the same layout served from memory, mounted
  like artifactfs): the best any pyfuse3 file system does on this machine, so each goal can be read
  against what the stack allows.

Cold means a fresh mount (so an empty page cache for its files) and an empty artifactfs cache; the
kernel's caches are also dropped before every timed read (baselines too), so SeaweedFS reads from its
disk each time. With --server-warm they are not dropped: SeaweedFS serves from memory, as a store on
another machine with enough RAM would, and the figures show the clients alone. Run as root (FUSE,
readahead, drop_caches):
    python bench/bench_mount.py [--big-mib 1024] [--small-count 5000] [--tree-count 20000] [--server-warm]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import common
from common import BUCKET, drop_caches, mbps, seaweed_server
from fuse_floor import FloorMount

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs.client import Client  # noqa: E402
from tests.fuse_util import Mount, wait_gone  # noqa: E402
from tests.seaweed import ADMIN  # noqa: E402

RANGE = 8 * 1024 * 1024
THREADS = 16
REPEATS = 5  # alternating runs of the short warm read
FIND_MOUNTS = 3  # fresh mounts for find


def random_file(path: str, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * 2**20)
            f.write(os.urandom(n))
            left -= n


def tree(root: str, count: int, size: int, per_dir: int) -> list[str]:
    paths = []
    for i in range(count):
        sub = os.path.join(root, f"d{i // per_dir:03d}")
        os.makedirs(sub, exist_ok=True)
        path = os.path.join(sub, f"f{i:05d}.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        paths.append(os.path.relpath(path, root))
    return paths


def dd(path: str) -> float:
    start = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"], check=True)
    return time.perf_counter() - start


def read_all(root: str, rels: list[str]) -> float:
    def one(rel):
        with open(os.path.join(root, rel), "rb") as f:
            while f.read(1 << 20):
                pass

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, rels))
    return time.perf_counter() - start


def find_ls(root: str) -> float:
    start = time.perf_counter()
    subprocess.run(["find", root, "-ls"], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def raw_ranged_gets(server, key: str, size: int) -> float:
    client = server.client()

    def one(start):
        body = client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={start}-{min(start + RANGE, size) - 1}")["Body"]
        body.read()

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(0, size, RANGE)))
    return time.perf_counter() - start


def upload_plain(server, local_root: str, prefix: str) -> None:
    client = server.client()
    files = [os.path.join(d, f) for d, _, fs in os.walk(local_root) for f in fs]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda p: client.upload_file(p, BUCKET, f"{prefix}/{os.path.relpath(p, local_root)}"), files))


class ForeignMount:
    """rclone or s3fs mounted read-only on plain objects under `plain/` in the bucket."""

    def __init__(self, kind: str, server, mountpoint: str, workdir: str, rclone_cache: str | None = None,
                 cache_max: str = "100G"):
        """`rclone_cache`: a directory for rclone's `--vfs-cache-mode full` (its disk cache, bounded by
        `cache_max`), else none."""
        self.mountpoint = mountpoint
        os.makedirs(mountpoint, exist_ok=True)
        env = dict(os.environ)
        env.pop("AWS_CA_BUNDLE", None)  # rclone's AWS SDK refuses a custom CA bundle on its HTTP transport
        if kind == "rclone":
            env.update(RCLONE_S3_PROVIDER="Other", RCLONE_S3_ENDPOINT=server.endpoint, RCLONE_S3_ACCESS_KEY_ID=ADMIN[0],
                       RCLONE_S3_SECRET_ACCESS_KEY=ADMIN[1], RCLONE_S3_REGION="us-east-1",
                       RCLONE_CONFIG=os.path.join(workdir, "rclone.conf"))
            cmd = ["rclone", "mount", f":s3:{BUCKET}/plain", mountpoint, "--read-only", "--daemon",
                   "--log-file", os.path.join(workdir, "rclone.log")]
            cmd += (["--vfs-cache-mode", "full", "--cache-dir", rclone_cache, "--vfs-cache-max-size", cache_max]
                    if rclone_cache else ["--vfs-cache-mode", "off"])
            if rclone_cache and cache_max != "100G":  # a bound under test: enforced every 5 s, not every minute
                cmd += ["--vfs-cache-poll-interval", "5s"]
        else:
            passwd = os.path.join(workdir, "s3fs.passwd")
            with open(passwd, "w") as f:
                f.write(f"{ADMIN[0]}:{ADMIN[1]}\n")
            os.chmod(passwd, 0o600)
            cmd = ["s3fs", f"{BUCKET}:/plain", mountpoint, "-o", f"passwd_file={passwd}",
                   "-o", f"url={server.endpoint}", "-o", "use_path_request_style", "-o", "ro",
                   "-o", "endpoint=us-east-1"]
        subprocess.run(cmd, env=env, check=True, timeout=120)
        deadline = time.monotonic() + 60
        while not os.path.ismount(mountpoint):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not mount")
            time.sleep(0.1)
        found = subprocess.run(["pgrep", "-n", "-f", f"{kind}.*{mountpoint}"], capture_output=True, text=True)
        self.pid = int(found.stdout.split()[0]) if found.stdout.strip() else None  # its daemon, for CPU figures

    def close(self) -> None:
        for flags in ("-u", "-uz"):
            if os.path.ismount(self.mountpoint):
                subprocess.run(["fusermount3", flags, self.mountpoint], capture_output=True)
                time.sleep(0.5)


def ours(env: dict, tmp: str) -> Mount:
    """A fresh artifactfs mount with an empty cache."""
    cache = os.path.join(tmp, f"cache-{uuid.uuid4().hex[:8]}")
    mount_env = dict(env, ARTIFACTFS_CACHE_DIR=cache)
    drop_caches()
    return Mount(os.path.join(tmp, f"mnt-{uuid.uuid4().hex[:8]}"), mount_env)


def close_ours(m: Mount) -> None:
    m.close()
    wait_gone(m.pid)
    shutil.rmtree(m.env["ARTIFACTFS_CACHE_DIR"], ignore_errors=True)


def _sync_only() -> None:
    subprocess.run(["sync"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=5000)
    parser.add_argument("--tree-count", type=int, default=20000)
    parser.add_argument("--tmp", default="/var/tmp", help="where data, caches and mountpoints go")
    parser.add_argument("--server-warm", action="store_true", help="keep the kernel's caches (SeaweedFS's data)")
    args = parser.parse_args()
    if args.server_warm:
        global drop_caches
        drop_caches = _sync_only
    big_size = args.big_mib * 2**20
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-mount-", dir=args.tmp) as tmp, seaweed_server() as server:
        local = os.path.join(tmp, "local")
        os.makedirs(os.path.join(local, "big"))
        random_file(os.path.join(local, "big", "big.bin"), big_size)
        small_rels = tree(os.path.join(local, "small"), args.small_count, 64 * 1024, 500)
        tree(os.path.join(local, "tree"), args.tree_count, 16, 500)
        env = dict(os.environ, ARTIFACTFS_STORE=f"s3://{BUCKET}/afs", ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"),
                   ARTIFACTFS_CACHE_DIR=os.path.join(tmp, "commit-cache"))
        client = Client(store=env["ARTIFACTFS_STORE"], cache_dir=env["ARTIFACTFS_CACHE_DIR"])
        for name in ("big", "small", "tree"):
            client.commit_dir(os.path.join(local, name), f"bench/mount/{name}", "dataset")
        client.close()
        upload_plain(server, os.path.join(local, "big"), "plain/big")
        upload_plain(server, os.path.join(local, "small"), "plain/small")
        print(f"data: 1 file of {args.big_mib} MiB, {args.small_count} x 64 KiB, {args.tree_count} small files; "
              f"SeaweedFS at {server.endpoint}; {os.cpu_count()} CPUs")

        # -- large file ------------------------------------------------------------------------------
        drop_caches()  # as before every timed read below: SeaweedFS reads from disk for all of them
        t_raw = raw_ranged_gets(server, "plain/big/big.bin", big_size)
        m = ours(env, tmp)
        local_big = os.path.join(local, "big", "big.bin")
        try:
            path = m.path("bench/mount/big:v0/big.bin")
            t_cold = dd(path)
            dd(path)  # one untimed read each makes sure every page is cached
            dd(local_big)
            warm, local_warm = [], []
            for _ in range(REPEATS):  # a 0.1 s read: alternate and take medians, so noise hits both alike
                warm.append(dd(path))
                local_warm.append(dd(local_big))
        finally:
            close_ours(m)
        t_warm, t_local = statistics.median(warm), statistics.median(local_warm)
        print(f"\nlarge file, {args.big_mib} MiB")
        print(f"  raw boto3 ranged GETs ({THREADS} threads)  {t_raw:7.2f} s {mbps(big_size, t_raw)}")
        print(f"  artifactfs cold dd bs=1M         {t_cold:7.2f} s {mbps(big_size, t_cold)}   "
              f"{t_raw / t_cold:.2f}x raw GETs (goal >= 0.9x)")
        print(f"  local copy, page cache           {t_local:7.2f} s {mbps(big_size, t_local)}   median of {REPEATS}")
        print(f"  artifactfs warm re-read          {t_warm:7.2f} s {mbps(big_size, t_warm)}   "
              f"{t_local / t_warm:.2f}x local page cache (goal >= 0.8x), median of {REPEATS} alternating")

        # -- small files ------------------------------------------------------------------------------
        small_size = args.small_count * 64 * 1024
        m = ours(env, tmp)
        try:
            t_small = read_all(m.path("bench/mount/small:v0"), small_rels)
        finally:
            close_ours(m)
        print(f"\n{args.small_count} files of 64 KiB, read by {THREADS} threads, cold")
        print(f"  artifactfs                       {t_small:7.2f} s {mbps(small_size, t_small)}"
              f"   {args.small_count / t_small:8.0f} files/s")

        # -- rclone and s3fs --------------------------------------------------------------------------
        foreign_small = {}
        for kind in ("rclone", "s3fs"):
            if shutil.which(kind) is None:
                print(f"\n{kind}: not installed (apt-get install {kind}); skipped")
                continue
            results = {}
            for label in ("big", "small"):
                drop_caches()
                fm = ForeignMount(kind, server, os.path.join(tmp, f"{kind}-{label}"), tmp)
                try:
                    if label == "big":
                        results[label] = dd(os.path.join(fm.mountpoint, "big", "big.bin"))
                    else:
                        results[label] = read_all(os.path.join(fm.mountpoint, "small"), small_rels)
                finally:
                    fm.close()
            foreign_small[kind] = results["small"]
            print(f"\n{kind} (read-only, no disk cache), same bucket")
            print(f"  large file cold dd bs=1M         {results['big']:7.2f} s {mbps(big_size, results['big'])}   "
                  f"artifactfs is {results['big'] / t_cold:.2f}x faster (goal >= 2x)")
            print(f"  small files, {THREADS} threads, cold    {results['small']:7.2f} s "
                  f"{mbps(small_size, results['small'])}   artifactfs is {results['small'] / t_small:.2f}x faster "
                  f"(goal >= 3x)")

        # -- the pyfuse3 floor: large and small ------------------------------------------------------
        floor_args = (args.big_mib, args.small_count, args.tree_count)
        drop_caches()
        fm = FloorMount(os.path.join(tmp, "floor"), *floor_args)
        try:
            t_floor_big = dd(fm.path("big", "big.bin"))
        finally:
            fm.close()
        drop_caches()
        fm = FloorMount(os.path.join(tmp, "floor"), *floor_args)
        try:
            t_floor_small = read_all(fm.path("small"), small_rels)
        finally:
            fm.close()
        print("\npyfuse3 floor (fuse_floor.py: the same layout from memory, mounted like artifactfs)")
        print(f"  large file cold dd bs=1M         {t_floor_big:7.2f} s {mbps(big_size, t_floor_big)}   "
              f"the FUSE path alone: {t_raw / t_floor_big:.2f}x raw GETs")
        print(f"  small files, {THREADS} threads, cold    {t_floor_small:7.2f} s "
              f"{mbps(small_size, t_floor_small)}   artifactfs reaches {t_floor_small / t_small:.2f}x of it")
        for kind, t in foreign_small.items():
            print(f"    so at most {t / t_floor_small:.2f}x {kind} on small files for any pyfuse3 file system here")

        # -- find + stat ------------------------------------------------------------------------------
        local_tree = os.path.join(local, "tree")
        fresh, again, local_cold, local_warm, floor_fresh = [], [], [], [], []
        for _ in range(FIND_MOUNTS):
            m = ours(env, tmp)
            try:
                fresh.append(find_ls(m.path("bench/mount/tree:v0")))
                again.append(find_ls(m.path("bench/mount/tree:v0")))
            finally:
                close_ours(m)
            drop_caches()
            fm = FloorMount(os.path.join(tmp, "floor"), *floor_args)
            try:
                floor_fresh.append(find_ls(fm.path("tree")))
            finally:
                fm.close()
            common.drop_caches()  # even with --server-warm (last section): a cold local copy is a fresh mount's peer
            local_cold.append(find_ls(local_tree))
            local_warm.append(find_ls(local_tree))
        t_find, t_find_again = statistics.median(fresh), statistics.median(again)
        t_local_cold, t_local_warm = statistics.median(local_cold), statistics.median(local_warm)
        print(f"\nfind -ls over {args.tree_count} files (medians of {FIND_MOUNTS} fresh mounts)")
        print(f"  local copy, cold (caches dropped) {t_local_cold:6.3f} s")
        print(f"  local copy, warm                 {t_local_warm:7.3f} s")
        print(f"  artifactfs, fresh mount          {t_find:7.3f} s   {t_local_cold / t_find:.2f}x cold local, "
              f"{t_local_warm / t_find:.2f}x warm local (goal >= 0.5x)")
        print(f"  artifactfs, again (kernel cache) {t_find_again:7.3f} s   "
              f"{t_local_warm / t_find_again:.2f}x warm local")
        t_floor_find = statistics.median(floor_fresh)
        print(f"  pyfuse3 floor, fresh mount       {t_floor_find:7.3f} s   "
              f"{t_local_warm / t_floor_find:.2f}x warm local; artifactfs reaches {t_floor_find / t_find:.2f}x of it")


if __name__ == "__main__":
    main()
