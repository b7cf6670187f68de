"""`artifactfs watch` and `artifactfs.watch()`: each event kind reaches a command and a local HTTP
receiver (signed), failed deliveries are retried and then dead-lettered, a cursor resumes where it was,
and two watchers of one cursor never both deliver (the lease), the survivor taking over."""

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from artifactfs import layout
from tests.fault_util import wait_for

NAME = "acme/p/model"
RECORD = ("import json, os, sys; line = json.loads(sys.stdin.read()); "
          "line['env'] = {k: v for k, v in os.environ.items() if k.startswith('ARTIFACTFS_E') or "
          "k in ('ARTIFACTFS_ARTIFACT', 'ARTIFACTFS_VERSION', 'ARTIFACTFS_ALIAS', 'ARTIFACTFS_FROM')}; "
          "line['watcher'] = os.getppid(); "
          "open(sys.argv[1], 'a').write(json.dumps(line) + '\\n')")


def run(env, *args):
    return subprocess.run(["artifactfs", *map(str, args)], env=env, capture_output=True, text=True, timeout=120)


def commit(env, tmp_path, name: str, content: str) -> None:
    d = tmp_path / f"src-{content}"
    d.mkdir(exist_ok=True)
    (d / "weights.txt").write_text(content)
    assert run(env, "commit", "--dir", d, name).returncode == 0


