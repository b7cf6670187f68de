"""Version lifecycle: delete a version, give it a time to live (verify.py checks what the store holds).

Deletion never renumbers or reuses: the version record is replaced by a tombstone
(`{"deleted": true, ...}`, which Repository.version() reports as NotFound), its digest-index entry
and its aliases are dropped, and `latest` moves back to the newest live version. Its manifest and
blobs stay until gc finds nothing else refers to them (docs/GC.md).

TTL: `artifacts/<e>/<p>/<n>/ttl/<N>.json` = {"expires_at": <unix seconds>}; gc deletes expired versions.
"""

import contextlib
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import layout
from .errors import Conflict, CorruptData, NotFound, ObjectNotFound, PreconditionFailed, UsageError
from .manifest import canonical_json
from .names import LATEST, ArtifactName, Ref
from .records import VersionRecord, load_json, now_iso, whoami
from .repo import Repository

log = logging.getLogger(__name__)

READ_THREADS = 8  # version records read at once
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
MAX_DURATION = 100 * 365 * 86400  # a century: beyond it, times no longer fit the clock's arithmetic
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w`, or plain seconds."""
    m = _DURATION_RE.match(str(text))
    if not m:
        raise UsageError(f"invalid duration {text!r}: use a number with s, m, h, d or w (e.g. 30d)")
    seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if seconds > MAX_DURATION:
        raise UsageError(f"invalid duration {text!r}: at most {MAX_DURATION // 86400}d")
    return seconds


def ttl_prefix(name: ArtifactName) -> str:
    return f"{name.prefix}ttl/"


def ttl_key(name: ArtifactName, version: int) -> str:
    return f"{ttl_prefix(name)}{version}.json"


# ---- deletion -------------------------------------------------------------------------------------
def delete_version(repo: Repository, ref: Ref, force: bool = False) -> tuple[VersionRecord, list[str]]:
    """Tombstone a version. Refuses one that custom aliases point at unless `force` (which removes them).

    `latest` is not a reason to refuse: it moves back to the newest remaining version. An alias set
    on the version while it is being deleted is removed too: the delete wins.
    Returns (the deleted record, aliases removed).
    """
    try:
        record = repo.resolve(ref)
    except CorruptData:
        if not (force and ref.version is not None):
            raise
        record = _damaged_record(repo, ref)
    name, version = record.artifact, record.version
    aliases = [a for a in repo.aliases_of(name, version) if a != LATEST]
    if aliases and not force:
        raise Conflict(f"{name}:v{version} still has aliases {', '.join(aliases)}: move or remove them, "
                       "or pass --force to remove them with the version")
    at = now_iso()
    tombstone = canonical_json({"deleted": True, "deleted_at": at, "deleted_by": whoami(), "version": version})
    # said before the tombstone, so that a crash between the two cannot hide the deletion from watchers
    # (they deliver it once the tombstone is there: events.py)
    with contextlib.suppress(PreconditionFailed):
        repo.store.put_if_absent(layout.deletion_key(name, at.replace("-", "").replace(":", ""), version),
                                 canonical_json({"version": version, "at": at, "by": whoami()}))
    while True:
        try:
            repo.store.put_if_match(layout.version_key(name, version), tombstone, record.etag)
            break
        except PreconditionFailed:
            record = repo.version(name, version)  # edited meanwhile (or deleted: NotFound ends it)
    # After the tombstone, so that an alias set meanwhile is either seen here or sees the tombstone
    # itself (Repository._swap_alias) and takes itself back.
    removed = []
    for alias in repo.aliases_of(name, version):
        if alias != LATEST:
            with contextlib.suppress(NotFound):
                if repo.remove_alias_if(name, alias, lambda current: current == version) is not None:
                    removed.append(alias)
    try:
        data, _ = repo.store.get(layout.digest_index_key(name, record.manifest))
        if load_json(data, "digest index").get("version") == version:
            repo.store.delete(layout.digest_index_key(name, record.manifest))
    except ObjectNotFound:
        pass
    repo.store.delete(ttl_key(name, version))
    repo.repair_latest(name)
    return record, removed


def _damaged_record(repo: Repository, ref: Ref) -> VersionRecord:
    """A stand-in for a version record that cannot be read, so that `rm --force` can tombstone it."""
    assert ref.version is not None, "only a version number can name a damaged record"
    try:
        _, etag = repo.store.get(layout.version_key(ref.artifact, ref.version))
    except ObjectNotFound:
        raise NotFound(f"{ref} does not exist") from None
    return VersionRecord(artifact=ref.artifact, version=ref.version, manifest="", size=0, file_count=0,
                         type="", etag=etag)


# ---- ttl --------------------------------------------------------------------------------------------
def set_ttl(repo: Repository, ref: Ref, seconds: float | None) -> tuple[VersionRecord, float | None]:
    """Expire the version `seconds` from now (None removes the TTL). Returns (record, expires_at)."""
    record = repo.resolve(ref)
    key = ttl_key(record.artifact, record.version)
    if seconds is None:
        repo.store.delete(key)
        return record, None
    expires_at = time.time() + seconds
    repo.store.put(key, canonical_json({"expires_at": expires_at, "set_at": now_iso(), "set_by": whoami()}))
    return record, expires_at


def get_ttl(repo: Repository, ref: Ref) -> tuple[VersionRecord, float | None]:
    record = repo.resolve(ref)
    return record, expires_at(repo, record)


def expires_at(repo: Repository, record: VersionRecord) -> float | None:
    """When the version's TTL runs out (unix seconds), None if it has none."""
    return _read_expiry(repo, ttl_key(record.artifact, record.version))


def expiries(repo: Repository, name: ArtifactName) -> dict[int, float]:
    """When each version of `name` that has a TTL expires: one listing, then only the TTL records."""
    prefix = ttl_prefix(name)
    out = {}
    for info in repo.store.list(prefix):
        stem = info.key[len(prefix):].removesuffix(".json")
        if stem.isdigit():
            try:
                expires = _read_expiry(repo, info.key)
            except CorruptData as exc:  # one damaged TTL record does not hide the listing around it
                log.warning("%s; shown without its TTL", exc)
                continue
            if expires is not None:  # None: removed since the listing
                out[int(stem)] = expires
    return out


def _read_expiry(repo: Repository, key: str) -> float | None:
    try:
        data, _ = repo.store.get(key)
    except ObjectNotFound:
        return None
    return expiry_of(data, key)


def expiry_of(data: bytes, key: str) -> float:
    expires = load_json(data, key).get("expires_at", float("inf"))
    if type(expires) not in (int, float) or expires != expires:
        raise CorruptData(f"ttl record {key} has no time")
    return expires


def expired_versions(repo: Repository, now: float | None = None) -> list[Ref]:
    now = time.time() if now is None else now
    out = []
    for info in repo.store.list("artifacts/"):
        parts = info.key.split("/")
        if len(parts) != 6 or parts[4] != "ttl" or not parts[5].removesuffix(".json").isdigit():
            continue
        try:
            data, _ = repo.store.get(info.key)
        except ObjectNotFound:
            continue
        try:
            expires_at = expiry_of(data, info.key)
        except CorruptData as exc:
            log.warning("%s; its version is kept", exc)
            continue
        if expires_at <= now:
            out.append(Ref(ArtifactName(parts[1], parts[2], parts[3]), version=int(parts[5].removesuffix(".json"))))
    return out


# ---- verify -----------------------------------------------------------------------------------------
@dataclass
class Unreadable:
    """A version record that cannot be read (not JSON, unexpected fields): reported, never trusted."""
    key: str
    problem: str
    data: bytes

    def __str__(self) -> str:
        return f"{self.problem} (if it is beyond repair, `artifactfs rm --force {self.ref}` tombstones it)"

    @property
    def ref(self) -> str:
        parts = self.key.split("/")
        return f"{'/'.join(parts[1:4])}:v{parts[5].removesuffix('.json')}"


def live_versions(repo: Repository, unreadable: list[Unreadable] | None = None) -> list[VersionRecord]:
    """Every live version record in the store. A damaged one is left out, and added to `unreadable`
    (raised as CorruptData when no list is given), so that one bad record does not stop the rest."""
    keys = [info.key for info in repo.store.list("artifacts/")
            if info.key.count("/") == 5 and info.key.split("/")[4] == "versions"]

    def read(key: str):
        parts = key.split("/")
        try:
            return repo.version(ArtifactName(parts[1], parts[2], parts[3]), int(parts[5].removesuffix(".json")),
                                type="")
        except (NotFound, ValueError):
            return None
        except CorruptData as exc:
            if unreadable is None:
                raise
            try:
                data, _ = repo.store.get(key)
            except ObjectNotFound:
                return None
            return Unreadable(key, str(exc), data)

    with ThreadPoolExecutor(READ_THREADS) as pool:
        found = list(pool.map(read, keys))
    if unreadable is not None:
        unreadable.extend(r for r in found if isinstance(r, Unreadable))
    return [r for r in found if isinstance(r, VersionRecord)]
