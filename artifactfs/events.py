"""Events from the store, in order, for `artifactfs watch` and `artifactfs.watch()` (docs/GUIDE.md,
"Automations"; the event JSON is in docs/EVENTS.md).

Everything comes from what the store holds, so it works on any bucket, with no server of ours:

- `alias` / `alias-removed`: the alias history (alias_history.py), read past the last seq seen;
- `new-version`: the history of `latest`, which every commit moves forward; the versions between
  the newest seen and the one latest reaches are read one by one (two commits racing move latest
  once), so each new version is one event, a version deleted at once none;
- `deleted`: `deletions/<time>-<N>.json`, which a delete writes before its tombstone; delivered once
  the tombstone is there (a delete that died before it never is).

A poll costs two listings per artifact (its aliases, its deletions past the last one seen) and a read
per change, however many versions and moves came before. Where a watcher is lives in a cursor on the
store (`watch/<name>/cursor.json`), advanced after each event is delivered, so a watcher that stops
and starts again, on any machine, goes on where it was (at least once: an event whose delivery was
cut short comes again). Only the holder of the cursor's lease (`watch/<name>/lease.json`, renewed
each poll) delivers, so two watchers of one cursor never both deliver.
"""

import contextlib
import fnmatch
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from . import alias_history, layout
from .errors import CorruptData, NotFound, ObjectNotFound, PreconditionFailed, UsageError
from .manifest import canonical_json
from .names import LATEST, ArtifactName, check_name
from .records import load_json, now_iso, whoami
from .repo import Repository

log = logging.getLogger(__name__)

KINDS = ("new-version", "alias", "alias-removed", "deleted")
PENDING_DELETE = 3600.0  # seconds a deletion waits for its tombstone before it is taken as abandoned


@dataclass(frozen=True)
class Event:
    """One thing that happened to an artifact (docs/EVENTS.md)."""

    kind: str  # one of KINDS
    artifact: str
    version: int | None
    alias: str | None
    previous: int | None  # alias events: where the alias pointed before
    at: str
    by: str
    id: str  # stable: the same event always has the same id (a receiver can drop a repeat)
    position: str = field(default="", compare=False)  # where it leaves the cursor: a seq, a deletion key

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "artifact": self.artifact, "version": self.version,
                "alias": self.alias, "from": self.previous, "at": self.at, "by": self.by}


def parse_kinds(values: Iterable[str]) -> list[str]:
    """`--on` values: new-version, alias:NAME (a glob), alias-removed, deleted; all when none."""
    out = []
    for v in values:
        if v in ("new-version", "alias-removed", "deleted") or v.startswith("alias:") and v[len("alias:"):]:
            out.append(v)
        else:
            raise UsageError(f"--on takes new-version, alias:NAME, alias-removed or deleted, not {v!r}")
    return out or ["new-version", "alias:*", "alias-removed", "deleted"]


def wanted(event: Event, kinds: list[str]) -> bool:
    for k in kinds:
        if k == event.kind or (k.startswith("alias:") and event.kind == "alias"
                               and fnmatch.fnmatchcase(event.alias or "", k[len("alias:"):])):
            return True
    return False


def check_patterns(patterns: Iterable[str]) -> list[str]:
    """ENTITY/PROJECT/NAME globs (`acme/vision/*`, `acme/*/*`); every artifact when none."""
    out = []
    for p in patterns:
        parts = p.split("/")
        if len(parts) != 3 or not all(parts):
            raise UsageError(f"a pattern is ENTITY/PROJECT/NAME, globs allowed (acme/vision/*), not {p!r}")
        out.append(p)
    return out or ["*/*/*"]


@dataclass
class _Seen:
    """Where a cursor is in one artifact."""

    seqs: dict[str, int] = field(default_factory=dict)  # alias -> the last seq delivered
    newest: int = -1  # the newest version delivered (or there when the cursor started)
    deletions: str = ""  # the last deletions/ key read
    pending: dict[str, float] = field(default_factory=dict)  # deletion keys waiting for their tombstone

    def to_json(self) -> dict:
        return {"seqs": self.seqs, "newest": self.newest, "deletions": self.deletions, "pending": self.pending}

    @classmethod
    def from_json(cls, obj: dict) -> "_Seen":
        seqs = obj.get("seqs") or {}
        pending = obj.get("pending") or {}
        return cls({str(k): int(v) for k, v in seqs.items()}, int(obj.get("newest", -1)),
                   str(obj.get("deletions", "")), {str(k): float(v) for k, v in pending.items()})