class Watch:
    """`artifactfs watch ARGS` in the background; stopped (SIGTERM, by PID) at the end."""

    def __init__(self, env, *args):
        self.proc = subprocess.Popen(["artifactfs", "watch", *map(str, args)], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return out, err


def cursor_started(env, cursor: str) -> bool:
    from artifactfs.client import Client

    client = Client()
    try:
        client.store.head(layout.watch_cursor_key(cursor))
        return True
    except Exception:
        return False
    finally:
        client.close()


def lines(path) -> list[dict]:
    return [json.loads(x) for x in open(path)] if os.path.exists(path) else []


class Receiver:
    """A local HTTP endpoint: records each POST (headers, body); answers 500 to the first `fail` ones."""

    def __init__(self, fail: int = 0):
        self.posts: list[tuple[dict, bytes]] = []
        self.answered = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.answered += 1
                if receiver.answered <= fail:
                    self.send_response(500)
                else:
                    receiver.posts.append((dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("to", ["command", "webhook"])
def test_each_event_kind_is_delivered_in_order(env, tmp_path, to):
    commit(env, tmp_path, NAME, "a")
    out = tmp_path / "events.jsonl"
    receiver = Receiver() if to == "webhook" else None
    target = ["--webhook", receiver.url] if receiver else ["--", sys.executable, "-c", RECORD, out]
    w = Watch(env, "acme/p/*", "--cursor", to, "--interval", "0.2", *target)

    def delivered() -> list[dict]:
        return [json.loads(body) for _, body in receiver.posts] if receiver else lines(out)

    try:
        wait_for(lambda: cursor_started(env, to))
        commit(env, tmp_path, NAME, "b")  # v1: new-version, latest moves
        assert run(env, "alias", "set", f"{NAME}:v0", "prod").returncode == 0
        assert run(env, "alias", "rm", NAME, "prod").returncode == 0
        assert run(env, "rm", f"{NAME}:v0").returncode == 0
        commit(env, tmp_path, "acme/p/other", "c")  # an artifact that appears later: all of it
        wait_for(lambda: len(delivered()) >= 7, timeout=30)
        time.sleep(0.5)  # its "delivered" line comes right after the delivery
    finally:
        stdout, stderr = w.stop()
        if receiver:
            receiver.close()
    events = delivered()
    got = [(e["kind"], e["artifact"], e["version"], e["alias"]) for e in events]
    assert got == [("new-version", NAME, 1, None), ("alias", NAME, 1, "latest"), ("alias", NAME, 0, "prod"),
                   ("alias-removed", NAME, None, "prod"), ("deleted", NAME, 0, None),
                   ("new-version", "acme/p/other", 0, None), ("alias", "acme/p/other", 0, "latest")], got
    assert events[0]["id"] == f"{NAME}:v1" and events[0]["at"] and events[0]["by"]
    assert events[2]["from"] is None and events[3]["from"] == 0
    if receiver:
        assert [h["X-Artifactfs-Event"] for h, _ in receiver.posts] == [e["kind"] for e in events]
        assert "X-Artifactfs-Signature" not in receiver.posts[0][0]  # no secret set: unsigned
    else:
        env_of = events[0]["env"]
        assert env_of["ARTIFACTFS_EVENT"] == "new-version" and env_of["ARTIFACTFS_VERSION"] == "1"
        assert env_of["ARTIFACTFS_EVENT_ID"] == events[0]["id"] and events[3]["env"]["ARTIFACTFS_FROM"] == "0"
    assert stdout.count("delivered") == 7 and "Traceback" not in stderr


def test_webhooks_are_signed_retried_and_dead_lettered(env, tmp_path):
    commit(env, tmp_path, NAME, "a")
    flaky, down = Receiver(fail=2), Receiver(fail=10**6)
    dead = tmp_path / "dead.jsonl"
    env = dict(env, HOOK_SECRET="s3cret")
    good = Watch(env, NAME, "--on", "alias:prod", "--cursor", "hook", "--interval", "0.2", "--webhook", flaky.url,
                 "--secret-env", "HOOK_SECRET")
    bad = Watch(env, NAME, "--on", "new-version", "--cursor", "down", "--interval", "0.2", "--tries", "2",
                "--dead-letter", dead, "--webhook", down.url)
    try:
        wait_for(lambda: cursor_started(env, "hook") and cursor_started(env, "down"))
        commit(env, tmp_path, NAME, "b")
        assert run(env, "alias", "set", f"{NAME}:v1", "prod").returncode == 0
        wait_for(lambda: flaky.posts and lines(dead), timeout=30)
    finally:
        good.stop(), bad.stop()
        flaky.close(), down.close()
    (headers, body), = flaky.posts  # only alias:prod, delivered on the third try
    assert flaky.answered == 3
    event = json.loads(body)
    assert (event["kind"], event["alias"], event["version"]) == ("alias", "prod", 1)
    assert headers["X-Artifactfs-Event"] == "alias" and headers["X-Artifactfs-Delivery"] == event["id"]
    assert headers["X-Artifactfs-Signature"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    (kept,) = lines(dead)
    assert kept["event"]["id"] == f"{NAME}:v1" and kept["tries"] == 2 and "500" in kept["error"]
    assert down.answered == 2


def test_a_cursor_resumes_where_it_was(env, tmp_path):
    out = tmp_path / "events.jsonl"
    watch = ["watch", NAME, "--on", "new-version", "--cursor", "resume", "--interval", "0.1", "--once", "--",
             sys.executable, "-c", RECORD, out]
    commit(env, tmp_path, NAME, "a")
    assert run(env, *watch).returncode == 0 and lines(out) == []  # a new cursor starts at what is there
    commit(env, tmp_path, NAME, "b")
    commit(env, tmp_path, NAME, "c")
    assert run(env, *watch).returncode == 0
    assert [e["version"] for e in lines(out)] == [1, 2]
    assert run(env, *watch).returncode == 0 and len(lines(out)) == 2  # nothing twice
    commit(env, tmp_path, NAME, "d")
    assert run(env, *watch).returncode == 0
    assert [e["version"] for e in lines(out)] == [1, 2, 3]


def test_two_watchers_of_one_cursor_never_both_deliver(env, tmp_path):
    """Both run; one holds the lease and delivers everything once. Killed outright (its lease left to
    expire), the other takes over from the cursor: every event once more or less, none lost."""
    commit(env, tmp_path, NAME, "a")
    out = tmp_path / "events.jsonl"
    args = (NAME, "--on", "new-version", "--cursor", "shared", "--interval", "0.2", "--", sys.executable, "-c",
            RECORD, out)
    first = Watch(env, *args)
    wait_for(lambda: cursor_started(env, "shared"))
    second = Watch(env, *args)
    try:
        time.sleep(1)
        for c in "bcd":
            commit(env, tmp_path, NAME, c)
        wait_for(lambda: len(lines(out)) >= 3, timeout=30)
        time.sleep(1)
        assert len({e["watcher"] for e in lines(out)}) == 1  # one watcher delivered
        holder = lines(out)[0]["watcher"]
        survivor = second if holder == first.proc.pid else first
        os.kill(holder, signal.SIGKILL)
        for c in "ef":
            commit(env, tmp_path, NAME, c)
        wait_for(lambda: len(lines(out)) >= 5, timeout=40)  # after the lease (10 s) expired
    finally:
        first.stop(), second.stop()
    delivered = lines(out)
    assert [e["version"] for e in delivered] == [1, 2, 3, 4, 5]
    assert {e["watcher"] for e in delivered[3:]} == {survivor.proc.pid}


def test_the_python_iterator(env, tmp_path):
    import artifactfs

    commit(env, tmp_path, NAME, "a")
    got: list = []
    events = artifactfs.watch("acme/p/*", on=["new-version", "alias:prod"], cursor="py", interval=0.1)

    def consume():
        for event in events:
            got.append(event)
            if len(got) == 2:
                return

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    wait_for(lambda: cursor_started(env, "py"))
    commit(env, tmp_path, NAME, "b")
    assert run(env, "alias", "set", f"{NAME}:v1", "prod").returncode == 0
    t.join(timeout=30)
    assert [(e.kind, e.version, e.alias) for e in got] == [("new-version", 1, None), ("alias", 1, "prod")]
    events.close()


@pytest.mark.parametrize("bad, says", [
    (["acme/p"], "ENTITY/PROJECT/NAME"), (["--on", "created"], "--on takes"), ([], "give a command"),
    (["--webhook", "ftp://x"], "http:// or https://")])
def test_bad_arguments_are_one_clear_line(env, bad, says):
    res = run(env, "watch", *bad)
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_versions_a_rollback_stepped_over_are_not_new(env, tmp_path):
    """latest moved back (the content of v0 committed again) when the cursor started: the next commit
    is the one new version, not the ones latest had stepped back over."""
    out = tmp_path / "events.jsonl"
    watch = ["watch", NAME, "--on", "new-version", "--cursor", "rollback", "--interval", "0.1", "--once", "--",
             sys.executable, "-c", RECORD, out]
    for c in "abc":
        commit(env, tmp_path, NAME, c)
    commit(env, tmp_path, NAME, "a")  # a rollback: latest -> v0
    assert run(env, *watch).returncode == 0 and lines(out) == []
    commit(env, tmp_path, NAME, "d")  # v3
    assert run(env, *watch).returncode == 0
    assert [e["version"] for e in lines(out)] == [3]
