"""Writing through a staging mount vs to local disk, and `artifactfs commit` of the stage vs
`dvc add` + `dvc push` of the same data to the same SeaweedFS bucket (on 127.0.0.1).

Workloads: one 1 GiB file (written in 1 MiB blocks), and 5,000 files of 64 KiB, each written and closed.
Write figures include close(); neither side fsyncs (the stage's grouped fsync runs in the background).
dvc: a separate virtualenv (pip install 'dvc[s3]'), `dvc init --no-scm`, an S3 remote on the same
SeaweedFS; timed: `dvc add data` + `dvc push` (copying the data into the dvc workspace is not timed).

Run: python bench/bench_staging.py [--big-size-mib 1024] [--small-count 5000] [--dvc /path/to/dvc]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from common import BUCKET, drop_caches, mbps, seaweed_server

BLOCK = 1024 * 1024


def write_big(path: str, size: int, block: bytes) -> None:
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            f.write(block[:n])
            written += n


def write_small(root: str, count: int, size: int, payloads: list[bytes]) -> None:
    for i in range(count):
        sub = os.path.join(root, f"d{i // 500:03d}")
        if i % 500 == 0:
            os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:05d}.bin"), "wb") as f:
            f.write(payloads[i])


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def cli(args, env, check=True) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "artifactfs_cli.main", *args], env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise SystemExit(f"artifactfs {' '.join(args)} failed: {res.stderr.strip()}")
    return res


def run_dvc(dvc: str, src: str, work: str, endpoint: str, env: dict) -> tuple[float, float]:
    os.makedirs(work)
    shutil.copytree(src, os.path.join(work, "data"))
    run = lambda *a: subprocess.run([dvc, *a], cwd=work, env=env, check=True, capture_output=True, text=True)  # noqa: E731
    run("init", "--no-scm")
    run("remote", "add", "-d", "store", f"s3://{BUCKET}/dvc-{uuid.uuid4().hex}")
    run("remote", "modify", "store", "endpointurl", endpoint)
    drop_caches()
    t_add = timed(run, "add", "data")
    t_push = timed(run, "push")
    return t_add, t_push


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-size-mib", type=int, default=1024)
    ap.add_argument("--small-count", type=int, default=5000)
    ap.add_argument("--small-size-kib", type=int, default=64)
    ap.add_argument("--dvc", default=shutil.which("dvc") or "/tmp/dvcenv/bin/dvc")
    args = ap.parse_args()
    big, count, small = args.big_size_mib * BLOCK, args.small_count, args.small_size_kib * 1024
    block = os.urandom(BLOCK)
    payloads = [os.urandom(small) for _ in range(count)]
    total = big + count * small

    with tempfile.TemporaryDirectory(prefix="artifactfs-bench-stage-", dir="/var/tmp") as tmp, \
            seaweed_server() as server:
        env = {**os.environ, "ARTIFACTFS_STORE": f"s3://{BUCKET}/af-{uuid.uuid4().hex}",
               "ARTIFACTFS_CACHE_DIR": f"{tmp}/cache", "ARTIFACTFS_STAGE_DIR": f"{tmp}/stages",
               "ARTIFACTFS_CONFIG": f"{tmp}/none.toml"}
        local = f"{tmp}/local"
        mnt = f"{tmp}/mnt"
        os.makedirs(local)
        os.makedirs(mnt)
        print(f"workloads: one {args.big_size_mib} MiB file; {count} x {args.small_size_kib} KiB files")

        t_local_big = timed(write_big, f"{local}/big.bin", big, block)
        t_local_small = timed(write_small, f"{local}/small", count, small, payloads)
        drop_caches()

        out = cli(["stage", "acme/bench/data", mnt, "--empty"], env).stdout
        pid = int(out.split("(pid ")[1].split(",")[0])
        try:
            t_stage_big = timed(write_big, f"{mnt}/big.bin", big, block)
            t_stage_small = timed(write_small, f"{mnt}/small", count, small, payloads)
            print(f"write 1 file:      local {t_local_big:6.2f}s ({mbps(big, t_local_big)})  "
                  f"stage {t_stage_big:6.2f}s ({mbps(big, t_stage_big)})  ratio {t_stage_big / t_local_big:5.2f}x")
            print(f"write {count} files: local {t_local_small:6.2f}s ({count / t_local_small:7.0f} files/s)  "
                  f"stage {t_stage_small:6.2f}s ({count / t_stage_small:7.0f} files/s)  "
                  f"ratio {t_stage_small / t_local_small:5.2f}x")
            drop_caches()
            start = time.perf_counter()
            res = cli(["commit", mnt, "-m", "bench"], env)
            t_commit = time.perf_counter() - start
            print(f"artifactfs commit: {t_commit:6.2f}s ({mbps(total, t_commit)})  [{res.stdout.splitlines()[0]}]")
        finally:
            subprocess.run(["fusermount3", "-u", mnt])
            for _ in range(100):
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.1)

        if os.path.exists(args.dvc):
            dvc_env = {**os.environ, "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
                       "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"]}
            t_add, t_push = run_dvc(args.dvc, local, f"{tmp}/dvcwork", server.endpoint, dvc_env)
            t_dvc = t_add + t_push
            print(f"dvc add + push:    {t_dvc:6.2f}s (add {t_add:.2f}s, push {t_push:.2f}s)  "
                  f"-> artifactfs commit is {t_dvc / t_commit:4.1f}x faster")
        else:
            print(f"dvc not found at {args.dvc}: skipped the dvc comparison")


if __name__ == "__main__":
    main()
