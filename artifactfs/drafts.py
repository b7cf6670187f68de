"""Drafts: several writers, on several machines, contribute files to one version, finished once.

Store layout, under the artifact (`artifacts/<e>/<p>/<n>/`):

    drafts/<draft>/draft.json                    {"type", "chunk_size", ...}; created by the first writer
                                                 (put_if_absent)
    drafts/<draft>/parts/<writer>-<random>.jsonl  one object per addition: the entries it adds, one JSON
                                                 line each; created with put_if_absent, never rewritten
    drafts/<draft>/sealed.json                   finish has started (put_if_absent): the draft takes no
                                                 more files; a finish that stopped is completed by the next
    finished/<draft>.json                        {"version": N}: the draft became vN and takes no more files

No writer ever rewrites a shared object, so concurrent additions cannot lose each other's files.
A writer uploads its blobs before its part, so a part only names blobs that exist (and gc keeps
the blobs of every part alive). Finish seals the draft, lists the parts, merges them (the same path
with different content in two parts is a Conflict naming the path), commits one version and deletes
the draft. A writer re-reads the seal after writing its part: if the draft was sealed meanwhile, the
finisher may have listed the parts before that one, so the writer reports a Conflict instead of
silently losing files (S3 lists are strongly consistent: a part written before the seal is listed).

Finishing is resumable: once sealed, a draft is only ever finished (a failure before the version record
unseals it again). A finish killed at any step is completed by running `finish` again, on any machine:
it merges the same parts into the same manifest, finds the version an earlier attempt recorded (by the
content index, or among the versions made since the seal when the attempt died before indexing it),
and completes what is left: latest, aliases, lineage, the finished record, the draft's removal.

Every writer hashes with the draft's chunk size (draft.json; a draft without one was begun with 8 MiB
chunks), so that parts from writers of different releases still make one consistent manifest.
"""

import contextlib
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Iterable

from . import commit
from .errors import Conflict, CorruptData, NotFound, ObjectNotFound, PreconditionFailed, UsageError
from .hashing import CHUNK_SIZE, OLD_CHUNK_SIZE
from .ingest import LocalFile
from .manifest import DIR, Entry, Manifest, canonical_json, check_chunk_size, parent_dirs
from .names import ArtifactName, check_name
from .records import CommitResult, VersionRecord, load_json, now_iso, whoami
from .repo import Repository


def check_draft(draft: str) -> str:
    return check_name(draft, "draft name")


def _prefix(name: ArtifactName, draft: str) -> str:
    return f"{name.prefix}drafts/{check_draft(draft)}/"


def default_writer() -> str:
    host = "".join(c if c.isalnum() or c in "_-." else "-" for c in socket.gethostname())
    return f"{host}-{os.getpid()}"


def _is_sealed(repo: Repository, prefix: str) -> bool:
    return repo.store.exists(prefix + "sealed.json")


def _finished_key(name: ArtifactName, draft: str) -> str:
    return f"{name.prefix}finished/{check_draft(draft)}.json"


def check_not_finished(repo: Repository, name: ArtifactName, draft: str) -> None:
    """A finished draft accepts no more files (as a finished W&B artifact takes no more upserts): a
    writer that comes late is told which version the draft became, instead of starting a new draft
    under the same id."""
    key = _finished_key(name, draft)
    try:
        data, _ = repo.store.get(key)
    except ObjectNotFound:
        return
    version = load_json(data, key).get("version")
    raise Conflict(f"draft {draft!r} of {name} was finished as {name}:v{version} and accepts no more files; "
                   "use a new draft id")


def _draft_record(repo: Repository, name: ArtifactName, draft: str) -> dict | None:
    """draft.json (its chunk size checked: it comes from the store), None if the draft does not exist."""
    key = _prefix(name, draft) + "draft.json"
    try:
        data, _ = repo.store.get(key)
    except ObjectNotFound:
        return None
    record = load_json(data, key)
    record["chunk_size"] = check_chunk_size(record.get("chunk_size", OLD_CHUNK_SIZE), key)
    return record


def _existing(repo: Repository, name: ArtifactName, draft: str) -> dict:
    record = _draft_record(repo, name, draft)
    if record is None:
        check_not_finished(repo, name, draft)
        raise NotFound(f"{name} has no draft {draft!r}")
    return record


def draft_type(repo: Repository, name: ArtifactName, draft: str) -> str:
    return str(_existing(repo, name, draft).get("type", ""))


