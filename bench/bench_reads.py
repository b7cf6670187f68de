"""Every read goal in one command: runs the read benchmarks one after another (each starts and stops
its own SeaweedFS on 127.0.0.1 and compares against its baselines in the same run: local disk, rclone,
s3fs, raw boto3, python s3fs), shows their output as it comes, and ends with one table of every goal:
the ratio measured, the goal, met or not, and the figures beside it (bytes fetched per byte returned,
daemon CPU per GiB). A peer or library that is missing is a "skipped" row naming what installs it.

Run as root from a checkout (after `bash scripts/setup.sh`):
    .venv/bin/python bench/bench_reads.py            # sizes that take ~6 minutes on 2 cores
    .venv/bin/python bench/bench_reads.py --full     # the sizes of the goals (20,000-file epochs, 10M entries...)
    .venv/bin/python bench/bench_reads.py --only second_job tools --markdown goals.md
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from common import RESULTS_ENV

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (script, arguments for the default run, arguments for --full)
SUITES = {
    "second_job": ("bench_second_job.py", ["--files", "5000", "--reps", "2"], ["--files", "5000", "--reps", "3"]),
    "epoch": ("bench_epoch.py", ["--files", "5000", "--dirs", "50", "--reps", "1"],
              ["--files", "20000", "--reps", "3"]),
    "larger_than_cache": ("bench_epoch.py", ["--files", "5000", "--dirs", "50", "--reps", "1", "--cache-mib", "250",
                                              "--peers", "rclone"],
                          ["--files", "20000", "--reps", "2", "--cache-mib", "1000", "--peers", "rclone"]),
    "random": ("bench_random.py", ["--mib", "512", "--seconds", "10", "--h5-mib", "256"],
               ["--mib", "1024", "--seconds", "15", "--h5-mib", "512"]),
    "tools": ("bench_tools.py", ["--reps", "3"], ["--reps", "5", "--h5-mib", "512"]),
    "cold_sequential": ("bench_cold_read.py", ["--mib", "1024", "--reps", "3"], ["--mib", "1024", "--reps", "5"]),
    "fsspec": ("bench_fsspec.py", ["--big-mib", "64", "--random-mib", "1024", "--reads", "300", "--files", "500"],
               ["--random-mib", "4096", "--reads", "1000"]),
    "scale": ("bench_manifest_scale.py", ["--sizes", "1000000", "--flat", "100000"],
              ["--sizes", "10000000", "--flat", "100000"]),
}


def run_suite(name: str, full: bool, results: str) -> tuple[int, float]:
    script, quick, big = SUITES[name]
    cmd = [sys.executable, os.path.join(HERE, script), *(big if full else quick)]
    print(f"\n===== {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    rc = subprocess.run(cmd, env=dict(os.environ, **{RESULTS_ENV: results}), cwd=HERE).returncode
    return rc, time.perf_counter() - start


def table(rows: list[dict], failed: dict[str, int]) -> list[str]:
    lines = ["| goal | measured | target | | figures |", "|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['row']} | — | | skipped | {r['skipped']} |")
            continue
        extra = {k: v for k, v in r.items() if k not in ("row", "ratio", "target", "at_most", "met", "detail",
                                                          "script")}
        figures = "; ".join([r["detail"], *(f"{k.replace('_', ' ')} {v}" for k, v in extra.items())])
        lines.append(f"| {r['row']} | {r['ratio']:.2f}× | {'≤' if r['at_most'] else '≥'} {r['target']}× | "
                     f"{'met' if r['met'] else '**not met**'} | {figures} |")
    lines += [f"| {name} | — | | **failed** (exit {rc}) | see its output above |" for name, rc in failed.items()]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the sizes the goals name (hours, not minutes)")
    parser.add_argument("--only", nargs="+", choices=list(SUITES), help="run these suites only")
    parser.add_argument("--markdown", help="also write the table of goals to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_reads.py: run as root (it mounts, and drops the kernel's caches between runs)")
    names = args.only or list(SUITES)
    failed: dict[str, int] = {}
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as results:
        started = time.perf_counter()
        for name in names:
            rc, seconds = run_suite(name, args.full, results.name)
            print(f"===== {name}: {'done' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
            if rc:
                failed[name] = rc
        rows = [json.loads(line) for line in results.read().splitlines() if line.strip()]
    lines = table(rows, failed)
    command = " ".join(["bench/bench_reads.py", *(["--full"] if args.full else []),
                        *(["--only", *names] if args.only else [])])
    head = (f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, `{command}` "
            f"({(time.perf_counter() - started) / 60:.0f} min)")
    print("\n" + head + "\n\n" + "\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(head + "\n\n" + "\n".join(lines) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
