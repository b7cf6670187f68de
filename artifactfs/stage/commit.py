"""Committing a stage: freeze the mount, build the manifest, upload what the store lacks, take the
next version, rebase the stage onto it, thaw.

Talking to the mount daemon: two extended attributes on the mountpoint, handled by the daemon itself.
`setxattr(MOUNT, "user.artifactfs.freeze", PID)` makes the daemon journal every open file's state,
fsync, and hold all further changes until `setxattr(MOUNT, "user.artifactfs.thaw", "")` (or until
process PID dies, so a killed commit never leaves the mount frozen). While frozen, this process reads
the stage from its directory (base + journal) like after a crash: there is one way to read a stage.
"""

import dataclasses
import errno
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import blocks, commit, layout, stage_records
from ..client import Client
from ..errors import Conflict, LocalIOError, NotFound, PreconditionFailed, UsageError
from ..hashing import hash_file
from ..manifest import Entry, Manifest
from ..names import LATEST
from ..packs import protect_sources
from ..records import CommitResult
from .local import Stage, find_by_mountpoint
from .tree import StageTree
from .upload import upload_missing

FREEZE_XATTR = "user.artifactfs.freeze"
THAW_XATTR = "user.artifactfs.thaw"
HASH_THREADS = 4


@dataclass
class StageCommit:
    result: CommitResult
    base: str  # the stage's base before the commit ("v3" or "empty")
    superseded: list[int]  # other writers' versions made since the base, whose changes are not in this one
    daemon_lost: bool = False


def stage_client(client: Client, stage: Stage) -> Client:
    """A client on the stage's own store (which may differ from today's settings)."""
    settings = dataclasses.replace(client.settings, store=stage.info.store, endpoint_url=stage.info.endpoint_url)
    return Client(settings)


def base_manifest(client: Client, stage: Stage) -> Manifest:
    if stage.info.base_manifest is None:
        return Manifest.from_entries([])
    return client.repo.manifest(stage.info.base_manifest)


def stage_entries(stage: Stage, tree: StageTree) -> tuple[list[Entry], list[tuple[str, str, int]]]:
    """The stage's entries, and the (digest, data file, size) blobs it adds. Hashes data files whose
    digest was not computed while they were written."""
    chunk_size = tree.base.chunk_size
    entries: list[Entry] = []
    pending: list[tuple[str, object, str]] = []
    for path, node, index in tree.walk_files():
        entry = tree.entry_of(path, node, index)
        if entry is not None:
            entries.append(entry)
            continue
        assert node is not None and node.data is not None, "not a base file: a data file of the stage"
        source = stage.data_path(node.data)
        try:
            actual = os.path.getsize(source)
        except OSError as exc:
            raise LocalIOError(f"stage {stage.id}: data file of {path} is unreadable: {exc.strerror}") from None
        if actual != node.size:
            raise LocalIOError(f"stage {stage.id}: data file of {path} has {actual} bytes, the journal says "
                               f"{node.size}; remount the stage to repair it")
        if node.digest:
            entries.append(Entry(path, node.size, node.digest, node.chunks, executable=node.executable))
        else:
            pending.append((path, node, source))

    def hash_one(item):
        path, node, source = item
        try:
            size, digest, chunks = hash_file(source, chunk_size)
        except OSError as exc:
            raise LocalIOError(f"cannot read the data file of {path}: {exc.strerror}") from None
        return Entry(path, size, digest, tuple(chunks) if chunks else None, executable=node.executable)

    with ThreadPoolExecutor(HASH_THREADS) as pool:
        entries.extend(pool.map(hash_one, pending))
    entries.extend(Entry.directory(path) for path in tree.new_empty_dirs())
    by_path = {e.path: e for e in entries}
    uploads: list[tuple[bytes, str, str, int]] = []
    for path, node, _ in tree.walk_files():
        if node is not None and node.data is not None:
            e = by_path[path]
            uploads.append((path.encode("utf-8"), e.digest or "", stage.data_path(node.data), e.size))
    uploads.sort()  # path order: packs hold directory neighbours
    return entries, [u[1:] for u in uploads]


def placed_manifest(entries: list[Entry], uploads: list[tuple[str, str, int]], places: dict,
                    chunk_size: int) -> tuple[Manifest, dict]:
    """The manifest with each uploaded file at its place (pack, offset), and what commit.protect_commit
    needs to restore those objects."""
    entries = [dataclasses.replace(e, pack=places[e.digest][0], offset=places[e.digest][1])
               if e.digest in places and e.ref is None else e for e in entries]
    source_of = {d: path for d, path, _ in uploads}
    mine = [e for e in entries if e.digest in source_of and e.ref is None]
    return Manifest.from_entries(entries, chunk_size), protect_sources(mine, [source_of[e.digest or ""] for e in mine])


