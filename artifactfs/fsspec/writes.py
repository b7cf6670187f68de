"""Writes through `artifactfs://`: where they may go, the files being written, and the transaction
that turns what a block wrote into one version per artifact (update.py).

A write names the next version: `NAME:latest/PATH` or `NAME/latest/PATH`, or `ENTITY/PROJECT/NAME`
for `put` (its files under their base names). `NAME:vN` (immutable) and other aliases are refused.
A file opened for writing fills a local temp file; outside a transaction its close commits it,
inside one the transaction's end commits everything at once (or nothing, if the block raised).
Files given to `put` are read when the version is committed (at the end of the transaction).
"""

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from fsspec.transaction import Transaction

from ..commit import check_options
from ..errors import NotFound, PermissionDenied, UsageError
from ..ingest import LocalFile
from ..manifest import Entry
from ..names import LATEST, ArtifactName
from ..update import commit_update
from .paths import Location


@dataclass
class Change:
    """Files to add and paths to remove in the next version of one artifact."""

    artifact: ArtifactName
    path: str  # as the caller named it (for errors)
    files: list[LocalFile] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # links, empty directories, copies: stored as they are
    removed: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # paths this change creates exclusively ('xb')

    def discard(self) -> None:
        pass


@dataclass
class Target:
    artifact: ArtifactName
    inner: str  # the entry path (or directory) in the next version, '' for its root
    path: str

    def file(self) -> "Target":
        """This target, which must name a file: IsADirectoryError for the artifact's root."""
        if not self.inner:
            raise IsADirectoryError(errno.EISDIR, "name a file in the artifact, not its root", self.path)
        return self

    def with_files(self, files: list[LocalFile], entries: list[Entry] | None = None) -> Change:
        return Change(self.artifact, self.path, files=files, entries=entries or [])

    def removing(self) -> Change:
        if not self.inner:
            raise UsageError(f"{self.path}: remove the artifact's versions with `artifactfs delete`, "
                             "not through the filesystem")
        return Change(self.artifact, self.path, removed=[self.inner])


def write_target(loc: Location, path: str, mode: str) -> Target:
    """Where a write to `path` goes; PermissionDenied for a version or an alias other than latest."""
    if loc.depth < 3:
        raise UsageError(f"cannot write {path!r}: write into an artifact, ENTITY/PROJECT/NAME:latest/PATH")
    if loc.depth == 4 and loc.version is not None:
        raise PermissionDenied(f"{path}: versions are immutable; write to "
                               f"{'/'.join(loc.parts)}:latest/{loc.inner} to make the next one")
    if loc.depth == 4 and loc.alias != LATEST:
        raise PermissionDenied(f"{path}: writes go to the next version, {'/'.join(loc.parts)}:latest/..., "
                               f"not to the alias {loc.alias!r}")
    if mode not in ("wb", "xb", "rm"):
        raise UsageError(f"cannot open {path!r} in mode {mode!r}: files are written whole ('wb', or 'xb' "
                         "to create one that must not exist)")
    return Target(loc.artifact, loc.inner, path)


class WriteFile(io.RawIOBase):
    """A file being written: a local temp file until it is committed."""

    def __init__(self, fs, target: Target, path: str, autocommit: bool, exclusive: bool = False):
        target.file()
        self.fs, self.target, self.path, self.autocommit = fs, target, path, autocommit
        self.exclusive = exclusive
        fd, self._tmp = tempfile.mkstemp(prefix="artifactfs-write-")
        self._f = os.fdopen(fd, "wb")

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self._f.write(data)

    def close(self) -> None:
        if self.closed:
            return
        self._f.close()
        super().close()
        if self.autocommit:
            try:
                self.fs._commit([self.change()])
            finally:
                self.discard()

    def change(self) -> Change:
        change = self.target.with_files([LocalFile(self.target.inner, self._tmp)])
        if self.exclusive:
            change.absent.append(self.target.inner)
        return change

    def discard(self) -> None:
        self._f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class VersionTransaction(Transaction):
    """`with fs.transaction:` — everything written to an artifact inside the block is ONE version;
    `fs.transaction.describe(NAME, ...)` gives that version a description, metadata, aliases, a run."""

    def __init__(self, fs, **kwargs):
        super().__init__(fs, **kwargs)
        self.options: dict[ArtifactName, dict] = {}

    def describe(self, artifact: str, *, description: str | None = None, metadata: dict | None = None,
                 aliases: Iterable[str] = (), run: str | None = None, inputs: Iterable[str] = ()) -> None:
        """What the version this transaction makes of `artifact` (ENTITY/PROJECT/NAME) records beyond
        its files: checked now, applied when the transaction commits (ignored if nothing is written
        to that artifact)."""
        name = self.fs.client.artifact_name(artifact)
        args = {"description": description, "metadata": metadata, "aliases": list(aliases), "run": run,
                "inputs": list(inputs)}
        check_options(args)  # what a commit would refuse, refused now
        self.options[name] = {k: v for k, v in args.items() if v}

    def complete(self, commit=True):
        items, fs, options = list(self.files), self.fs, self.options
        self.files.clear()
        self.options = {}
        try:
            for f in items:
                if isinstance(f, WriteFile) and not f.closed:
                    f.close()
            if commit and items:
                fs._commit([f.change() if isinstance(f, WriteFile) else f for f in items], options)
        finally:
            for f in items:
                f.discard()
            fs._intrans, fs._transaction, self.fs = False, None, None


def commit_changes(fs, changes: list[Change], options: dict[ArtifactName, dict] | None = None) -> None:
    """One version per artifact, in the order the artifacts were first written; a later change to a
    path replaces an earlier one. `options` (by artifact: description, metadata, aliases, run, inputs)
    go with its commit."""
    pending: dict[ArtifactName, _Pending] = {}
    for change in changes:
        p = pending.setdefault(change.artifact, _Pending())
        for r in change.removed:
            written = [a for a in p.added if a == r or a.startswith(r + "/")]
            for a in written:
                del p.added[a]
            # what the block wrote there goes; what the latest version has there goes too
            (p.removed_if_present if written else p.removed).append(r)
        items: list[LocalFile | Entry] = [*change.files, *change.entries]
        for item in items:
            p.added[item.path] = item
        p.absent.extend(change.absent)
    repo = fs.client.repo
    for artifact, p in pending.items():
        try:
            type = repo.artifact_type(artifact)
        except NotFound:
            type = fs.artifact_type
        files = [f for f in p.added.values() if isinstance(f, LocalFile)]
        entries = [e for e in p.added.values() if isinstance(e, Entry)]
        commit_update(repo, artifact, type, files, p.removed, tree=entries, absent=p.absent,
                      removed_if_present=p.removed_if_present, **(options or {}).get(artifact, {}))


@dataclass
class _Pending:
    """What a transaction's changes to one artifact add up to."""

    added: dict[str, LocalFile | Entry] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    removed_if_present: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
