"""Delivering a watch event (events.py): run a command, or POST to a webhook, with retries.

A command gets the event as JSON on stdin and in environment variables (ARTIFACTFS_EVENT,
ARTIFACTFS_EVENT_ID, ARTIFACTFS_ARTIFACT, ARTIFACTFS_VERSION, ARTIFACTFS_ALIAS, ARTIFACTFS_FROM);
exit 0 is delivered. A webhook gets the JSON as the body of a POST with `X-Artifactfs-Event`,
`X-Artifactfs-Delivery` (the event's id) and, with a secret, `X-Artifactfs-Signature: sha256=HEX`,
the HMAC-SHA256 of the body; a 2xx answer is delivered. Anything else is tried again after 1, 2, 4...
seconds (at most a minute apart); after the last try the event goes to the dead-letter file (one
JSON line: the event, the error, when) and is logged, and the watcher goes on.
"""

import hashlib
import hmac
import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from .errors import LocalIOError, UsageError
from .events import Event, event_json
from .records import now_iso

log = logging.getLogger(__name__)

SIGNATURE = "X-Artifactfs-Signature"
MAX_BACKOFF = 60.0


@dataclass
class Target:
    """Where events go: `command` (argv) or `webhook` (URL), signed with `secret` when given."""

    command: list[str] | None = None
    webhook: str | None = None
    secret: bytes | None = None
    timeout: float = 60.0

    def __post_init__(self):
        if (self.command is None) == (self.webhook is None):
            raise UsageError("give a command (after --) or --webhook URL, one of the two")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise UsageError(f"--webhook takes an http:// or https:// URL, not {self.webhook!r}")

    def send(self, event: Event) -> None:
        """Deliver once; an exception (with a one-line message) if it was not delivered."""
        body = event_json(event)
        if self.command is not None:
            env = {**os.environ, "ARTIFACTFS_EVENT": event.kind, "ARTIFACTFS_EVENT_ID": event.id,
                   "ARTIFACTFS_ARTIFACT": event.artifact, "ARTIFACTFS_VERSION": _text(event.version),
                   "ARTIFACTFS_ALIAS": event.alias or "", "ARTIFACTFS_FROM": _text(event.previous)}
            try:
                done = subprocess.run(self.command, input=body, env=env, timeout=self.timeout)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise RuntimeError(f"command {self.command[0]!r}: {exc}") from None
            if done.returncode != 0:
                raise RuntimeError(f"command {self.command[0]!r} exited {done.returncode}")
            return
        assert self.webhook is not None
        headers = {"Content-Type": "application/json", "User-Agent": "artifactfs-watch",
                   "X-Artifactfs-Event": event.kind, "X-Artifactfs-Delivery": event.id}
        if self.secret is not None:
            headers[SIGNATURE] = "sha256=" + sign(self.secret, body)
        request = urllib.request.Request(self.webhook, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webhook answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"webhook unreachable: {getattr(exc, 'reason', exc)}") from None


def sign(secret: bytes, body: bytes) -> str:
    """The signature a receiver checks: hex HMAC-SHA256 of the body with the shared secret."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def deliver(target: Target, event: Event, tries: int = 5, backoff: float = 1.0, dead_letter: str | None = None,
            sleep: Callable[[float], None] = time.sleep) -> bool:
    """Send `event` until it is delivered or `tries` attempts failed (then dead-lettered): True if
    delivered."""
    error = ""
    for attempt in range(tries):
        try:
            target.send(event)
            return True
        except RuntimeError as exc:
            error = str(exc)
            log.warning("event %s (%s): try %d of %d failed: %s", event.id, event.kind, attempt + 1, tries, error)
        if attempt + 1 < tries:
            sleep(min(MAX_BACKOFF, backoff * 2 ** attempt))
    log.error("event %s (%s) not delivered after %d tries: %s%s", event.id, event.kind, tries, error,
              f"; kept in {dead_letter}" if dead_letter else "")
    if dead_letter:
        line = json.dumps({"event": event.to_json(), "error": error, "tries": tries, "at": now_iso()}, sort_keys=True)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(dead_letter)), exist_ok=True)
            with open(dead_letter, "a") as f:
                f.write(line + "\n")
        except OSError as exc:
            raise LocalIOError(f"cannot write the dead-letter file {dead_letter}: {exc.strerror}") from None
    return False


def _text(value: int | None) -> str:
    return "" if value is None else str(value)
