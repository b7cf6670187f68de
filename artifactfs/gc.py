"""Garbage collection: delete manifests, blobs and packs that no live version or draft refers to.

The protocol (docs/GC.md explains why it is safe beside concurrent commits):

gc run G:  1. write `gc/runs/<id>.json` {"state": "running"}         (announces itself)
           2. delete TTL-expired versions
           3. mark: draft parts -> blobs, open stages' bases (stages/) and then live version records
              -> manifests -> blobs
              (a live version whose manifest is missing stops the run: nothing is deleted)
           4. delete every unmarked manifest/blob whose store mtime is older than `grace`
                  5. abort uploads begun before the grace period and never completed (a killed commit's
              multipart upload; a local store's temp file)
           6. rewrite `gc/runs/<id>.json` {"state": "done"}

commit C:  uploads blobs (skipping those present), the manifest, then the version record; then
           `commit.protect_commit`: if any gc run is running, or finished after C started, C waits for it to
           finish and re-checks that every object it relied on exists, re-uploading any that was
           deleted. A gc run that starts after C's version record exists marks C's objects.

Marking parts before version records matters: a draft's finish writes the version record before it
deletes the parts, so whichever of the two a mark misses, it sees the other.
"""

import contextlib
import gzip
import logging
import re
import time
import uuid
import zlib
from dataclasses import dataclass, field

from . import drafts, layout, stage_records
from .commit import GC_RUNS, RUN_STALE
from .errors import ArtifactfsError, CorruptData, NotFound, ObjectNotFound
from .lifecycle import Unreadable, delete_version, expired_versions, live_versions
from .manifest import Entry, Manifest, canonical_json
from .records import load_json, now_iso, whoami
from .repo import Repository

log = logging.getLogger(__name__)

DEFAULT_GRACE = 3600.0
_DIGEST_WORD = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


@dataclass
class GcReport:
    expired: list[str] = field(default_factory=list)
    live_versions: int = 0
    live_manifests: int = 0
    live_blobs: int = 0
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept_young: int = 0  # unreferenced but younger than the grace period
    aborted_uploads: int = 0  # uploads begun before the grace period and never completed (killed commits)
    aborted_bytes: int = 0
    skipped: str | None = None  # why nothing was swept
    damaged: list[str] = field(default_factory=list)  # records and manifests that could not be read
    dry_run: bool = False

    def to_json(self) -> dict:
        obj = dict(self.__dict__)
        obj["deleted"] = len(self.deleted)
        return obj


class Incomplete(Exception):
    """A live version's manifest is missing: its blobs cannot be marked, so nothing may be swept."""


def mark(repo: Repository, now: float | None = None, damaged: list[str] | None = None
         ) -> tuple[set[str], set[str], int]:
    """(live manifest keys, live blob keys, number of live versions). Parts first: see the module doc.
    The bases of open stages are kept too (stage_records.py).

    A damaged version record or manifest is added to `damaged` and the rest is marked as usual; what
    the damaged one may still name is kept (`_stored_keys_in`). Raises Incomplete if a live version's
    manifest is missing (a commit re-uploading it after an earlier gc, or damage that verify reports)."""
    damaged = [] if damaged is None else damaged
    manifests, blobs = stage_marks(repo, now)
    for key in drafts.live_part_keys(repo):
        try:
            data, _ = repo.store.get(key)
        except ObjectNotFound:
            continue
        for line in data.splitlines():
            try:
                entry = Entry.from_json(load_json(line, key)) if line else None
            except (CorruptData, TypeError, ValueError):
                damaged.append(f"draft part {key} is damaged")
                blobs |= _stored_keys_in(line)
                continue
            if entry and entry.ref is None and entry.digest and entry.size:
                blobs |= entry_keys(entry)
    unreadable: list[Unreadable] = []
    records = live_versions(repo, unreadable)
    for bad in unreadable:
        damaged.append(str(bad))
        for digest in _digests_in(bad.data):
            _mark_manifest(repo, digest, manifests, blobs, damaged, missing_ok=True)
    for digest in {r.manifest for r in records}:
        _mark_manifest(repo, digest, manifests, blobs, damaged)
    return manifests, blobs, len(records)


def _mark_manifest(repo: Repository, digest: str, manifests: set[str], blobs: set[str], damaged: list[str],
                   missing_ok: bool = False) -> None:
    manifests |= layout.manifest_keys(digest)
    try:
        blobs |= stored_keys(repo.manifest(digest))
    except ObjectNotFound:
        if not missing_ok:
            raise Incomplete(digest) from None
    except CorruptData as exc:
        damaged.append(str(exc))
        try:
            data, _ = repo.store.get(layout.manifest_key(digest))
        except ObjectNotFound:
            return
        blobs |= _stored_keys_in(data)


def _stored_keys_in(data: bytes) -> set[str]:
    """The blob, pack and block list keys every digest-shaped word of damaged bytes could name."""
    return {key for d in _digests_in(data) for key in (layout.blob_key(d), layout.pack_key(d), layout.blocks_key(d))}


