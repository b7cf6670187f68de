"""Freezing a staging mount for a commit (see stage/commit.py for the protocol).

While frozen, every change waits (`async with self.change()`), so the commit process reads a stable
stage directory. The freeze records the committing process's pid; if that process dies (kill -9 of
`artifactfs commit`), `watch_freezer` thaws the mount so it never stays stuck. On thaw the daemon
re-reads stage.json: a commit rebases the stage onto a new journal generation.
"""

import errno
import logging
import os

import pyfuse3
import trio

from ...stage.journal import Journal
from ...stage.local import Stage
from .files import StageFiles

log = logging.getLogger(__name__)


class FreezeControl:
    """Mixin for StagingFS: needs `self.stage`, `self.files` and `self.handles`."""

    stage: "Stage"
    files: "StageFiles"
    handles: dict

    def init_freeze(self) -> None:
        self.frozen = False
        self.freezer: int | None = None
        self._thawed = trio.Event()
        self._thawed.set()
        self._busy = 0  # changes in progress (a freeze waits for them)

    class _Change:
        def __init__(self, fs):
            self.fs = fs

        async def __aenter__(self):
            while self.fs.frozen:
                await self.fs._thawed.wait()
            self.fs._busy += 1

        async def __aexit__(self, *exc):
            self.fs._busy -= 1

    def change(self):
        """Every change runs inside this: it waits while a commit has the stage frozen."""
        return self._Change(self)

    async def freeze(self, pid: int) -> None:
        if self.frozen:
            log.warning("freeze refused: a commit (pid %s) is already in progress", self.freezer)
            raise pyfuse3.FUSEError(errno.EBUSY)
        self.frozen, self.freezer = True, pid
        self._thawed = trio.Event()
        while self._busy:  # let changes already running finish
            await trio.sleep(0.005)
        for h in list(self.handles.values()):
            if h.writable:
                self.files.record_put(h.node)
        await self.files.sync()
        log.info("frozen for a commit by pid %d", pid)

    def thaw(self) -> None:
        if not self.frozen:
            return
        generation = self.stage.info.generation
        self.stage.reload()
        if self.stage.info.generation != generation:  # the commit rebased the stage: new journal
            self.files.journal.close()
            self.files.journal = Journal(self.stage.journal_path)
            log.info("stage %s now continues from %s", self.stage.id, self.stage.base_label())
        self.frozen, self.freezer = False, None
        self._thawed.set()

    async def watch_freezer(self) -> None:
        """Thaw if the committing process died (kill -9 of `artifactfs commit`)."""
        while True:
            await trio.sleep(0.5)
            if self.frozen and self.freezer and not _alive(self.freezer):
                log.warning("the committing process %d is gone: thawing", self.freezer)
                self.thaw()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"  # a zombie is dead for our purpose
    except OSError:
        return False
