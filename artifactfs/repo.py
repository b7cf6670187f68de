"""The artifact repository: names, versions, aliases and manifests on top of an ObjectStore.

Blocking API with no FUSE and no click; the daemon calls it from worker threads.

Its records (version records, their checks) are records.py; making a version is commit.py.

Commit protocol (docs/FORMAT.md): blobs, then the manifest, then `versions/<N>.json` created with
put_if_absent (on conflict try N+1), then the digest index, then aliases by compare-and-swap. A version
is visible only once everything it names exists; an interrupted commit leaves only unreferenced objects.
"""

import contextlib
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from . import alias_history, layout
from .errors import (
    Conflict,
    CorruptData,
    InvalidName,
    NotFound,
    ObjectNotFound,
    PreconditionFailed,
)
from .lru import LRU
from .manifest import DIR, LINK, Manifest, canonical_json
from .manifest_store import ManifestStore
from .names import LATEST, ArtifactName, Ref, check_alias, check_name, format_time, time_or_none
from .records import (
    STORED_FIELDS,
    CommitResult,
    VersionRecord,
    check_metadata,
    load_json,
    now_iso,
    record_problem,
    whoami,
)
from .store import ObjectInfo, ObjectStore

log = logging.getLogger(__name__)

MAX_NEXT_GAP = 1_000_000  # versions a rollback of latest may step back over (its record's `next`)


def alias_version(key: str, data: bytes) -> int | None:
    """The version an alias record (the object at `key`) points at; None for a removed alias."""
    return _alias_version_of(load_json(data, key), key)


def _time_of(text: str) -> datetime:
    # a record without a readable time is never "before"
    return time_or_none(text) or datetime.max.replace(tzinfo=UTC)


def _alias_version_of(obj: dict, key: str) -> int | None:
    if obj.get("removed"):
        return None
    if not isinstance(obj.get("version"), int) or isinstance(obj["version"], bool):
        raise CorruptData(f"alias record {key} has no version")
    return obj["version"]


