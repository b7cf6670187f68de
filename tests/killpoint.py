"""Run the real `artifactfs` CLI with a fault at an exact point of the store traffic.

    python -m tests.killpoint POINT ACTION -- ARGS...

POINT is where, counted over the store calls the command makes:
    blob:N       just before the N-th blob or pack upload (put or put_file of a blobs/ or packs/ key), 1-based
    manifest     just after the manifest object is written
    version      just before the version record (versions/<N>.json) is created
    latest       just before `latest` is moved (after the version record exists)
    part:N       just after the N-th part of a file upload was sent (S3: a multipart part; a local store:
                 a block written to the object's temp file)
    before:TEXT  just before the first write (put, put_if_absent, put_if_match, delete) of a key holding TEXT
    after:TEXT   just after it
ACTION is what happens there:
    kill         SIGKILL this process (as `kill -9` from outside would)
    pause:FILE   create FILE, then wait until FILE is removed (the test injects its fault meanwhile)

The wrapper patches the store object the client opens; everything else is the unmodified command.
"""

import os
import signal
import sys
import threading
import time

import artifactfs.client as client_mod

_lock = threading.Lock()
_blob_puts = [0]


def _fire(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("pause:"):
        marker = action[len("pause:"):]
        open(marker, "w").close()
        while os.path.exists(marker):
            time.sleep(0.02)
    else:
        raise SystemExit(f"unknown action {action}")


def _wrap(store, point: str, action: str):
    fired = [False]

    def once(cond: bool) -> None:
        with _lock:
            go = cond and not fired[0]
            if go:
                fired[0] = True
        if go:
            _fire(action)

    def blob_hook(key: str) -> None:
        if point.startswith("blob:") and key.startswith(("blobs/", "packs/")):
            with _lock:
                _blob_puts[0] += 1
                n = _blob_puts[0]
            once(n == int(point[5:]))

    orig_put, orig_put_file = store.put, store.put_file
    orig_absent, orig_match, orig_delete = store.put_if_absent, store.put_if_match, store.delete

    def around(key: str, write):
        where, _, text = point.partition(":")
        once(where == "before" and text in key)
        result = write()
        once(where == "after" and text in key)
        return result

    def put(key, data):
        blob_hook(key)
        etag = around(key, lambda: orig_put(key, data))
        once(point == "manifest" and key.startswith("manifests/"))
        return etag

    def put_file(key, path, size, *args):
        blob_hook(key)
        return around(key, lambda: orig_put_file(key, path, size, *args))

    def put_if_absent(key, data):
        once(point == "version" and "/versions/" in key)
        once(point == "latest" and key.endswith("/aliases/latest.json"))
        return around(key, lambda: orig_absent(key, data))

    def put_if_match(key, data, etag):
        once(point == "latest" and key.endswith("/aliases/latest.json"))
        return around(key, lambda: orig_match(key, data, etag))

    def delete(key):
        return around(key, lambda: orig_delete(key))

    if point.startswith("part:"):
        parts = [0]

        def counted(fn):
            def call(*args, **kwargs):
                result = fn(*args, **kwargs)
                with _lock:
                    parts[0] += 1
                    n = parts[0]
                once(n == int(point[5:]))
                return result
            return call

        if hasattr(store, "_part"):
            store._part = counted(store._part)
        else:
            from artifactfs.store import base

            base.CheckedSource.read = counted(base.CheckedSource.read)

    store.put, store.put_file, store.delete = put, put_file, delete
    store.put_if_absent, store.put_if_match = put_if_absent, put_if_match
    return store


def main() -> None:
    point, action, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: python -m tests.killpoint POINT ACTION -- ARGS..."
    real_open = client_mod.open_store
    client_mod.open_store = lambda *a, **kw: _wrap(real_open(*a, **kw), point, action)
    from artifactfs_cli.main import main as cli_main

    sys.argv = ["artifactfs", *args]
    cli_main()


if __name__ == "__main__":
    main()