class Lease:
    """Who delivers for a cursor: one holder at a time, by compare-and-swap on `watch/<name>/lease.json`;
    renewed while held, taken over once it expires (its holder stopped or lost the store)."""

    def __init__(self, repo: Repository, cursor: str, ttl: float):
        self.repo, self.key, self.ttl = repo, layout.watch_lease_key(cursor), ttl
        self.holder = f"{whoami()}/{uuid.uuid4().hex[:12]}"
        self.until = 0.0

    def hold(self) -> bool:
        """True if this watcher holds the lease (renewing it when half its time is gone)."""
        now = time.time()
        if self.until - now > self.ttl / 2:
            return True
        store = self.repo.store
        try:
            data, etag = store.get(self.key)
            obj = load_json(data, self.key)
        except ObjectNotFound:
            etag, obj = None, {}
        except CorruptData:
            etag, obj = store.head(self.key).etag, {}  # a damaged lease is taken over
        if obj.get("holder") not in (None, self.holder) and float(obj.get("expires_at", 0)) > now:
            self.until = 0.0
            return False
        body = canonical_json({"holder": self.holder, "expires_at": now + self.ttl})
        try:
            store.put_if_absent(self.key, body) if etag is None else store.put_if_match(self.key, body, etag)
        except PreconditionFailed:  # another watcher renewed or took it in between
            self.until = 0.0
            return False
        self.until = now + self.ttl
        return True

    def release(self) -> None:
        if self.until > time.time():
            try:
                data, etag = self.repo.store.get(self.key)
                if load_json(data, self.key).get("holder") == self.holder:
                    self.repo.store.put_if_match(self.key, canonical_json({"holder": None, "expires_at": 0}), etag)
            except (ObjectNotFound, PreconditionFailed, CorruptData):
                pass
        self.until = 0.0


