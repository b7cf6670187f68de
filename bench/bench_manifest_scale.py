"""Memory and time of the read-only mount on versions of 100,000 and 1,000,000 files.

For each size: a synthetic manifest (1,000 files per directory; the blobs are not needed to list) is
committed to a local store; then `artifactfs mount` runs as a daemon and we time the first `ls` of a
directory of the version (which loads and indexes the manifest), a second `ls` of another directory,
and `stat` of one file; and read the daemon's RSS (VmRSS now, VmHWM peak) from /proc.
Also reported: Manifest.parse time and the in-process RSS growth of holding the parsed manifest, the
load of the manifest's columnar form, the first listing after a remount (from the local manifest
cache), and (the baseline) the first listing of another fresh mount once the columnar form is deleted,
i.e. a version whose manifest must be parsed from JSON.

Also one directory of 1,000,000 files (`--flat`): its first and second listing, `find -ls`, and RSS.

Run: python bench/bench_manifest_scale.py [--sizes 100000 1000000] [--flat 1000000]
"""

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time

from common import goal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs import layout  # noqa: E402
from artifactfs.client import Client  # noqa: E402
from artifactfs.manifest import (  # noqa: E402
    Entry,
    Manifest,
    columnar,  # noqa: E402
)
from artifactfs.names import ArtifactName  # noqa: E402
from tests.fuse_util import Mount  # noqa: E402


def rss_kib(pid="self") -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def synthetic_manifest(n: int) -> Manifest:
    per_dir = 1000
    entries = (Entry(f"d{i // per_dir:05d}/f{i % per_dir:04d}.bin", 1000 + i % 977, f"{i:032x}") for i in range(n))
    return Manifest._pack(entries, 8 * 1024 * 1024)  # generated already in path order


