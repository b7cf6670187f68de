"""Server time of the web view's pages on a large store, on a local directory and on SeaweedFS (127.0.0.1).

The store: a project of A artifacts (2 versions each, an alias on every tenth) and two versions of
N entries each (synthetic manifests; the blobs are not needed to list): `big/tree` (1,000 directories
of N/1,000 files) and `big/flat` (N files in one directory). `artifactfs ui` runs as a subprocess on a
fresh cache; each page is loaded once (first load: records read and the manifest fetched, checked and
indexed), then R more times (median), then once from a new server on the same disk cache (a restart).
The figure is the view's own Server-Timing (time to the response's first byte inside the app), the wall
time of the request beside it. Baselines, in the same run: one listing of every key of the project
straight from the store (what a page that looks at every artifact pays; the project page lists only the
artifacts it shows), and Manifest.parse of the N-entry manifest's stored JSON (what a version's first
page would cost without the columnar form).

Also a diff of two 1M-entry versions (3,000 changes; its first page, a later page, the JSON) with the
server's RSS after each, and the lineage page of the last of 24 versions each made from all before it.

Goals (issue 20): the project page < 300 ms and a 1M-entry version's root page < 300 ms; (issue 33)
the first page of a diff of two 1M-entry versions < 2 s and the server < 200 MB.

Run: python bench/bench_ui.py [--artifacts 1000] [--entries 1000000] [--repeats 5] [--backends local s3]
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from common import BUCKET, goal, seaweed_server

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs import layout  # noqa: E402
from artifactfs.client import Client  # noqa: E402
from artifactfs.hashing import hash_bytes  # noqa: E402
from artifactfs.manifest import Entry, Manifest  # noqa: E402
from artifactfs.names import ArtifactName  # noqa: E402

PIECE = 8 * 1024 * 1024
LINEAGE_VERSIONS = 24


def fill(client: Client, artifacts: int, entries: int) -> None:
    repo = client.repo

    def one(a: int) -> None:
        name = ArtifactName("bench", "many", f"a{a:04d}")
        for v in range(2):
            manifest = Manifest.from_entries([Entry(f"part{v}.bin", 1000 + a, f"{a:08x}{v:024x}")])
            repo.put_manifest(manifest)
            repo.commit(name, "dataset" if a % 3 else "model", manifest, description=f"artifact {a}, v{v}",
                        aliases=["best"] if a % 10 == 0 and v else ())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(artifacts)))
    per_dir = 1000
    real = b"name,value\n" + b"".join(b"row%d,%d\n" % (i, i * i) for i in range(100))  # the last file, previewed
    size, digest, _ = hash_bytes(real)
    client.store.put(layout.blob_key(digest), real)

    def tree_entry(i: int) -> Entry:
        path = f"d{i // per_dir:05d}/f{i % per_dir:04d}"
        return Entry(path + ".csv", size, digest) if i == entries - 1 else Entry(path + ".bin", 1000 + i % 977,
                                                                                   f"{i:032x}")

    def tree_v1():
        """v0 with one file in a thousand removed, one changed and one added: 3,000 changes in 1M."""
        for i in range(entries):
            e = tree_entry(i)
            if i % 1000 == 7:
                continue
            yield Entry(e.path, e.size, f"{i + 3 * entries:032x}") if i % 1000 == 13 else e
            if i % 1000 == 500:
                yield Entry(e.path + ".new", 1, f"{i + 4 * entries:032x}")

    tree = (tree_entry(i) for i in range(entries))
    flat = (Entry(f"f{i:07d}.bin", 1000 + i % 977, f"{i + entries:032x}") for i in range(entries))
    for label, gen in (("tree", tree), ("flat", flat), ("tree", tree_v1())):
        manifest = Manifest._pack(gen, PIECE)  # generated in path order already
        repo.put_manifest(manifest)
        repo.commit(ArtifactName("bench", "big", label), "dataset", manifest)
    # lineage: vN made by run rN from every version before it (the graph that once took minutes)
    chain = ArtifactName("bench", "lineage", "chain")
    for n in range(LINEAGE_VERSIONS):
        manifest = Manifest.from_entries([Entry("out.bin", n, f"{n + 5 * entries:032x}")])
        repo.put_manifest(manifest)
        repo.commit(chain, "dataset", manifest, run=f"r{n}", inputs=[f"{chain}:v{i}" for i in range(n)])


def serve(env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "artifactfs", "ui", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"artifactfs ui did not start: {line}{proc.stderr.read()}")
    return proc, match.group(0)


def rss_mib(proc: subprocess.Popen) -> tuple[float, float]:
    """The server's resident memory now and at its peak (VmRSS, VmHWM), MiB."""
    with open(f"/proc/{proc.pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)


def load(url: str) -> tuple[float, float, int]:
    """(server ms, wall ms, body bytes) of one GET."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:  # an error status raises with the URL
        body = r.read()
        timing = r.headers.get("Server-Timing", "")
    wall = (time.perf_counter() - start) * 1000
    return float(re.search(r"dur=([\d.]+)", timing).group(1)), wall, len(body)


PAGES = [
    ("home page (recent versions, types)", "/"),
    ("project page 1 (50 rows)", "/e/bench/many"),
    ("project page 20", "/e/bench/many?page=20"),
    ("project as JSON", "/api/e/bench/many"),
    ("artifact page", "/e/bench/many/a{mid:04d}"),
    ("search 'a09' (110 hits)", "/search?q=a09"),
    ("1M tree: root (1,000 dirs)", "/e/bench/big/tree/v0/tree/"),
    ("1M tree: last dir (1,000 files)", "/e/bench/big/tree/v0/tree/d{last}"),
    ("1M tree: a CSV file's preview", "/e/bench/big/tree/v0/file/d{last}/f{lastfile}.csv"),
    ("1M flat: root page 1 (200 rows)", "/e/bench/big/flat/v0/tree/"),
    ("1M flat: root, page at entry 500,000", "/e/bench/big/flat/v0/tree/?start=500000"),
    ("1M flat: root as JSON", "/api/e/bench/big/flat/v0/tree/"),
    ("1M tree: diff v0 -> v1 (3,000 changes)", "/e/bench/big/tree/-/diff?from=v0&to=v1"),
    ("1M tree: diff, the page after d00500", "/e/bench/big/tree/-/diff?from=v0&to=v1&after=d00500"),
    ("1M tree: diff as JSON", "/api/e/bench/big/tree/-/diff?from=v0&to=v1"),
    (f"lineage of v{LINEAGE_VERSIONS - 1}, {LINEAGE_VERSIONS} dense versions, depth 10",
     f"/e/bench/lineage/chain/v{LINEAGE_VERSIONS - 1}/lineage?depth=10"),
]


def run(backend: str, store: str, args, tmp: str) -> None:
    client = Client(store=store, cache_dir=os.path.join(tmp, f"fill-{backend}"))
    start = time.perf_counter()
    fill(client, args.artifacts, args.entries)
    print(f"\n== {backend}: {store}  ({args.artifacts:,} artifacts x 2 versions, two versions of "
          f"{args.entries:,} entries; written in {time.perf_counter() - start:.0f} s)")
    prefix = layout.artifact_key(ArtifactName("bench", "many", "a0000")).rsplit("/", 2)[0] + "/"
    listing = []
    for _ in range(3):
        t0 = time.perf_counter()
        keys = sum(1 for _ in client.store.list(prefix))
        listing.append((time.perf_counter() - t0) * 1000)
    record = client.repo.version(ArtifactName("bench", "big", "flat"), 0)
    t0 = time.perf_counter()
    Manifest.parse(client.repo.manifest_bytes_from_store(record.manifest))
    parse = (time.perf_counter() - t0) * 1000
    print(f"baseline: one listing of the project's {keys:,} keys {min(listing):.0f} ms; "
          f"loading the 1M-entry manifest from the store {parse:.0f} ms")
    client.close()

    env = dict(os.environ, ARTIFACTFS_STORE=store, ARTIFACTFS_CACHE_DIR=os.path.join(tmp, f"ui-{backend}"),
               ARTIFACTFS_CONFIG=os.path.join(tmp, "none.toml"))
    last = f"{(args.entries - 1) // 1000:05d}"
    figures = {}
    proc, base = serve(env)
    try:
        diff_rss: list[float] = []
        for label, path in PAGES:
            url = base + path.format(last=last, lastfile=f"{(args.entries - 1) % 1000:04d}", mid=args.artifacts // 2)
            if "diff" in label and not diff_rss:
                diff_rss.append(rss_mib(proc)[0])
            first = load(url)
            again = [load(url) for _ in range(args.repeats)]
            figures[label] = [first, (statistics.median(a[0] for a in again), statistics.median(a[1] for a in again))]
            if "diff" in label:
                diff_rss.append(rss_mib(proc)[1])
    finally:
        stop(proc)
    grown = max(diff_rss) - diff_rss[0]
    print(f"server RSS before the diff pages {diff_rss[0]:.0f} MiB, peak after them {max(diff_rss):.0f} MiB "
          f"(+{grown:.0f} MiB: the second manifest and the comparison)")
    diff_label = "1M tree: diff v0 -> v1 (3,000 changes)"
    goal(f"{backend}: first page of a diff of two {args.entries:,}-entry versions, seconds / 2 s",
         figures[diff_label][0][0] / 2000, 1.0, f"{figures[diff_label][0][0]:.0f} ms first load, "
         f"{figures[diff_label][1][0]:.0f} ms repeated", at_most=True)
    goal(f"{backend}: server memory a diff of two {args.entries:,}-entry versions adds, MiB / 200",
         grown / 200, 1.0, f"+{grown:.0f} MiB", at_most=True)
    proc, base = serve(env)  # a new server on the same disk cache: the next job on this machine
    try:
        for label, path in PAGES:
            url = base + path.format(last=last, lastfile=f"{(args.entries - 1) % 1000:04d}", mid=args.artifacts // 2)
            figures[label].append(load(url))
    finally:
        stop(proc)
    print(f"{'page':40} {'first load':>18} {'repeat (median)':>19} {'after a restart':>19} {'size':>8}")
    for label, (first, again, restart) in figures.items():
        label = label.replace("1M", f"{args.entries / 1e6:g}M")
        print(f"{label:40} {first[0]:8.1f} ({first[1]:6.1f}) {again[0]:8.1f} ({again[1]:6.1f}) "
              f"{restart[0]:8.1f} ({restart[1]:6.1f}) {first[2] / 1024:5.0f} KiB")
    print("(ms: server time from the Server-Timing header, wall time of the request in brackets)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["local", "s3"], choices=["local", "s3"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-ui-") as tmp:
        if "local" in args.backends:
            run("local", os.path.join(tmp, "store"), args, tmp)
        if "s3" in args.backends:
            with seaweed_server():
                run("s3", f"s3://{BUCKET}/ui", args, tmp)


if __name__ == "__main__":
    main()