def draft_chunk_size(repo: Repository, name: ArtifactName, draft: str) -> int:
    """The chunk size files added to the draft are hashed with: the draft's, or for a draft not begun
    yet the one its first writer will record."""
    record = _draft_record(repo, name, draft)
    return CHUNK_SIZE if record is None else record["chunk_size"]


def add_entries(repo: Repository, name: ArtifactName, draft: str, type: str, entries: list[Entry],
                writer: str | None = None, chunk_size: int = CHUNK_SIZE) -> str:
    """Add entries (whose blobs are already in the store, hashed with `chunk_size`) to the draft.
    Returns the part's key."""
    prefix = _prefix(name, draft)
    writer = check_name(writer or default_writer(), "writer id")
    check_not_finished(repo, name, draft)
    repo.ensure_artifact(name, type)
    try:
        repo.store.put_if_absent(prefix + "draft.json", canonical_json({
            "type": type, "chunk_size": chunk_size, "created_at": now_iso(), "created_by": whoami()}))
    except PreconditionFailed:
        existing = _existing(repo, name, draft)
        if existing.get("type") != type:
            raise Conflict(f"draft {draft!r} of {name} is a {existing.get('type')}, not a {type}") from None
        if existing["chunk_size"] != chunk_size:
            raise Conflict(f"draft {draft!r} of {name} takes files hashed in chunks of {existing['chunk_size']} "
                           f"bytes, these were hashed in chunks of {chunk_size}") from None
    if _is_sealed(repo, prefix):
        raise Conflict(f"draft {draft!r} of {name} is being finished and takes no more files: run "
                       f"`artifactfs draft finish {name} {draft}` to complete it, and add these files to a new draft")
    Manifest.from_entries(entries, chunk_size)  # a writer's own duplicates and bad paths fail here, not at finish
    body = b"".join(canonical_json(e.to_json()) + b"\n" for e in entries)
    key = f"{prefix}parts/{writer}-{uuid.uuid4().hex[:12]}.jsonl"
    repo.store.put_if_absent(key, body)
    if _is_sealed(repo, prefix) or repo.store.exists(_finished_key(name, draft)):
        raise Conflict(f"draft {draft!r} of {name} was finished while these files were being added; they may "
                       "be missing from the version: add them to a new draft")
    return key


def add_files(repo: Repository, name: ArtifactName, draft: str, type: str, files: list[LocalFile],
              extra_entries: Iterable[Entry] = (), writer: str | None = None, progress=None) -> list[Entry]:
    """Hash and upload local files, then add them (and `extra_entries`, e.g. references) to the draft."""
    check_draft(draft)
    repo.ensure_artifact(name, type)
    started = time.time()
    chunk_size = draft_chunk_size(repo, name, draft)
    uploaded, sources = commit.upload_files(repo, files, progress, chunk_size=chunk_size)
    entries = [*uploaded, *extra_entries]
    add_entries(repo, name, draft, type, entries, writer, chunk_size)
    commit.protect_commit(repo, started, sources)  # a part protects its blobs once it exists (docs/GC.md)
    return entries


def parts(repo: Repository, name: ArtifactName, draft: str) -> dict[str, list[Entry]]:
    """Every part of the draft: key -> entries."""
    prefix = _prefix(name, draft) + "parts/"
    out = {}
    for info in repo.store.list(prefix):
        try:
            data, _ = repo.store.get(info.key)
        except ObjectNotFound:
            continue  # removed since the listing (the draft was finished or removed)
        out[info.key] = [Entry.from_json(load_json(line, info.key)) for line in data.splitlines() if line]
    return out


def merge(draft: str, all_parts: dict[str, list[Entry]], chunk_size: int = CHUNK_SIZE) -> Manifest:
    """One manifest from all parts; identical duplicates are fine, different content at one path is not.
    An empty directory one writer added yields to the files another added below it."""
    merged: dict[str, Entry] = {}
    for key in sorted(all_parts):
        for e in all_parts[key]:
            prev = merged.get(e.path)
            # the same content may sit in two writers' packs: where it is stored does not matter
            if prev is not None and dataclasses.replace(prev, pack=None, offset=0) != dataclasses.replace(
                    e, pack=None, offset=0):
                raise Conflict(f"draft {draft!r}: writers added different content at {e.path!r}")
            merged[e.path] = e
    parents = parent_dirs(merged)
    return Manifest.from_entries([e for e in merged.values() if not (e.kind == DIR and e.path in parents)],
                                 chunk_size)


