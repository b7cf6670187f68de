"""A new version that is the latest one with some files added or replaced and some paths removed: what
the fsspec filesystem's `put`, `pipe_file`, `rm` and transactions commit.

The change is built on the version latest points at and recorded as the next free version number,
or not at all (Repository.commit with `at_version`). When another writer recorded that version
meanwhile, the change is rebuilt on theirs and tried again (a version deleted in between is stepped
over), so the files of a concurrent commit are never missing from the version that follows it. It is
rebased until it lands or `deadline` seconds have passed (Conflict, nothing recorded), with a short
random pause after each lost race so that many writers do not keep colliding. Files are hashed once,
with the chunk size of the version they are added to (a version's entries share one chunk size), again
if a rebuild lands on one with another.
"""

import contextlib
import random
import time
from collections.abc import Iterable

from . import commit
from .errors import AlreadyExists, Conflict, CorruptData, NotFound, PreconditionFailed, UsageError
from .hashing import CHUNK_SIZE
from .ingest import LocalFile
from .manifest import DIR, Entry, Manifest, check_entry, parent_dirs
from .names import ArtifactName
from .records import CommitResult
from .repo import Repository

DEADLINE = 600.0  # seconds a change keeps rebasing onto other writers' versions


def commit_update(repo: Repository, name: ArtifactName, type: str, files: Iterable[LocalFile],
                  removed: Iterable[str] = (), tree: Iterable[Entry] = (), deadline: float = DEADLINE,
                  absent: Iterable[str] = (), removed_if_present: Iterable[str] = (), **args) -> CommitResult:
    """Commit the latest version of `name` plus `files` and `tree` (links, empty directories, entries
    copied from a version; each replacing what is at its path) minus the entries at or under each path
    in `removed` (and in `removed_if_present`, if the latest version has it), as the next version.
    AlreadyExists if the version it is built on has a path in `absent` (exclusive creation)."""
    files, removed, tree, absent = list(files), list(removed), list(tree), list(absent)
    optional = list(removed_if_present)
    args = commit.check_args(repo, name, type, args)
    started = time.time()
    base_version, slot = repo.latest_and_next(name)
    if base_version is None and slot:  # no latest yet, but a version: one whose commit has not moved it
        base_version = repo.newest_live_version(name, below=slot - 1)
    base = None if base_version is None else repo.manifest(repo.version(name, base_version).manifest)
    uploaded: tuple[int, list[Entry], commit.Sources] | None = None
    lost = 0
    while True:
        chunk_size = base.chunk_size if base is not None else CHUNK_SIZE
        if uploaded is None or uploaded[0] != chunk_size:
            entries, sources = commit.upload_files(repo, files, **commit.known_to(base),
                                                   chunk_size=chunk_size)
            uploaded = (chunk_size, entries, sources)
        _check_absent(name, base, absent)
        present = [r for r in optional if _has(base, r)]
        manifest = merged(base, [*uploaded[1], *_fitting(tree, chunk_size)], [*removed, *present], chunk_size)
        try:
            result = repo.commit(name, type, manifest, at_version=slot, **args)
        except PreconditionFailed:
            lost += 1
            if time.time() - started > deadline:
                raise Conflict(f"{name} kept getting new versions from other writers for {deadline:.0f} s "
                               f"({lost} rebases); nothing was committed: try again") from None
            # another writer's version: build on it (if deleted since, on the one before it still)
            with contextlib.suppress(NotFound):
                base = repo.manifest(repo.version(name, slot).manifest)
            slot += 1
            time.sleep(random.uniform(0, min(0.5, 0.01 * lost)))
            continue
        commit.finish(repo, result, started, uploaded[2], manifest)
        return result


def _has(base: Manifest | None, path: str) -> bool:
    """Whether `base` has an entry or a directory at `path`."""
    return base is not None and (base.find(path) is not None or base.is_dir(path))


def _check_absent(name: ArtifactName, base: Manifest | None, absent: list[str]) -> None:
    for path in absent:
        if _has(base, path):
            raise AlreadyExists(f"{name}:latest already has {path!r}: nothing was written")


def _fitting(entries: list[Entry], chunk_size: int) -> list[Entry]:
    """`entries`, refused if a copied file's chunk digests were made with another chunk size than the
    version's (a version's entries share one: the copy would be unreadable)."""
    for e in entries:
        if e.is_file:
            try:
                check_entry(e, chunk_size)
            except CorruptData:
                raise Conflict(f"{e.path!r} was chunked in {len(e.chunks or ())} pieces for another chunk size "
                               f"than this version's ({chunk_size}): copy its bytes (get, then put)") from None
    return entries


def merged(base: Manifest | None, added: list[Entry], removed: list[str], chunk_size: int) -> Manifest:
    """`base`'s entries, less those `added` replaces and those at or under a `removed` path, plus
    `added`. An empty directory entry that now holds a file goes; a removed path `base` lacks is an
    error (NotFound), as is a file where a directory is (InvalidPath, from the manifest)."""
    paths = {e.path for e in added}
    parents = parent_dirs(paths)
    removing = set(removed)
    removed = [r for r in removing if "/" not in r or _removed_by(r.rsplit("/", 1)[0], removing) is None]
    removing = set(removed)  # a path under another removed one goes with it
    kept = []
    hit = set()
    for e in base or ():
        gone = _removed_by(e.path, removing)
        if gone is not None:
            hit.add(gone)
        elif e.path not in paths and not (e.kind == DIR and e.path in parents):
            kept.append(e)
    missing = [r for r in removed if r not in hit]
    if missing:
        raise NotFound(f"no entry or directory {missing[0]!r} to remove")
    if not kept and not added and not removed:
        raise UsageError("the change has nothing to commit")
    return Manifest.from_entries([*kept, *added], chunk_size)


def _removed_by(path: str, removing: set[str]) -> str | None:
    """The path in `removing` that is `path` or one of its parents, if any."""
    while True:
        if path in removing:
            return path
        cut = path.rfind("/")
        if cut < 0:
            return None
        path = path[:cut]
