"""A new version that is the latest one with some files added or replaced and some paths removed: what
the fsspec filesystem's `put`, `pipe_file`, `rm` and transactions commit.

The change is built on the latest version and recorded as the version right after it, or not at all
(Repository.commit with `at_version`). When another writer recorded that version meanwhile, the change
is rebuilt on theirs and tried again (a version deleted in between is stepped over), so the files of
a concurrent commit are never missing from the version that follows it. After MAX_ATTEMPTS lost races:
Conflict, nothing recorded. Files are hashed with the chunk size of the version they are added to
(a version's entries share one chunk size), again if a rebuild lands on one with another.
"""

import contextlib
import time
from collections.abc import Iterable

from . import commit
from .errors import Conflict, NotFound, PreconditionFailed, UsageError
from .hashing import CHUNK_SIZE
from .ingest import LocalFile
from .manifest import DIR, Entry, Manifest
from .names import LATEST, ArtifactName
from .records import CommitResult
from .repo import Repository

MAX_ATTEMPTS = 8


def commit_update(repo: Repository, name: ArtifactName, type: str, files: Iterable[LocalFile],
                  removed: Iterable[str] = (), **args) -> CommitResult:
    """Commit the latest version of `name` plus `files` (replacing entries at their paths) minus the
    entries at or under each path in `removed`, as the next version."""
    files, removed = list(files), list(removed)
    args = commit.check_args(repo, name, type, args)
    started = time.time()
    base_version, base = _latest(repo, name)
    slot = repo._next_version_hint(name) if base_version is None else base_version + 1
    uploaded: tuple[int, list[Entry], commit.Sources] | None = None
    for _ in range(MAX_ATTEMPTS):
        chunk_size = base.chunk_size if base is not None else CHUNK_SIZE
        if uploaded is None or uploaded[0] != chunk_size:
            entries, sources = commit.upload_files(repo, files, known=base.location if base else lambda d: None,
                                                   chunk_size=chunk_size)
            uploaded = (chunk_size, entries, sources)
        manifest = merged(base, uploaded[1], removed, chunk_size)
        try:
            result = repo.commit(name, type, manifest, at_version=slot, **args)
        except PreconditionFailed:
            # another writer's version: build on it (if deleted since, on the one before it still)
            with contextlib.suppress(NotFound):
                base = repo.manifest(repo.version(name, slot).manifest)
            slot += 1
            continue
        commit.finish(repo, result, started, uploaded[2], manifest)
        return result
    raise Conflict(f"{name} got {MAX_ATTEMPTS} new versions from other writers while this change was being "
                   "committed; nothing was committed: try again")


def _latest(repo: Repository, name: ArtifactName) -> tuple[int | None, Manifest | None]:
    try:
        version, _ = repo.alias_target(name, LATEST)
    except NotFound:
        return None, None
    return version, repo.manifest(repo.version(name, version).manifest)


def merged(base: Manifest | None, added: list[Entry], removed: list[str], chunk_size: int) -> Manifest:
    """`base`'s entries, less those `added` replaces and those at or under a `removed` path, plus
    `added`. An empty directory entry that now holds a file goes; a removed path `base` lacks is an
    error (NotFound), as is a file where a directory is (InvalidPath, from the manifest)."""
    paths = {e.path for e in added}
    parents = {p.rsplit("/", i)[0] for p in paths for i in range(1, p.count("/") + 1)}
    kept = []
    hit = set()
    for e in base or ():
        gone = next((r for r in removed if e.path == r or e.path.startswith(r + "/")), None)
        if gone is not None:
            hit.add(gone)
        elif e.path not in paths and not (e.kind == DIR and e.path in parents):
            kept.append(e)
    missing = [r for r in removed if r not in hit]
    if missing:
        raise NotFound(f"no entry or directory {missing[0]!r} to remove")
    if not kept and not added:
        raise UsageError("the change would leave a version with no entries: nothing was committed")
    return Manifest.from_entries([*kept, *added], chunk_size)
