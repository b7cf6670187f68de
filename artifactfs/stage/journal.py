"""The append-only journal of a stage's tree changes: one JSON object per line.

Each append is one write() of a whole line, so after kill -9 the file holds every line written before.
A failed append (a full disk) is cut back to the previous length, so a torn line never stays in the
middle; a torn last line (power loss) is ignored on replay. fsync is the caller's choice: the daemon
groups them (see mount/staging_run.py) and forces one on fsync(2), rename and commit.
"""

import contextlib
import json
import logging
import os

from ..errors import LocalIOError
from ..localfs import write_atomic

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, path: str):
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise LocalIOError(f"cannot open stage journal {path}: {exc.strerror}") from exc
        self.dirty = False

    def append(self, op: dict) -> None:
        line = json.dumps(op, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(28, "No space left on device")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)  # never leave a torn line before later ones
            raise LocalIOError(f"cannot write stage journal: {exc.strerror or exc}") from exc
        self.dirty = True

    def sync(self) -> None:
        if self.dirty:
            self.dirty = False
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal(path: str) -> list[dict]:
    """Every complete operation in the journal; a torn or garbled last line is dropped with a log line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LocalIOError(f"cannot read stage journal {path}: {exc.strerror}") from exc
    ops = []
    lines = data.split(b"\n")
    for n, line in enumerate(lines):
        if not line:
            continue
        try:
            ops.append(json.loads(line))
        except ValueError:
            if n >= len(lines) - 2:
                log.warning("%s: ignoring a torn last line (written when the machine stopped)", path)
                break
            raise LocalIOError(f"stage journal {path} is damaged at line {n + 1}") from None
    return ops


def write_journal(path: str, ops: list[dict]) -> None:
    """Write a fresh journal durably (temp, fsync, rename, fsync the directory): the start of a new
    generation."""
    write_atomic(path, b"".join(json.dumps(op, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
                                for op in ops))
