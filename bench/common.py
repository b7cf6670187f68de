"""Shared pieces of the benchmarks: a SeaweedFS server on 127.0.0.1, data generation, timing."""

import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.seaweed import ADMIN, SeaweedServer  # noqa: E402

BUCKET = "bench"


@contextlib.contextmanager
def seaweed_server():
    """A fresh SeaweedFS with a `bench` bucket, stopped on exit; sets the AWS env for artifactfs."""
    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-weed-") as workdir:
        server = SeaweedServer(workdir)
        server.start()
        try:
            server.create_bucket(BUCKET)
            os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID=ADMIN[0],
                              AWS_SECRET_ACCESS_KEY=ADMIN[1], AWS_DEFAULT_REGION="us-east-1")
            yield server
        finally:
            server.stop()


def drop_caches() -> None:
    """Empty the kernel's page cache (root only; otherwise a no-op), so a cold read is cold."""
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def make_big_file(path: str, size: int) -> None:
    """Random bytes throughout: no two chunks alike, so nothing is served twice by digest. (Until
    2026-12-04 each 16 MiB block differed only in its first 16 bytes, so most chunks were one and the
    same content and reads of them came from the daemon's memory: see docs/PERFORMANCE.md.)"""
    rnd = random.Random(f"{path}:{size}")  # another file, other bytes
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(16 * 1024 * 1024, size - written)
            f.write(rnd.randbytes(n))
            written += n


def make_small_files(root: str, count: int, size: int) -> None:
    for i in range(count):
        sub = os.path.join(root, f"d{i // 500:03d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:05d}.bin"), "wb") as f:
            f.write(os.urandom(size))


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def mbps(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:8.1f} MB/s"


RESULTS_ENV = "ARTIFACTFS_BENCH_RESULTS"  # bench_reads.py collects every goal measured into this file


def goal(row: str, ratio: float, target: float, detail: str, *, at_most: bool = False, **figures) -> None:
    """A goal measured in this run: printed, and appended as a JSON line to $ARTIFACTFS_BENCH_RESULTS
    when set. `ratio` is against the baseline of the same run; met when it is >= `target` (<= with
    `at_most`). `figures` (bytes fetched per byte, CPU per GiB, ...) go along."""
    met = ratio <= target if at_most else ratio >= target
    verdict = "met" if met else "NOT met"
    print(f"  goal: {row}: {ratio:.2f}x ({'<=' if at_most else '>='} {target}x: {verdict}); {detail}")
    _collect({"row": row, "ratio": ratio, "target": target, "at_most": at_most, "met": met, "detail": detail,
              **figures})


def skipped(row: str, why: str) -> None:
    """A goal this run cannot measure (a peer or a library is missing): said, and collected."""
    print(f"  goal: {row}: skipped ({why})")
    _collect({"row": row, "skipped": why})


def _collect(result: dict) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({**result, "script": os.path.basename(sys.argv[0])}) + "\n")