class Repository:
    def __init__(self, store: ObjectStore, manifest_cache_dir: str | None = None):
        self.store = store
        self.manifests = ManifestStore(store, manifest_cache_dir)
        self._types: dict[ArtifactName, str] = {}
        self._alias_seen = LRU(1024)  # (artifact, alias) -> (etag, record) last read
        self._alias_lock = threading.Lock()
        self._archived = LRU(1024)  # (artifact, alias, seq) this process copied into the history

    # ---- listing -------------------------------------------------------------------------------
    # Every level is one delimiter listing: an entity or project with thousands of versions below it
    # answers as fast as an empty one (listing every key below would take a request per 1,000 keys).
    def list_entities(self) -> list[str]:
        return self.store.list_dirs("artifacts/")

    def list_projects(self, entity: str) -> list[str]:
        check_name(entity, "entity")
        return self.store.list_dirs(f"artifacts/{entity}/")

    def list_artifacts(self, entity: str, project: str) -> list[ArtifactName]:
        check_name(entity, "entity"), check_name(project, "project")
        return [ArtifactName(entity, project, n) for n in self.store.list_dirs(f"artifacts/{entity}/{project}/")]

    def project_objects(self, entity: str, project: str) -> dict[str, dict[str, ObjectInfo]]:
        """Every object below a project's artifacts, by artifact name, then by key below the artifact
        (`artifact.json`, `versions/3.json`, `aliases/latest.json`, `ttl/3.json`, `used_by/...`): one
        listing answers a page about many artifacts, and the etags say which cached reads still hold."""
        check_name(entity, "entity"), check_name(project, "project")
        prefix = f"artifacts/{entity}/{project}/"
        out: dict[str, dict[str, ObjectInfo]] = {}
        for info in self.store.list(prefix):
            name, _, rest = info.key[len(prefix):].partition("/")
            if rest:
                out.setdefault(name, {})[rest] = info
        return out

    def artifact_objects(self, name: ArtifactName, prefix: str | None = None) -> dict[str, ObjectInfo]:
        """project_objects for one artifact (its own listing, not its project's), or for the part of it
        below `prefix` (e.g. layout.aliases_prefix); keys as below the artifact either way."""
        return {info.key[len(name.prefix):]: info for info in self.store.list(prefix or name.prefix)}

    # ---- artifacts -----------------------------------------------------------------------------
    def artifact_info(self, name: ArtifactName) -> dict:
        try:
            data, _ = self.store.get(layout.artifact_key(name))
        except ObjectNotFound:
            raise NotFound(f"artifact {name} does not exist") from None
        return load_json(data, layout.artifact_key(name))

    def artifact_type(self, name: ArtifactName) -> str:
        """The artifact's type; fixed at creation, so remembered once read."""
        cached = self._types.get(name)
        if cached is None:
            cached = self._types[name] = self.artifact_info(name).get("type", "")
        return cached

    def ensure_artifact(self, name: ArtifactName, type: str) -> dict:
        """Create the artifact with `type`, or check that the existing one has that type."""
        check_name(type, "type")
        info = {"type": type, "created_at": now_iso(), "created_by": whoami()}
        try:
            self.store.put_if_absent(layout.artifact_key(name), canonical_json(info))
            return info
        except PreconditionFailed:
            existing = self.artifact_info(name)
            if existing.get("type") != type:
                raise Conflict(f"artifact {name} is a {existing.get('type')}, not a {type}") from None
            return existing

    # ---- versions ------------------------------------------------------------------------------
    def _listed_versions(self, name: ArtifactName) -> list[tuple]:
        """(object info, version number) of every record under `versions/`, deleted ones included."""
        prefix = layout.versions_prefix(name)
        stems = ((info, info.key[len(prefix):].removesuffix(".json")) for info in self.store.list(prefix))
        return [(info, int(stem)) for info, stem in stems if stem.isdigit()]

    def list_versions(self, name: ArtifactName) -> list[int]:
        return sorted(number for _, number in self._listed_versions(name))

    def live_version_numbers(self, name: ArtifactName, known: dict, budget: int = 16) -> list[int]:
        """The versions of `name`, without deleted ones as far as known. A deleted version keeps its
        record (a tombstone), so telling it apart takes a read of the record: `known` remembers each
        read by (key, etag), and one call reads at most `budget` unknown records, smallest first (a
        tombstone is smaller than a record), counting the rest as live until a later call reads them.
        So a listing stays a few requests however many versions there are, and converges."""
        listed = [(info.key, info.etag, info.size, number) for info, number in self._listed_versions(name)]

        def read(item) -> None:
            key, etag = item[:2]
            try:
                data, _ = self.store.get(key)
                known[key, etag] = not load_json(data, key).get("deleted")
            except ObjectNotFound:  # removed between the listing and the read
                known[key, etag] = False
            except CorruptData as exc:  # hidden, not fatal to the listing: verify --all reports it
                log.warning("%s; left out of the listing", exc)
                known[key, etag] = False

        unknown = sorted((item for item in listed if item[:2] not in known), key=lambda item: item[2])[:budget]
        if unknown:
            with ThreadPoolExecutor(min(16, len(unknown))) as pool:
                list(pool.map(read, unknown))
        return sorted(number for key, etag, _, number in listed if known.get((key, etag), True))

    def version(self, name: ArtifactName, version: int, type: str | None = None) -> VersionRecord:
        key = layout.version_key(name, version)
        try:
            data, etag = self.store.get(key)
        except ObjectNotFound:
            self.artifact_info(name)  # a clearer error when the artifact itself is missing
            raise NotFound(f"{name}:v{version} does not exist") from None
        return self.version_from(name, version, data, etag, type)

    def version_from(self, name: ArtifactName, version: int, data: bytes, etag: str,
                     type: str | None = None) -> VersionRecord:
        """The record of `name:vN` from the bytes of its object, checked (NotFound for a tombstone)."""
        key = layout.version_key(name, version)
        obj = load_json(data, key)
        if obj.get("deleted"):
            raise NotFound(f"{name}:v{version} was deleted")
        if type is None:
            type = self.artifact_type(name)
        try:  # fields a newer writer added are left out (docs/FORMAT.md: additions keep the format)
            record = VersionRecord(artifact=name, type=type, etag=etag,
                                   **{k: v for k, v in obj.items() if k in STORED_FIELDS})
        except TypeError:
            raise CorruptData(f"version record {key} lacks required fields") from None
        problem = record_problem(record, version)
        if problem:
            raise CorruptData(f"version record {key} {problem}")
        return record

    def alias_target(self, name: ArtifactName, alias: str) -> tuple[int, str]:
        """Return (version, etag) of an alias."""
        version, etag = self._alias_state(name, alias)
        if version is None:
            self.artifact_info(name)
            raise NotFound(f"{name} has no alias {alias!r}")
        return version, etag or ""  # a record that names a version has an etag

    def _alias_state(self, name: ArtifactName, alias: str) -> tuple[int | None, str | None]:
        """(version, etag) of an alias record; version None for a removed alias (a `{"removed":true}`
        record, kept so that every later write is a compare-and-swap), etag None when there is none."""
        version, etag, _ = self._alias_record(name, alias)
        return version, etag

    def _alias_record(self, name: ArtifactName, alias: str) -> tuple[int | None, str | None, int]:
        """_alias_state and the record's lower bound on the next free version number: one past its
        version, or the `next` a rollback of latest wrote (docs/FORMAT.md)."""
        key = layout.alias_key(name, alias)
        try:
            data, etag = self.store.get(key)
        except ObjectNotFound:
            return None, None, 0
        obj = load_json(data, key)
        version = _alias_version_of(obj, key)
        with self._alias_lock:  # what the next write of it replaces
            self._alias_seen.put((name, alias), (etag, obj))
        hint = obj.get("next")
        floor = 0 if version is None else version + 1
        # a hint from the store is believed only as far as a rollback can reach (MAX_NEXT_GAP)
        if isinstance(hint, int) and not isinstance(hint, bool) and floor < hint <= floor + MAX_NEXT_GAP:
            return version, etag, hint
        return version, etag, floor

    def latest_and_next(self, name: ArtifactName) -> tuple[int | None, int]:
        """(the version latest points at or None, a lower bound on the next free version number)."""
        version, _, next_free = self._alias_record(name, LATEST)
        return version, next_free if version is not None else self.next_version_number(name)

    def resolve(self, ref: Ref) -> VersionRecord:
        version = ref.version
        if ref.travels:
            version = self.travel(ref)
        elif version is None:
            version, _ = self.alias_target(ref.artifact, ref.alias or LATEST)
        return self.version(ref.artifact, version)

    def travel(self, ref: Ref) -> int:
        """The version a past position names: `alias@TIME` and `alias~N` from the alias's history,
        `@TIME` the newest version committed by then; NotFound (saying why) if there was none."""
        if ref.alias is None:
            assert ref.at is not None, "a Ref without an alias travels by time"
            return self.newest_version_at(ref.artifact, ref.at)
        entries = self.alias_history(ref.artifact, ref.alias)
        what = f"{ref.artifact}:{ref.alias}"
        if ref.at is not None:
            return alias_history.at_time(entries, ref.at, what)
        return alias_history.steps_back(entries, ref.back, what)

    def newest_version_at(self, name: ArtifactName, when: datetime) -> int:
        """The newest live version committed at or before `when` (versions are numbered in the order of
        their commits, so a binary search over the numbers: a few reads however many there are)."""
        numbers = self.list_versions(name)
        best, lo, hi = None, 0, len(numbers) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            j, record = mid, None
            while j >= lo and record is None:  # the nearest live version at or below mid
                try:
                    record = self.version(name, numbers[j], type="")
                except NotFound:
                    j -= 1
            if record is None:
                lo = mid + 1
            elif _time_of(record.created_at) <= when:
                best, lo = numbers[j], mid + 1
            else:
                hi = j - 1
        if best is None:
            self.artifact_info(name)
            raise NotFound(f"{name} had no version at {format_time(when)}")
        return best

    def aliases(self, name: ArtifactName) -> dict[str, int]:
        """Every alias of the artifact and the version it points at."""
        prefix = layout.aliases_prefix(name)
        keys = [info.key for info in self.store.list(prefix)]

        def read(key: str):
            try:
                data, _ = self.store.get(key)
            except ObjectNotFound:
                return None  # removed since the listing
            try:
                return key[len(prefix):].removesuffix(".json"), load_json(data, key).get("version")
            except CorruptData as exc:
                log.warning("%s; alias left out", exc)
                return None

        with ThreadPoolExecutor(8) as pool:
            pairs = [(a, v) for a, v in filter(None, pool.map(read, keys)) if type(v) is int]  # not removed
        return dict(sorted(pairs))

    def aliases_of(self, name: ArtifactName, version: int) -> list[str]:
        return [a for a, v in self.aliases(name).items() if v == version]

    # ---- manifests (manifest_store.py) ---------------------------------------------------------
    def manifest(self, digest: str) -> Manifest:
        return self.manifests.get(digest)

    def manifest_bytes_from_store(self, digest: str) -> bytes:
        return self.manifests.bytes_from_store(digest)

    def put_manifest(self, manifest: Manifest) -> str:
        return self.manifests.put(manifest)

    # ---- versions ------------------------------------------------------------------------------
    def find_by_digest(self, name: ArtifactName, digest: str) -> VersionRecord | None:
        try:
            data, _ = self.store.get(layout.digest_index_key(name, digest))
        except ObjectNotFound:
            return None
        version = load_json(data, layout.digest_index_key(name, digest)).get("version")
        if type(version) is not int or version < 0:
            return None  # a damaged index entry: the content is committed as a new version
        try:
            return self.version(name, version)
        except NotFound:
            return None  # that version was deleted: the content may be committed again

    def commit(self, name: ArtifactName, type: str, manifest: Manifest, *, description: str | None = None,
               metadata: dict | None = None, aliases: Iterable[str] = (), run: str | None = None,
               inputs: Iterable[str] = (), at_version: int | None = None) -> CommitResult:
        """Record `manifest` (whose blobs are already uploaded) as the next version of `name`; with
        `at_version`, as that version or not at all (PreconditionFailed when another took it: a
        commit built on the version before, update.py)."""
        aliases = [check_alias(a) for a in aliases if a != LATEST]
        metadata = check_metadata(metadata)
        self.ensure_artifact(name, type)
        existing = self.find_by_digest(name, manifest.digest)
        if existing is not None:
            if at_version is not None and self.store.exists(layout.version_key(name, at_version)):
                # a change built on the version before `at_version`: another writer's version came
                # first, and the change must be built on it instead
                raise PreconditionFailed(f"{name}:v{at_version} exists")
            # the content was logged again: latest and the requested aliases go to the version that
            # holds it (W&B semantics; a rollback reads the rolled-back content from name:latest)
            previous = self._move_latest(name, existing.version, before=at_version)
            for alias in aliases:
                self.set_alias(name, alias, existing.version)
            return CommitResult(existing, False, aliases, previous)
        self.put_manifest(manifest)
        files, links, dirs = _counts(manifest)
        record = VersionRecord(
            artifact=name, version=0, manifest=manifest.digest, size=manifest.total_size,
            file_count=files, link_count=links, dir_count=dirs, type=type, description=description, metadata=metadata,
            created_at=now_iso(), created_by=whoami(), run=run, inputs=list(inputs),
        )
        record.version = self._next_version_hint(name) if at_version is None else at_version
        while True:
            try:
                record.etag = self.store.put_if_absent(layout.version_key(name, record.version), record.to_store())
                break
            except PreconditionFailed:
                if at_version is not None:
                    raise
                record.version += 1  # another committer took it: the next one is ours to try
        # a concurrent commit of the same content indexed its own version first
        with contextlib.suppress(PreconditionFailed):
            self.store.put_if_absent(layout.digest_index_key(name, manifest.digest),
                                     canonical_json({"version": record.version}))
        self._advance_latest(name, record.version)
        for alias in aliases:
            self.set_alias(name, alias, record.version)
        return CommitResult(record, True, aliases)

    def complete(self, record: VersionRecord, aliases: Iterable[str] = ()) -> CommitResult:
        """The steps of a commit after its version record, for a commit that stopped after it (a draft's
        finish run again): the content index, latest (forward only) and `aliases`."""
        aliases = [check_alias(a) for a in aliases if a != LATEST]
        with contextlib.suppress(PreconditionFailed):
            self.store.put_if_absent(layout.digest_index_key(record.artifact, record.manifest),
                                     canonical_json({"version": record.version}))
        self._advance_latest(record.artifact, record.version)
        for alias in aliases:
            self.set_alias(record.artifact, alias, record.version)
        return CommitResult(record, True, aliases)

    def _next_version_hint(self, name: ArtifactName) -> int:
        """A lower bound on the next free version: latest + 1, or past the versions a rollback of latest
        stepped back over (latest never passes the highest)."""
        return self.latest_and_next(name)[1]

    def next_version_number(self, name: ArtifactName) -> int:
        """One past the highest version ever recorded (deleted ones keep their record: a number is
        never used twice)."""
        versions = self.list_versions(name)
        return versions[-1] + 1 if versions else 0

    def _advance_latest(self, name: ArtifactName, version: int) -> None:
        # the new version was deleted at once: _swap_alias put latest back on a live one
        with contextlib.suppress(NotFound):
            self._swap_alias(name, LATEST, version, keep=lambda current: current >= version)

    def _move_latest(self, name: ArtifactName, version: int, before: int | None = None) -> int | None:
        """Point latest at `version` (an existing one, logged again) by compare-and-swap; returns
        where latest was before. With `before`, PreconditionFailed if latest reached it meanwhile."""
        def stale(current: int) -> bool:
            if before is not None and current >= before:
                raise PreconditionFailed(f"{name}:latest moved to v{current}")
            return current == version

        try:
            return self._swap_alias(name, LATEST, version, keep=stale)
        except NotFound:  # deleted meanwhile: _swap_alias put latest back on a live one
            return None

    def is_live(self, name: ArtifactName, version: int) -> bool:
        try:
            self.version(name, version, type="")
            return True
        except NotFound:
            return False

    def _put_alias(self, name: ArtifactName, alias: str, version: int | None, etag: str | None,
                   next_free: int = 0) -> str:
        """Write the alias record by compare-and-swap against `etag` (absent when None); None removes it.
        `next_free` is kept in the record when it lies past version + 1 (latest moved back). The record
        is the newest entry of the alias's history; the one it replaces is copied there first, the new
        one right after (alias_history.py)."""
        key = layout.alias_key(name, alias)
        current = None if etag is None else self._alias_entry(name, alias, etag)
        if current is not None and (name, alias, current.seq) not in self._archived:
            alias_history.archive(self.store, name, alias, current)
        extra = {"next": next_free} if version is not None and next_free > version + 1 else {}
        body = alias_history.next_record(current, version, extra)
        new_etag = self.store.put_if_absent(key, body) if etag is None else self.store.put_if_match(key, body, etag)
        written = alias_history.entry_of(load_json(body, key), key)
        alias_history.archive(self.store, name, alias, written)
        with self._alias_lock:  # the next move of it by this process need not copy it again
            self._archived.put((name, alias, written.seq), True)
        return new_etag

    def _alias_entry(self, name: ArtifactName, alias: str, etag: str) -> alias_history.AliasEntry:
        """The history entry of the alias record whose ETag is `etag` (PreconditionFailed if the record
        is no longer that one: the compare-and-swap would lose anyway)."""
        key = layout.alias_key(name, alias)
        with self._alias_lock:
            seen = self._alias_seen.get((name, alias))
        if seen is not None and seen[0] == etag:
            obj = seen[1]
        else:
            try:
                data, now = self.store.get(key)
            except ObjectNotFound:
                raise PreconditionFailed(key) from None
            if now != etag:
                raise PreconditionFailed(key)
            obj = load_json(data, key)
        return alias_history.record_entry(self.store, key, obj, etag)

    def alias_history(self, name: ArtifactName, alias: str) -> list[alias_history.AliasEntry]:
        """Every position of the alias, oldest first (alias_history.py); NotFound if it never existed."""
        check_alias(alias)
        entries = alias_history.history(self.store, name, alias)
        if not entries:
            self.artifact_info(name)
            raise NotFound(f"{name} has no alias {alias!r}")
        return entries

    def _swap_alias(self, name: ArtifactName, alias: str, version: int, keep=lambda current: False) -> int | None:
        """Point `alias` at `version` by compare-and-swap, retried until it sticks or `keep(current)`;
        returns where it pointed before (None: nowhere).

        Racing a delete of `version`: the delete tombstones the version, then removes the aliases it
        finds on it; this writes the alias, then checks the version is still live. Whatever the
        interleaving, one of the two sees the other, so no alias is left on a deleted version. When
        it is this side that sees the tombstone, the alias is put back and NotFound raised."""
        while True:
            current, etag, next_free = self._alias_record(name, alias)
            if current is not None and keep(current):
                return current
            try:  # latest moved back remembers how far the numbers went (update.py takes the next one)
                etag = self._put_alias(name, alias, version, etag, next_free if alias == LATEST else 0)
            except PreconditionFailed:
                continue  # moved meanwhile: the last writer wins, but never a torn write
            if self.is_live(name, version):
                return current
            self._undo_alias(name, alias, current, etag)
            raise NotFound(f"{name}:v{version} was deleted")

    def _undo_alias(self, name: ArtifactName, alias: str, previous: int | None, etag: str) -> None:
        """Take back an alias just written onto a version deleted meanwhile: to where it was if that
        is live (for `latest`: the newest live version), else remove it. Stops when someone else
        moves the alias first, since their write is checked by them."""
        while True:
            if alias == LATEST:
                previous = self.newest_live_version(name)
            elif previous is not None and not self.is_live(name, previous):
                previous = None
            try:
                etag = self._put_alias(name, alias, previous, etag)
            except PreconditionFailed:
                return
            if previous is None or self.is_live(name, previous):
                return

    def newest_live_version(self, name: ArtifactName, below: int | None = None) -> int | None:
        return next((v for v in reversed(self.list_versions(name))
                     if (below is None or v <= below) and self.is_live(name, v)), None)

    def repair_latest(self, name: ArtifactName) -> None:
        """Point `latest` at the newest live version (compare-and-swap; a concurrent commit wins)."""
        while True:
            current, etag = self._alias_state(name, LATEST)
            if current is None or self.is_live(name, current):
                return
            try:
                # latest may sit below the highest version (a rollback): the newest live one below
                # it, else the newest live one at all
                newest = self.newest_live_version(name, below=current)
                self._put_alias(name, LATEST, self.newest_live_version(name) if newest is None else newest, etag)
                return
            except PreconditionFailed:
                continue

    # ---- aliases and edits ---------------------------------------------------------------------
    def set_alias(self, name: ArtifactName, alias: str, version: int) -> None:
        check_alias(alias)
        if alias == LATEST:
            raise InvalidName("'latest' is managed automatically: it follows the version logged last "
                              "(commit the content again to move it back)")
        self.version(name, version)  # the target must exist
        self._swap_alias(name, alias, version)

    def remove_alias(self, name: ArtifactName, alias: str) -> int | None:
        check_alias(alias)
        if alias == LATEST:
            raise InvalidName("'latest' is managed automatically and cannot be removed")
        return self.remove_alias_if(name, alias, lambda version: True)

    def remove_alias_if(self, name: ArtifactName, alias: str, pointing) -> int | None:
        """Remove the alias, by compare-and-swap, if `pointing(its version)`; return that version."""
        while True:
            version, etag = self.alias_target(name, alias)
            if not pointing(version):
                return None
            try:
                self._put_alias(name, alias, None, etag)
                return version
            except PreconditionFailed:
                continue

    def update(self, ref: Ref, description: str | None = None, metadata: dict | None = None,
               replace_metadata: bool = False) -> VersionRecord:
        """Edit a version's description and metadata (merged unless `replace_metadata`)."""
        while True:
            record = self.resolve(ref)
            if description is not None:
                record.description = description
            if metadata is not None:
                record.metadata = check_metadata(metadata if replace_metadata else {**record.metadata, **metadata})
            try:
                record.etag = self.store.put_if_match(layout.version_key(record.artifact, record.version),
                                                      record.to_store(), record.etag)
                return record
            except PreconditionFailed:
                continue


def _counts(manifest: Manifest) -> tuple[int, int, int]:
    """A version record's counts: regular files, links and empty directories apart."""
    links = dirs = 0
    if manifest.specials:  # only a tree with some walks its entries
        for e in manifest:
            links += e.kind == LINK
            dirs += e.kind == DIR
    return len(manifest) - links - dirs, links, dirs