def finish(repo: Repository, name: ArtifactName, draft: str, **commit_args) -> CommitResult:
    """Seal the draft, merge its parts, commit them as one version, delete the draft; or complete a
    finish that stopped after sealing (module docstring)."""
    prefix = _prefix(name, draft)
    try:
        check_not_finished(repo, name, draft)
    except Conflict:  # a finish that stopped while removing the draft: what it left goes too
        _delete_draft(repo, prefix)
        raise
    record = _existing(repo, name, draft)
    type = str(record.get("type", ""))
    commit_args = commit.check_args(repo, name, type, commit_args)
    try:
        repo.store.put_if_absent(prefix + "sealed.json", canonical_json({"at": now_iso(), "by": whoami()}))
        resumed = False
    except PreconditionFailed:  # sealed already: an earlier finish stopped, complete it
        resumed = True
    started = time.time()
    try:
        all_parts = parts(repo, name, draft)
        if not all_parts:
            raise UsageError(f"draft {draft!r} of {name} has no files")
        manifest = merge(draft, all_parts, record["chunk_size"])
    except BaseException:
        repo.store.delete(prefix + "sealed.json")  # nothing was committed: the draft stays usable
        raise
    # only a finish that stopped after sealing can have recorded the version already
    earlier = _recorded_since(repo, name, manifest.digest, _seal_time(repo, prefix)) if resumed else None
    if earlier is None:
        result = repo.commit(name, type, manifest, **commit_args)
    else:  # an earlier attempt recorded the version: complete its latest, aliases and index
        result = repo.complete(earlier, commit_args.get("aliases") or ())
    # The parts kept the blobs alive until the record existed (docs/GC.md); the new manifest needs this.
    commit.finish(repo, result, started, {}, manifest)
    with contextlib.suppress(PreconditionFailed):  # before the draft goes: a late writer finds the one or the other
        repo.store.put_if_absent(_finished_key(name, draft), canonical_json({"version": result.record.version}))
    _delete_draft(repo, prefix)
    return result


def _seal_time(repo: Repository, prefix: str) -> str:
    key = prefix + "sealed.json"
    try:
        data, _ = repo.store.get(key)
    except ObjectNotFound:  # removed by `draft rm` meanwhile
        raise NotFound(f"the draft under {prefix} was removed while it was being finished") from None
    at = load_json(data, key).get("at")
    return at if isinstance(at, str) else ""


def _recorded_since(repo: Repository, name: ArtifactName, digest: str, since: str) -> VersionRecord | None:
    """The version holding `digest` that a finish recorded after the seal (`since`), if one did."""
    found = repo.find_by_digest(name, digest)
    if found is not None:
        return found if found.created_at >= since else None
    for version in reversed(repo.list_versions(name)):  # the attempt died between the record and its index
        with contextlib.suppress(NotFound, CorruptData):
            rec = repo.version(name, version)
            if rec.created_at < since:
                return None
            if rec.manifest == digest:
                return rec
    return None


def _delete_draft(repo: Repository, prefix: str) -> None:
    keys = [info.key for info in repo.store.list(prefix)]
    for key in sorted(keys, key=lambda k: (k.endswith("sealed.json"), k.endswith("draft.json"))):  # the seal last
        repo.store.delete(key)


def remove(repo: Repository, name: ArtifactName, draft: str) -> None:
    draft_type(repo, name, draft)
    _delete_draft(repo, _prefix(name, draft))


def list_drafts(repo: Repository, name: ArtifactName) -> list[dict]:
    prefix = f"{name.prefix}drafts/"
    drafts: dict[str, dict] = {}
    for info in repo.store.list(prefix):
        draft, _, rest = info.key[len(prefix):].partition("/")
        d = drafts.setdefault(draft, {"draft": draft, "parts": 0, "sealed": False})
        if rest.startswith("parts/"):
            d["parts"] += 1
        elif rest == "sealed.json":
            d["sealed"] = True
    return [drafts[k] for k in sorted(drafts)]


def live_part_keys(repo: Repository) -> list[str]:
    """Every draft part in the store (gc keeps their blobs)."""
    return [info.key for info in repo.store.list("artifacts/") if "/drafts/" in info.key and "/parts/" in info.key]