def mount_and_list(n: int, tmp: str, env: dict, label: str) -> dict:
    """Times and RSS of a fresh mount (empty cache) listing the version."""
    env = dict(env, ARTIFACTFS_CACHE_DIR=os.path.join(tmp, f"cache{n}-{label}"))
    t0 = time.perf_counter()
    m = Mount(os.path.join(tmp, f"mnt{n}-{label}"), env)
    out = {}
    try:
        out["mount"] = time.perf_counter() - t0
        out["rss_idle"] = rss_kib(m.pid)[0]
        root = m.path("bench/scale/many:v0")
        t0 = time.perf_counter()
        first = subprocess.run(["ls", "-l", os.path.join(root, "d00000")], capture_output=True, check=True)
        out["first"] = time.perf_counter() - t0
        out["first_entries"] = len(first.stdout.splitlines()) - 1
        last_dir = f"d{(n - 1) // 1000:05d}"
        t0 = time.perf_counter()
        subprocess.run(["ls", "-l", os.path.join(root, last_dir)], capture_output=True, check=True)
        out["second"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        top = subprocess.run(["ls", root], capture_output=True, check=True)
        out["top"], out["top_dirs"] = time.perf_counter() - t0, len(top.stdout.splitlines())
        t0 = time.perf_counter()
        os.stat(os.path.join(root, last_dir, "f0999.bin"))
        out["stat"] = time.perf_counter() - t0
        out["rss"], out["peak"] = rss_kib(m.pid)
    finally:
        m.close()
    return out


def run(n: int, tmp: str) -> None:
    store, cache = os.path.join(tmp, f"store{n}"), os.path.join(tmp, f"cache{n}")
    client = Client(store=store, cache_dir=cache)
    t0 = time.perf_counter()
    manifest = synthetic_manifest(n)
    t_build = time.perf_counter() - t0
    data = manifest.to_bytes()
    size = len(data)
    record = client.repo.commit(ArtifactName("bench", "scale", "many"), "dataset", manifest).record
    columns_key = layout.manifest_columns_key(record.manifest)
    columns = client.store.get(columns_key)[0]
    del manifest
    gc.collect()
    before = rss_kib()[0]
    t0 = time.perf_counter()
    parsed = Manifest.parse(data)
    t_parse = time.perf_counter() - t0
    held = rss_kib()[0] - before
    del parsed
    gc.collect()
    t0 = time.perf_counter()
    columnar.decode(columns, record.manifest)
    t_decode = time.perf_counter() - t0

    env = dict(os.environ, ARTIFACTFS_STORE=store, ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"))
    with_columns = mount_and_list(n, tmp, env, "columns")
    remount = mount_and_list(n, tmp, env, "columns")  # same cache directory: the local copy of the form
    client.store.delete(columns_key)  # the baseline: a version whose manifest has only its JSON form
    try:
        json_only = mount_and_list(n, tmp, env, "json")
    except subprocess.CalledProcessError as exc:  # e.g. a parse longer than the mount's --timeout
        print(f"  (the JSON-only baseline failed: {' '.join(exc.cmd)} exited {exc.returncode})")
        json_only = {"first": float("nan"), "rss": 0, "peak": 0}
    client.close()
    c, j = with_columns, json_only
    print(f"\n{n:,} entries (canonical manifest {size / 2**20:.0f} MiB, columnar form {len(columns) / 2**20:.0f} MiB)")
    print(f"  build manifest in memory           {t_build:7.2f} s")
    print(f"  Manifest.parse (JSON)              {t_parse:7.2f} s   holds {held / 1024:7.1f} MiB")
    print(f"  columnar.decode            {t_decode:7.2f} s   {t_parse / t_decode:.1f}x faster than the parse")
    print(f"  mount ready (daemon started)       {c['mount']:7.2f} s   daemon RSS {c['rss_idle'] / 1024:7.1f} MiB")
    print(f"  first ls -l of a 1,000-entry dir   {c['first']:7.2f} s   (loads the columnar form; {c['first_entries']} "
          f"entries); {j['first']:.2f} s from the JSON only: {j['first'] / c['first']:.1f}x")
    print(f"  the same after a remount           {remount['first']:7.2f} s   (the local manifest cache)")
    print(f"  ls -l of another 1,000-entry dir   {c['second']:7.3f} s")
    print(f"  ls of the version root             {c['top']:7.3f} s   ({c['top_dirs']} dirs)")
    print(f"  stat of one file                   {c['stat'] * 1000:7.2f} ms")
    print(f"  daemon RSS after listing           {c['rss'] / 1024:7.1f} MiB (peak {c['peak'] / 1024:.1f} MiB); "
          f"from the JSON only {j['rss'] / 1024:.1f} MiB (peak {j['peak'] / 1024:.1f} MiB)")
    ready = c["mount"] + c["first"]
    goal(f"a {n:,}-entry version: mounted and first directory listed, seconds / 5 s", ready / 5, 1.0,
         f"{ready:.2f} s (mount {c['mount']:.2f} s + first ls -l {c['first']:.2f} s)", at_most=True)
    goal(f"a {n:,}-entry version: daemon peak RSS / 1 GiB", c["peak"] / 2**20, 1.0,
         f"{c['peak'] / 1024:.0f} MiB", at_most=True)


def run_flat(n: int, tmp: str) -> None:
    """One directory of `n` files: the first and second `ls -f` (the kernel then holds an inode per
    entry, and the daemon a small row for each), `find -ls`, and the daemon's RSS before and after."""
    store = os.path.join(tmp, f"flat-store{n}")
    client = Client(store=store, cache_dir=os.path.join(tmp, f"flat-cache{n}"))
    entries = (Entry(f"images/{i:07d}.jpg", 1000 + i % 977, f"{i:032x}") for i in range(n))
    client.repo.commit(ArtifactName("bench", "scale", "flat"), "dataset", Manifest._pack(entries, 8 * 1024 * 1024))
    client.close()
    env = dict(os.environ, ARTIFACTFS_STORE=store, ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"),
               ARTIFACTFS_CACHE_DIR=os.path.join(tmp, f"flat-mcache{n}"))
    m = Mount(os.path.join(tmp, f"flat-mnt{n}"), env)
    try:
        d = m.path("bench/scale/flat:v0/images")
        os.stat(d)  # loads the version
        loaded = rss_kib(m.pid)[0]
        print(f"\none directory of {n:,} files (fresh mount; daemon RSS {loaded / 1024:.0f} MiB with the "
              "version loaded)")
        listing = f"ls -f {d} | wc -l"
        for what, cmd in (("ls -f | wc -l, first", listing), ("ls -f | wc -l, again", listing),
                          ("find -ls | wc -l", f"find {d} -ls | wc -l")):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True).stdout.strip()
            seconds = time.perf_counter() - t0
            print(f"  {what:22s} {seconds:7.2f} s   ({out} lines; daemon RSS "
                  f"{rss_kib(m.pid)[0] / 1024:.0f} MiB)")
            if what.endswith("first"):
                goal(f"ls of a {n:,}-entry directory, fresh mount, seconds / 2 s", seconds / 2, 1.0,
                     f"{seconds:.2f} s", at_most=True)
    finally:
        m.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--flat", type=int, default=1_000_000, help="files in the one-directory case (0: skip)")
    parser.add_argument("--tmp", default="/var/tmp")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, max RSS of this process so far "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    with tempfile.TemporaryDirectory(prefix="artifactfs-scale-", dir=args.tmp) as tmp:
        for n in args.sizes:
            run(n, tmp)
        if args.flat:
            run_flat(args.flat, tmp)


if __name__ == "__main__":
    main()