def commit_loaded(client: Client, stage: Stage, tree: StageTree, *, description: str | None = None,
                  metadata: dict | None = None, aliases=(), require_base: bool = False, run: str | None = None,
                  inputs=(), progress: Callable[[int], Callable[[int], None]] | None = None) -> StageCommit:
    """Commit `tree` (the stage's current content) and rebase the stage onto the result."""
    repo = client.repo
    name = client.artifact_name(stage.info.artifact)
    base = stage.base_label()
    # the version right after the base: with --require-base the commit takes exactly that number, in the
    # same conditional write that records it, or fails (another writer committed since the base)
    after_base = 0 if stage.info.base_version is None else stage.info.base_version + 1
    if require_base:
        check_base_is_latest(repo, name, base, after_base)

    def upload():
        entries, uploads = stage_entries(stage, tree)
        total = sum(size for _, _, size in {d: (d, p, s) for d, p, s in uploads}.values())
        _, _, places = upload_missing(client.store, uploads, progress(total) if progress else None,
                                      known=tree.base.location)
        entries = blocks.add_lists(client.store, entries, {d: path for d, path, _ in uploads}, tree.base.blocks_for)
        manifest, sources = placed_manifest(entries, uploads, places, tree.base.chunk_size)
        check_base_objects(client, name, stage, manifest, tree.base)
        return manifest, sources

    try:
        result = commit.commit(repo, name, stage.info.type, upload, entity=client.settings.entity,
                               project=client.settings.project, description=description, metadata=metadata,
                               aliases=aliases, run=run, inputs=inputs,
                               at_version=after_base if require_base else None)
    except PreconditionFailed:
        check_base_is_latest(repo, name, base, after_base)
        raise Conflict(f"{name}:v{after_base} was committed by another writer while this stage's commit was "
                       f"uploading, but it started from {base} (--require-base); nothing was committed") from None
    stage.rebase(result.record.version, result.record.manifest)
    stage_records.write(client.store, stage.id, str(name), result.record.version, result.record.manifest)
    superseded = list(range(after_base, result.record.version)) if result.created else []
    return StageCommit(result, base, superseded)


def check_base_is_latest(repo, name, base: str, after_base: int) -> None:
    """--require-base: Conflict unless latest is still the stage's base and no version follows it."""
    try:
        latest, _ = repo.alias_target(name, LATEST)
    except NotFound:
        latest = None
    if latest is not None and f"v{latest}" != base:
        raise Conflict(f"{name}:latest is v{latest}, but this stage started from {base} "
                       "(--require-base); nothing was committed")
    if repo.store.exists(layout.version_key(name, after_base)):
        raise Conflict(f"{name}:v{after_base} exists, but this stage started from {base} "
                       "(--require-base); nothing was committed")


def check_base_objects(client: Client, name, stage: Stage, manifest: Manifest, base: Manifest) -> None:
    """The stage's unchanged files are objects of its base version, which a commit does not upload
    again. gc keeps them while that version is live (and while the stage's record says it is open:
    stage_records.py); once the version is deleted, check that each one still exists, and publish
    nothing that names an object that is gone."""
    if stage.info.base_version is None:
        return
    try:
        client.repo.version(name, stage.info.base_version)
        return
    except NotFound:
        pass
    kept = {layout.content_key(e): e.path for e in manifest
            if e.ref is None and e.size and base.location(e.digest or "") is not None}
    with ThreadPoolExecutor(HASH_THREADS * 4) as pool:
        present = dict(zip(kept, pool.map(client.store.exists, kept), strict=False))
    gone = [path for key, path in kept.items() if not present[key]]
    if gone:
        raise NotFound(f"stage {stage.id}: its base {name}:v{stage.info.base_version} was deleted, and the store "
                       f"no longer holds {len(gone)} of the files it kept unchanged (e.g. {min(gone)}); nothing "
                       "was committed: write those files into the stage again, or discard it")


# ---- the two entry points ---------------------------------------------------------------------
def stage_of_mountpoint(mountpoint: str) -> Stage:
    stage = find_by_mountpoint(mountpoint)
    if stage is None:
        raise UsageError(f"{mountpoint} is not a staging mount (see `artifactfs stage list`)")
    if not stage.in_use():
        raise UsageError(daemon_gone(stage))
    return stage


def daemon_gone(stage: Stage) -> str:
    mp = stage.info.mountpoint
    state = stage.death_note() if stage.died() else f"the daemon of stage {stage.id} (on {mp}) is not running"
    return (f"{state}; remount it with "
            f"`artifactfs stage mount {stage.id} {mp}` or commit its journal with "
            f"`artifactfs commit --stage {stage.id}`")


def commit_mounted(client: Client, mountpoint: str, **kwargs) -> StageCommit:
    stage = stage_of_mountpoint(mountpoint)
    path = os.path.abspath(mountpoint)
    try:
        os.setxattr(path, FREEZE_XATTR, str(os.getpid()).encode())
    except OSError as exc:
        if exc.errno in (errno.ENOTCONN, errno.ENOENT, errno.ECONNABORTED):
            raise UsageError(daemon_gone(stage)) from None
        if exc.errno == errno.EBUSY:
            raise Conflict(f"another commit of stage {stage.id} is running; try again when it is done") from None
        raise LocalIOError(f"cannot freeze the stage on {mountpoint}: {exc.strerror}") from None
    daemon_lost = False
    try:
        stage.reload()
        sc = stage_client(client, stage)
        try:
            tree = stage.load_tree(base_manifest(sc, stage), recover=False)
            result = commit_loaded(sc, stage, tree, **kwargs)
        finally:
            sc.close()
    finally:
        try:
            os.setxattr(path, THAW_XATTR, b"")
        except OSError:
            daemon_lost = True  # the commit itself is complete; the caller says so
    result.daemon_lost = daemon_lost
    return result


def commit_offline(client: Client, stage_id: str, **kwargs) -> StageCommit:
    """Commit a stage whose daemon is not running, straight from its journal."""
    stage = Stage.open(stage_id)
    if not stage.try_lock():
        raise UsageError(f"stage {stage.id} is mounted on {stage.info.mountpoint}: "
                         f"commit the mountpoint instead (artifactfs commit {stage.info.mountpoint})")
    try:
        sc = stage_client(client, stage)
        try:
            tree = stage.load_tree(base_manifest(sc, stage))
            return commit_loaded(sc, stage, tree, **kwargs)
        finally:
            sc.close()
    finally:
        stage.unlock()
