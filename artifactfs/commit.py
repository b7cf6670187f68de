"""The commit pipeline: the one path by which a new version is made (a commit of files or a
directory, a stage's commit, a draft's finish, `Artifact.save`).

    check_args      aliases, metadata, run and inputs checked, inputs pinned to exact versions,
                    the artifact's type checked: all before a byte is uploaded
    (start time)    noted before the first upload, for the gc check below
    upload          the caller's step: files hashed, what the store lacks uploaded (ingest.py for
                    local files, stage/upload.py for a stage, nothing for a draft whose writers
                    uploaded already) -> the manifest and what gc protection needs (`sources`)
    record          repo.commit: manifest, then the version record (put_if_absent of vN), aliases
    protect         a gc run that overlapped the commit may have deleted an object the version names
                    before its record existed: wait for it, put back what is missing (docs/GC.md)
    link            the lineage edges of the run that produced it

gc.py writes the runs that `protect` reads; it imports from here, never the other way.
"""

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import layout, lineage
from .errors import NotFound, ObjectNotFound, UsageError
from .hashing import CHUNK_SIZE
from .ingest import LocalFile, hash_and_upload
from .manifest import Entry, Manifest
from .names import LATEST, ArtifactName, Ref, check_alias
from .packs import protect_sources, restore_pack
from .records import CommitResult, check_metadata
from .repo import Repository

log = logging.getLogger(__name__)

GC_RUNS = "gc/runs/"  # one object per gc run: {"state": "running" | "done"} (docs/GC.md)
RUN_STALE = 6 * 3600.0  # a "running" gc older than this crashed: commits stop waiting for it
CLOCK_SKEW = 300.0  # margin between this machine's clock and the store's
WAIT_STEP = 0.2

Sources = dict[str, Any]  # blob key -> local path or bytes; pack key -> [packs.Member]


def check_args(repo: Repository, name: ArtifactName, type: str, args: dict, entity: str | None = None,
               project: str | None = None) -> dict:
    """Validate a commit's arguments before anything is uploaded; returns them with each input pinned
    to the exact version it names now (`entity`/`project` complete short input names)."""
    check_options(args)
    repo.ensure_artifact(name, type)  # a type conflict fails before any upload
    if args.get("inputs"):
        args = {**args, "inputs": lineage.resolve_inputs(repo, args["inputs"], entity, project)}
    return args


def check_options(args: dict) -> None:
    """What can be checked of a commit's aliases, metadata, run and inputs without the store."""
    for alias in args.get("aliases") or ():
        if alias != LATEST:
            check_alias(alias)
    check_metadata(args.get("metadata"))
    if args.get("run"):
        lineage.check_run(args["run"])
    if args.get("inputs") and not args.get("run"):
        raise UsageError("inputs are recorded for a run: give the run id too (--run ID)")


def commit(repo: Repository, name: ArtifactName, type: str, upload: Callable[[], tuple[Manifest, Sources]],
           *, entity: str | None = None, project: str | None = None, **args) -> CommitResult:
    """The whole pipeline: check, upload (the caller's step), record, protect, link."""
    args = check_args(repo, name, type, args, entity, project)
    started = time.time()
    manifest, sources = upload()
    result = repo.commit(name, type, manifest, **args)
    finish(repo, result, started, sources, manifest)
    return result


def finish(repo: Repository, result: CommitResult, started: float, sources: Sources, manifest: Manifest) -> None:
    """The steps after the record: protect the new version's objects from an overlapping gc, link it."""
    if result.created:
        protect_commit(repo, started, sources, manifest)
        lineage.record_commit(repo, result.record)


def commit_files(repo: Repository, name: ArtifactName, type: str, files: Iterable[LocalFile],
                 extra_entries: Iterable[Entry] = (), progress=None, **args) -> CommitResult:
    """Commit local files (and `extra_entries`: references, links, empty directories)."""
    def upload():
        entries, sources = upload_files(repo, files, progress, **known_to(latest_manifest(repo, name)))
        return Manifest.from_entries([*entries, *extra_entries]), sources

    return commit(repo, name, type, upload, **args)


def upload_files(repo: Repository, files: Iterable[LocalFile], progress=None, known=lambda digest: None,
                 known_blocks=lambda digest: None, chunk_size: int = CHUNK_SIZE) -> tuple[list[Entry], Sources]:
    """Hash local files and upload what the store lacks (`known` says where the store holds a
    content already, `known_blocks` which block list it has): their entries and gc protection sources."""
    files = list(files)
    entries, _ = hash_and_upload(repo.store, files, chunk_size, progress=progress, known=known,
                                 known_blocks=known_blocks)
    return entries, protect_sources(entries, [f.source for f in files])


def latest_manifest(repo: Repository, name: ArtifactName) -> Manifest | None:
    try:
        return repo.manifest(repo.resolve(Ref(name, alias=LATEST)).manifest)
    except NotFound:
        return None


def known_to(live: Manifest | None) -> dict:
    """upload_files' `known` and `known_blocks` from a live version's manifest: what it names is in the
    store (a live version's objects are never collected), so a commit need not upload it again."""
    if live is None:
        return {}
    return {"known": live.location, "known_blocks": live.blocks_for}


# ---- protection from a concurrent gc (docs/GC.md) ------------------------------------------------
def _run_state(repo: Repository, key: str) -> str | None:
    try:
        data, _ = repo.store.get(key)
        state = json.loads(data).get("state")
        return state if repo.store.head(key).mtime > time.time() - RUN_STALE - CLOCK_SKEW else "stale"
    except (ObjectNotFound, ValueError, AttributeError):
        return None


def gc_overlapped(repo: Repository, started: float) -> bool:
    """Did a gc run overlap a commit that started at `started` (local clock)? Waits for the ones still
    running; runs that start later mark the commit's version record, so they do not matter."""
    overlapped, running = False, []
    for info in repo.store.list(GC_RUNS):
        state = _run_state(repo, info.key)
        if state == "running":
            running.append(info.key)
            overlapped = True
        elif state == "done" and info.mtime >= started - CLOCK_SKEW:
            overlapped = True
    for key in running:
        while _run_state(repo, key) == "running":
            time.sleep(WAIT_STEP)
    return overlapped


def protect_commit(repo: Repository, started: float, sources: Sources, manifest: Manifest | None = None) -> int:
    """Make sure a just-written version's (or draft part's) objects survived any gc run that overlapped
    its commit. `sources` is what packs.protect_sources gives. Returns objects re-uploaded."""
    if not gc_overlapped(repo, started):
        return 0
    restored = 0
    if manifest is not None and not all(map(repo.store.exists, layout.manifest_keys(manifest.digest))):
        repo.put_manifest(manifest)  # puts back whichever form is missing
        restored += 1
    for key, source in sources.items():
        if repo.store.exists(key):
            continue
        log.warning("gc removed %s while a commit was using it; uploading it again", key)
        if isinstance(source, list):
            restore_pack(repo.store, key, source)
        elif isinstance(source, (bytes, bytearray)):
            repo.store.put(key, bytes(source))
        else:  # a blob, named by its digest: the bytes put back must still be those
            repo.store.put_file(key, source, os.path.getsize(source), key.rsplit("/", 1)[-1])
        restored += 1
    return restored