class Watcher:
    """The events of the artifacts matching `patterns`, past the cursor `cursor`."""

    def __init__(self, repo: Repository, patterns: Iterable[str] = (), cursor: str = "default",
                 interval: float = 1.0):
        self.repo = repo
        self.patterns = check_patterns(patterns)
        self.cursor = check_name(cursor, "cursor name")
        self.interval = interval
        self.lease = Lease(repo, self.cursor, max(10.0, 3 * interval))
        self._seen: dict[str, _Seen] = {}
        self._started = False
        self._etag: str | None = None  # the cursor object's, for compare-and-swap
        self._alias_etags: dict[tuple[str, str], str] = {}  # alias records unchanged since the last poll

    # ---- the cursor -----------------------------------------------------------------------------
    def load(self) -> None:
        key = layout.watch_cursor_key(self.cursor)
        try:
            data, etag = self.repo.store.get(key)
        except ObjectNotFound:
            self._seen, self._started, self._etag = {}, False, None
            return
        if etag == self._etag:
            return
        try:
            obj = load_json(data, key)
            self._seen = {a: _Seen.from_json(s) for a, s in (obj.get("artifacts") or {}).items()}
        except (CorruptData, TypeError, ValueError, AttributeError):
            raise CorruptData(f"watch cursor {key} is damaged: remove it to start again from now") from None
        self._started, self._etag = True, etag
        self._alias_etags.clear()

    def _save(self) -> None:
        key = layout.watch_cursor_key(self.cursor)
        body = canonical_json({"artifacts": {a: s.to_json() for a, s in sorted(self._seen.items())},
                               "updated_at": now_iso(), "by": self.lease.holder})
        store = self.repo.store
        self._etag = store.put_if_absent(key, body) if self._etag is None else store.put_if_match(key, body,
                                                                                                   self._etag)

    # ---- polling --------------------------------------------------------------------------------
    def artifacts(self) -> list[ArtifactName]:
        """The artifacts matching the patterns now (one listing per level that a glob leaves open)."""
        repo, found = self.repo, []
        for pattern in self.patterns:
            e, p, n = pattern.split("/")
            entities = [x for x in repo.list_entities() if fnmatch.fnmatchcase(x, e)] if _glob(e) else [e]
            for entity in entities:
                try:
                    projects = ([x for x in repo.list_projects(entity) if fnmatch.fnmatchcase(x, p)]
                                if _glob(p) else [p])
                    for project in projects:
                        names = repo.list_artifacts(entity, project)
                        found += [a for a in names if fnmatch.fnmatchcase(a.name, n)]
                except (NotFound, UsageError):
                    continue
        return sorted(set(found), key=str)

    def poll(self) -> list[Event]:
        """The events past the cursor, in order (oldest first); the cursor does not move. On a cursor's
        first poll, everything already there is where it starts: nothing is delivered for it."""
        events: list[Event] = []
        first = not self._started
        for name in self.artifacts():
            key = str(name)
            seen = self._seen.get(key)
            if seen is None:
                seen = self._seen[key] = _Seen()
                if first:
                    self._baseline(name, seen)
                    continue
            events += self._artifact_events(name, seen)
        if first:
            self._started = True
            self._save()
        events.sort(key=lambda ev: (ev.at, ev.id))
        return events

    def _baseline(self, name: ArtifactName, seen: _Seen) -> None:
        for alias, info in self._alias_infos(name).items():
            try:
                entry = alias_history.entry_of(load_json(self.repo.store.get(info.key)[0], info.key), info.key,
                                               info.mtime)
            except (ObjectNotFound, CorruptData):
                continue
            seen.seqs[alias] = entry.seq
            if alias == LATEST and entry.version is not None:
                # past the versions a rollback of latest stepped back over too (they are not new)
                seen.newest = max(entry.version, self.repo.latest_and_next(name)[1] - 1)
        listed = list(self.repo.store.list(layout.deletions_prefix(name)))
        seen.deletions = listed[-1].key if listed else ""

    def _alias_infos(self, name: ArtifactName) -> dict:
        prefix = layout.aliases_prefix(name)
        return {info.key[len(prefix):].removesuffix(".json"): info for info in self.repo.store.list(prefix)
                if info.key.endswith(".json")}

    def _artifact_events(self, name: ArtifactName, seen: _Seen) -> list[Event]:
        out: list[Event] = []
        artifact = str(name)
        for alias, info in self._alias_infos(name).items():
            if self._alias_etags.get((artifact, alias)) == info.etag:
                continue  # unchanged since the last poll
            try:
                entries = alias_history.history(self.repo.store, name, alias, after=seen.seqs.get(alias, 0))
            except CorruptData as exc:
                log.warning("%s; its events wait until it reads", exc)
                continue
            self._alias_etags[(artifact, alias)] = info.etag
            newest = seen.newest
            for e in entries:
                kind = "alias" if e.version is not None else "alias-removed"
                if alias == LATEST and e.version is not None and e.version > newest:
                    out += self._new_versions(name, newest + 1, e.version)  # before the move that shows them
                    newest = e.version
                out.append(Event(kind, artifact, e.version, alias, e.previous, e.at, e.by,
                                 f"{artifact}:{alias}#{e.seq}", str(e.seq)))
            if alias == LATEST and not entries:  # nothing new, but versions seen before a stop not yet delivered
                with contextlib.suppress(NotFound, CorruptData):
                    current = self.repo.alias_target(name, LATEST)[0]
                    if current > newest:
                        out += self._new_versions(name, newest + 1, current)
        out += self._deletions(name, seen)
        return out

    def _new_versions(self, name: ArtifactName, first: int, last: int) -> list[Event]:
        out = []
        for n in range(max(first, 0), last + 1):
            try:
                record = self.repo.version(name, n, type="")
            except NotFound:
                continue  # deleted already (its deletion is an event of its own)
            out.append(Event("new-version", str(name), n, None, None, record.created_at, record.created_by,
                             f"{name}:v{n}"))
        return out

    def _deletions(self, name: ArtifactName, seen: _Seen) -> list[Event]:
        prefix = layout.deletions_prefix(name)
        keys = [*seen.pending, *(info.key for info in self.repo.store.list(prefix, start_after=seen.deletions))]
        out = []
        for key in dict.fromkeys(keys):
            try:
                obj = load_json(self.repo.store.get(key)[0], key)
                version = obj["version"]
                if type(version) is not int:
                    raise CorruptData(f"deletion record {key} names no version")
            except (ObjectNotFound, CorruptData, KeyError) as exc:
                log.warning("deletion record %s left out: %s", key, exc)
                continue
            if self.repo.is_live(name, version):  # said, not done yet (or the delete died before it)
                seen.pending.setdefault(key, time.time())
                continue
            out.append(Event("deleted", str(name), version, None, None, str(obj.get("at", "")),
                             str(obj.get("by", "")), f"{name}:v{version}#deleted", key))
        now = time.time()
        for key, since in list(seen.pending.items()):
            if now - since > PENDING_DELETE:
                del seen.pending[key]
        return out

    def advance(self, event: Event) -> None:
        """Move the cursor past `event` (delivered, or not wanted) and save it."""
        seen = self._seen.setdefault(event.artifact, _Seen())
        if event.kind in ("alias", "alias-removed"):
            seen.seqs[event.alias or ""] = int(event.position)
        elif event.kind == "new-version" and event.version is not None:
            seen.newest = max(seen.newest, event.version)
        elif event.kind == "deleted":
            seen.pending.pop(event.position, None)
            seen.deletions = max(seen.deletions, event.position)
        self._save()

    def events(self, stop=lambda: False) -> Iterator[Event]:
        """Every event, forever (until `stop()`): the cursor moves past each when the next is asked for."""
        try:
            while not stop():
                started = time.monotonic()
                if self.lease.hold():
                    self.load()
                    for event in self.poll():
                        yield event
                        self.advance(event)
                        if not self.lease.hold():  # another watcher took over: it reads from the cursor
                            self._alias_etags.clear()
                            break
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            self.lease.release()


def _glob(part: str) -> bool:
    return any(c in part for c in "*?[")


def event_json(event: Event) -> bytes:
    return json.dumps(event.to_json(), sort_keys=True).encode()
