"""Helpers of the fault, hostile-input and security suites: the real CLI in a subprocess, a CLI with a
fault at an exact point (tests/killpoint.py), tree comparison, and the tally of what was checked.

Set ARTIFACTFS_FAULT_TALLY=FILE to have each test append one JSON line
{"test", "faults", "recoveries", "bytes_checked"}; docs/RELIABILITY.md's figures are their sums.
"""

import json
import os
import subprocess
import sys
import time

import xxhash

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def af(env: dict, *args, timeout: float = 120, user: tuple[int, int] | None = None) -> subprocess.CompletedProcess:
    """`artifactfs ARGS...` as a user runs it (optionally as another uid:gid)."""
    cmd = [sys.executable, "-m", "artifactfs_cli.main", *map(str, args)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def af_many(calls, timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Run independent `artifactfs` calls [(env, args), ...] at once; results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "artifactfs_cli.main", *map(str, args)], env=env, cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for env, args in calls]
    results = []
    for p, (_, args) in zip(procs, calls, strict=False):
        out, err = p.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(args, p.returncode, out, err))
    return results


def af_ok(env: dict, *args, timeout: float = 120) -> str:
    res = af(env, *args, timeout=timeout)
    assert res.returncode == 0, (args, res.returncode, res.stdout, res.stderr)
    return res.stdout


def af_at(env: dict, point: str, action: str, *args, timeout: float = 120, wait: bool = True):
    """`artifactfs ARGS...` with ACTION (kill, pause:FILE) at POINT; see tests/killpoint.py."""
    cmd = [sys.executable, "-m", "tests.killpoint", point, action, "--", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def one_clear_line(res, code: int, *fragments: str) -> str:
    """The documented failure shape: exit `code`, one `artifactfs: error:` line naming the problem."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("artifactfs: error:"), res.stderr
    assert "Traceback" not in res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def wait_for(cond, timeout: float = 30, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def tree_digests(root) -> dict[str, str]:
    """{relative path: xxh128 of content} of every regular file under root."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = xxhash.xxh3_128_hexdigest(f.read())
    return out


def write_files(root, files: dict) -> int:
    total = 0
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        total += len(data)
    return total


def tally(test: str, faults: int = 0, recoveries: int = 0, bytes_checked: int = 0) -> None:
    path = os.environ.get("ARTIFACTFS_FAULT_TALLY")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, "faults": faults, "recoveries": recoveries,
                                "bytes_checked": bytes_checked}) + "\n")


def stored_key(client, ref: str, path: str) -> str:
    """The store object holding a file of a version: its blob, or the pack it is in."""
    from artifactfs import layout

    manifest = client.manifest(client.resolve(ref))
    return layout.content_key(manifest[manifest.find(path)])


def overwrite_stored(client, entry, data: bytes) -> None:
    """Replace a file's bytes where the store keeps them. In a pack, bytes of the same length replace
    its range; shorter ones cut the pack there (a truncated upload)."""
    from artifactfs import layout

    key = layout.content_key(entry)
    if entry.pack:
        pack = client.store.get(key)[0]
        tail = pack[entry.offset + entry.size:] if len(data) == entry.size else b""
        data = pack[:entry.offset] + data + tail
    client.store.put(key, data)


def make_src(root, count=24, seed=7, blobs=0) -> int:
    """`count` small files in three directories (one pack) and `blobs` files just over the pack limit
    (a blob each). Returns the bytes written."""
    import random

    from artifactfs.packs import PACK_FILE_MAX

    rnd = random.Random(seed)
    files = {f"d{i % 3}/f{i:02d}.bin": rnd.randbytes(rnd.randint(1, 40_000)) for i in range(count)}
    files.update({f"big{i}.bin": rnd.randbytes(PACK_FILE_MAX + 1000) for i in range(blobs)})
    return write_files(root, files)


def cached_file(cache_root, entry):
    """(cache file, offset) holding `entry`'s bytes in the disk cache (a run of its pack, or its own
    piece), or None."""
    if entry.pack:
        runs = cache_root / "runs" / entry.pack[:2] / entry.pack
        for f in sorted(runs.iterdir()) if runs.exists() else []:
            lo, hi, _ = f.name.split("-")
            if int(lo) <= entry.offset and entry.offset + entry.size <= int(hi):
                return f, entry.offset - int(lo)
        return None
    f = cache_root / "pieces" / entry.digest[:2] / entry.digest
    return (f, 0) if f.exists() else None


def cached_bytes(cache_root, entry) -> bytes | None:
    found = cached_file(cache_root, entry)
    if found is None:
        return None
    path, offset = found
    return path.read_bytes()[offset:offset + entry.size]


def damage_cached(cache_root, entry, how: str) -> None:
    """Damage `entry`'s bytes in the cache: "flip" one bit, "cut" its last byte (and what follows it in
    a run), "empty" it, or overwrite it with "x"s."""
    path, offset = cached_file(cache_root, entry)
    data = bytearray(path.read_bytes())
    end = offset + entry.size
    if how == "flip":
        data[offset + 100] ^= 1
    elif how == "cut":
        del data[end - 1:]
    elif how == "empty":
        del data[offset:]
    else:
        data[offset:end] = b"x" * entry.size
    path.write_bytes(bytes(data))


def plant_version(store, lines: list[dict], name: str, header: dict | None = None) -> str:
    """Write a manifest of raw entry lines, and a version 0 + latest naming it, straight into the store."""
    import gzip

    from artifactfs import layout
    from artifactfs.hashing import digest_bytes
    from artifactfs.manifest import canonical_json

    header = header or {"chunk_size": 8 * 1024 * 1024, "format": 1, "type": "artifactfs-manifest"}
    data = b"\n".join(canonical_json(x) for x in [header, *lines]) + b"\n"
    digest = digest_bytes(data)
    store.put(layout.manifest_key(digest), gzip.compress(data))
    parts = name.split("/")
    base = f"artifacts/{parts[0]}/{parts[1]}/{parts[2]}"
    store.put(f"{base}/artifact.json", canonical_json({"type": "dataset", "created_at": "", "created_by": "x"}))
    record = {"version": 0, "manifest": digest, "size": 6, "file_count": len(lines), "description": None,
              "metadata": {}, "created_at": "", "created_by": "x", "run": None, "inputs": []}
    store.put(f"{base}/versions/0.json", canonical_json(record))
    store.put(f"{base}/aliases/latest.json", canonical_json({"version": 0}))
    return digest
