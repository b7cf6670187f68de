"""Latency of `artifactfs watch`: from a commit made by another process to the watcher's command
starting, on a local directory and on SeaweedFS (127.0.0.1), with a 1 s poll interval.

The watcher runs `artifactfs watch E/P/* --on new-version --interval 1 -- python -c ...` (the command
writes the time it started and the version); each round commits a new version with `artifactfs commit`
in a process of its own and notes when that command returned (the version is in the store then).
Latency = command start - commit returned. Baseline, in the same run: the poll interval itself (a
commit lands at a random point of it, so half of it on average, all of it at worst) and one poll's own
time, with few and with many old versions (a poll lists aliases and deletions, whatever came before).

Goal (issue 35): latency <= poll interval + 1 s.

Run: python bench/bench_watch.py [--rounds 10] [--interval 1] [--backends local s3]
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from common import BUCKET, goal, seaweed_server

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from artifactfs import layout  # noqa: E402
from artifactfs.client import Client  # noqa: E402
from artifactfs.events import Watcher  # noqa: E402
from artifactfs.ingest import LocalFile  # noqa: E402

# the `artifactfs` of the interpreter running this (the project's .venv)
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
STAMP = "import sys, time, os; open(sys.argv[1], 'a').write(f\"{time.time()} {os.environ['ARTIFACTFS_VERSION']}\\n\")"


def af(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["artifactfs", *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


def latency(env: dict, work: str, rounds: int, interval: float) -> list[float]:
    stamps = os.path.join(work, "stamps")
    watcher = subprocess.Popen(["artifactfs", "watch", "bench/w/*", "--on", "new-version", "--interval", str(interval),
                                "--cursor", "bench", "--", sys.executable, "-c", STAMP, stamps], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Client()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                client.store.head(layout.watch_cursor_key("bench"))
                break
            except Exception:
                time.sleep(0.05)
        client.close()
        src = os.path.join(work, "src")
        os.makedirs(src, exist_ok=True)
        out = []
        for i in range(rounds):
            with open(os.path.join(src, "x.txt"), "w") as f:
                f.write(f"round {i}")
            time.sleep((i % 4) * interval / 4)  # commits land at different points of the poll interval
            res = af(env, "commit", "--dir", src, "bench/w/data", "--json")
            done = time.time()
            version = json.loads(res.stdout)["version"]
            while True:
                seen = dict(reversed(line.split()) for line in open(stamps)) if os.path.exists(stamps) else {}
                if str(version) in seen:
                    out.append(float(seen[str(version)]) - done)
                    break
                time.sleep(0.01)
        return out
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=30)


def poll_time(versions: int) -> float:
    """One poll of a watcher whose cursor is current, on an artifact of `versions` versions."""
    client = Client()
    name = client.artifact_name(f"bench/p{versions}/data")
    for i in range(versions):
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write(f"{versions} {i}")
        client.repo.commit(name, "dataset", _manifest(client, f.name, i))
        os.unlink(f.name)
    watcher = Watcher(client.repo, [f"bench/p{versions}/*"], f"poll{versions}")
    watcher.poll()  # the start: everything there now
    started = time.perf_counter()
    for _ in range(5):
        watcher.poll()
    took = (time.perf_counter() - started) / 5
    client.close()
    return took


def _manifest(client, path, i):
    from artifactfs import commit

    entries, _ = commit.upload_files(client.repo, [LocalFile(f"f{i}.txt", path)])
    from artifactfs.manifest import Manifest

    return Manifest.from_entries(entries)


def run(backend: str, rounds: int, interval: float) -> None:
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-watch-") as work:
        store = os.path.join(work, "store") if backend == "local" else f"s3://{BUCKET}/watch-{os.getpid()}"
        os.environ.update(ARTIFACTFS_STORE=store, ARTIFACTFS_CACHE_DIR=os.path.join(work, "cache"))
        env = dict(os.environ)
        lat = latency(env, work, rounds, interval)
        few, many = poll_time(5), poll_time(200)
        print(f"{backend}: latency median {statistics.median(lat):.2f} s, max {max(lat):.2f} s over {rounds} commits "
              f"(interval {interval:g} s); one poll: {few * 1000:.1f} ms with 5 versions, "
              f"{many * 1000:.1f} ms with 200")
        goal(f"watch latency <= interval + 1 s, {backend}", max(lat) / (interval + 1.0), 1.0,
             f"max {max(lat):.2f} s, median {statistics.median(lat):.2f} s against {interval + 1.0:g} s", at_most=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--backends", nargs="+", default=["local", "s3"])
    args = parser.parse_args()
    for backend in args.backends:
        if backend == "s3":
            with seaweed_server():
                run(backend, args.rounds, args.interval)
        else:
            run(backend, args.rounds, args.interval)


if __name__ == "__main__":
    main()