def _digests_in(data: bytes) -> set[str]:
    """Every digest-shaped word in damaged bytes. Marking a key that is no live object's costs nothing,
    so gc keeps whatever a damaged record or manifest may still name, for a person to repair."""
    with contextlib.suppress(OSError, EOFError, zlib.error):
        data = gzip.decompress(data)  # a stored manifest
    return set(_DIGEST_WORD.findall(data.decode("latin-1")))


def stage_marks(repo: Repository, now: float | None) -> tuple[set[str], set[str]]:
    """(manifest keys, blob keys) that the records of open stages keep (their bases)."""
    manifests: set[str] = set()
    blobs: set[str] = set()
    for digest in stage_records.protected_manifests(repo.store, now):
        manifests |= layout.manifest_keys(digest)
        try:
            blobs |= stored_keys(repo.manifest(digest))
        except ArtifactfsError as exc:  # gone or unreadable: no stage can commit from it either
            log.warning("gc: manifest %s of an open stage's base cannot be read (%s)", digest, exc)
    return manifests, blobs


def stored_keys(manifest: Manifest) -> set[str]:
    """The store objects holding a manifest's files: blobs and packs, and the blobs' block lists."""
    return {key for e in manifest if e.ref is None and e.size for key in entry_keys(e)}


def entry_keys(entry: Entry) -> set[str]:
    keys = {layout.content_key(entry)}
    if entry.blocks:
        keys.add(layout.blocks_key(entry.blocks))
    return keys


def gc(repo: Repository, grace: float = DEFAULT_GRACE, dry_run: bool = False) -> GcReport:
    report = GcReport(dry_run=dry_run)
    run_key = f"{GC_RUNS}{int(time.time())}-{uuid.uuid4().hex[:8]}.json"
    if not dry_run:
        repo.store.put(run_key, canonical_json({"state": "running", "started_at": now_iso(), "by": whoami()}))
        now = repo.store.head(run_key).mtime  # the store's clock, which object mtimes use
    else:
        now = time.time()
    try:
        expired = expired_versions(repo)
        report.expired = [str(r) for r in expired]
        if not dry_run:
            for ref in expired:
                with contextlib.suppress(NotFound):
                    delete_version(repo, ref, force=True)
        try:
            live = _live_keys(repo, now, report)
        except Incomplete as exc:
            log.warning("gc: manifest %s of a live version is missing; deleting nothing this run (a commit "
                        "may be restoring it; if it persists, run `artifactfs verify --all`)", exc)
            report.skipped = f"manifest {exc} of a live version is missing"
            return report
        _sweep(repo, live, now - grace, report)
        _abort_stale_uploads(repo, now - grace, report)
    finally:
        if not dry_run:
            repo.store.put(run_key, canonical_json({"state": "done", "finished_at": now_iso(), "by": whoami()}))
    if not dry_run:
        _prune_runs(repo, now)
    return report


def _live_keys(repo: Repository, now: float, report: GcReport) -> set[str]:
    """Every manifest and content key that something live names. A dry run leaves out what the
    versions it would expire name, to show what gc would free once they are gone."""
    manifests, blobs, report.live_versions = mark(repo, now, report.damaged)
    if report.dry_run and report.expired:
        gone = set(report.expired)
        manifests, blobs = stage_marks(repo, now)
        for r in live_versions(repo, []):
            if f"{r.artifact}:v{r.version}" not in gone:
                _mark_manifest(repo, r.manifest, manifests, blobs, [])
    report.live_manifests = sum(key.endswith(layout.MANIFEST_SUFFIX) for key in manifests)
    report.live_blobs = sum(not key.startswith("blocks/") for key in blobs)  # blobs and packs
    return manifests | blobs


def _sweep(repo: Repository, live: set[str], young_since: float, report: GcReport) -> None:
    """Delete every manifest, blob, pack and block list not in `live` and older than `young_since`
    (store clock)."""
    for prefix in ("manifests/", "blobs/", "packs/", "blocks/"):
        for info in repo.store.list(prefix):
            if info.key in live:
                continue
            if info.mtime > young_since:
                report.kept_young += 1
                continue
            if not report.dry_run:
                repo.store.delete(info.key)
            report.deleted.append(info.key)
            report.deleted_bytes += info.size


def _abort_stale_uploads(repo: Repository, started_before: float, report: GcReport) -> None:
    """Abort the uploads a killed commit left (multipart uploads, local temp files) once older than the
    grace period: a commit still running is younger, and its upload completes."""
    for upload in repo.store.pending_uploads():
        if upload.started >= started_before:
            continue
        if not report.dry_run:
            repo.store.abort_upload(upload)
        report.aborted_uploads += 1
        report.aborted_bytes += upload.size


def _prune_runs(repo: Repository, now: float) -> None:
    for info in repo.store.list(GC_RUNS):
        if info.mtime < now - 2 * RUN_STALE:
            repo.store.delete(info.key)
