"""Alias history: every move of an alias (set, move, remove, `latest` on a commit or a rollback) is kept,
so that the past is a path (`name:prod@2026-12-01T10:00:00Z`, `name:prod~1`) and `alias log` can say
who moved it when (docs/FORMAT.md, "Alias history").

The alias record is the history's newest entry: each write of it (compare-and-swap, as before)
carries a sequence number `seq`, when (`at`, never before the entry it replaces), who (`by`) and
the version it replaced (`from`). Older entries are copies of the records that held each `seq`,
written once (put-if-absent) to `alias-history/<alias>/<seq>.json`: by the mover right after its
write, and again by the next mover before it replaces the record. So a move and its history never
disagree: a crash between the two writes leaves the entry in the alias record, where readers find it
and the next mover copies it from. A record from before history (no `seq`) is entry 0, dated by the
store's time of its object.
"""

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from . import layout
from .errors import CorruptData, NotFound, ObjectNotFound, PreconditionFailed
from .manifest import canonical_json
from .names import ArtifactName, format_time, time_or_none
from .records import load_json, now_iso, whoami
from .store import ObjectStore

MAX_ENTRIES = 100_000  # one alias's history read at most (a listing of that many keys is ~100 requests)


@dataclass(frozen=True)
class AliasEntry:
    """One position of an alias: the version it pointed at (None: removed) from `at` on."""

    seq: int
    version: int | None
    at: str  # ISO 8601, UTC
    by: str
    previous: int | None  # the version it pointed at before (None: nowhere, or removed)

    def to_json(self) -> dict:
        return {"seq": self.seq, "version": self.version, "at": self.at, "by": self.by, "from": self.previous}


def entry_of(obj: dict, key: str, mtime: float | None = None) -> AliasEntry:
    """The history entry an alias record (or a copy of one) holds; a record from before history is
    entry 0, dated `mtime` (its object's time in the store)."""
    version = obj.get("version") if not obj.get("removed") else None
    if version is not None and (type(version) is not int or version < 0):
        raise CorruptData(f"alias record {key} has no version")
    seq = obj.get("seq", 0)
    if type(seq) is not int or seq < 0:
        raise CorruptData(f"alias record {key} has a seq that is not a count")
    at = obj.get("at") or obj.get("removed_at")
    if not isinstance(at, str) or time_or_none(at) is None:
        if seq or mtime is None:
            raise CorruptData(f"alias record {key} has no valid time")
        at = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    by = obj.get("by") or obj.get("removed_by") or ""
    previous = obj.get("from")
    if previous is not None and (type(previous) is not int or previous < 0):
        raise CorruptData(f"alias record {key} has a 'from' that is not a version")
    return AliasEntry(seq, version, at, by if isinstance(by, str) else "", previous)


def next_record(current: AliasEntry | None, version: int | None, extra: dict) -> bytes:
    """The body of the alias record that replaces `current` (None: there is none) with `version`
    (None: removed): the next entry of its history."""
    now = now_iso()
    if current is not None and now < current.at:  # another machine's clock ran ahead: keep the order
        now = current.at
    # a fresh alias starts at 1 (0 is a record from before history)
    obj: dict = {"seq": 1 if current is None else current.seq + 1, "at": now, "by": whoami(),
                 "from": None if current is None else current.version, **extra}
    if version is None:
        obj.update(removed=True, removed_at=obj["at"], removed_by=obj["by"])  # as readers before history
    else:
        obj["version"] = version
    return canonical_json(obj)


def record_entry(store: ObjectStore, key: str, obj: dict, etag: str) -> AliasEntry:
    """The entry of the alias record `obj` read with ETag `etag`. A record from before history is dated
    by its object (a HEAD): PreconditionFailed if the object is no longer that record."""
    mtime = None
    if "seq" not in obj:
        info = store.head(key)
        if info.etag != etag:
            raise PreconditionFailed(key)
        mtime = info.mtime
    return entry_of(obj, key, mtime)


def archive(store: ObjectStore, name: ArtifactName, alias: str, entry: AliasEntry) -> None:
    """Copy `entry` into the history, once (another mover may have done it: the copy is the same
    bytes either way)."""
    with contextlib.suppress(PreconditionFailed):
        store.put_if_absent(layout.alias_history_key(name, alias, entry.seq), canonical_json(entry.to_json()))


def history(store: ObjectStore, name: ArtifactName, alias: str, after: int = -1) -> list[AliasEntry]:
    """The entries of the alias's history with a seq past `after` (all by default), oldest first, the
    current record last; [] for an alias that never existed or has nothing new. The listing starts
    after `after`'s key: what was read before costs nothing."""
    key = layout.alias_key(name, alias)
    while True:
        try:
            data, etag = store.get(key)
        except ObjectNotFound:
            return []
        with contextlib.suppress(PreconditionFailed):  # moved between the read and its date: read again
            current = record_entry(store, key, load_json(data, key), etag)
            break
    if current.seq <= after:
        return []
    entries: dict[int, AliasEntry] = {}
    prefix = layout.alias_history_prefix(name, alias)
    start = layout.alias_history_key(name, alias, after) if after >= 0 else ""
    for i, info in enumerate(store.list(prefix, start_after=start)):
        if i >= MAX_ENTRIES:
            break
        try:
            seq = int(info.key[len(prefix):].removesuffix(".json"))
        except ValueError:
            continue
        if not after < seq < current.seq:
            continue
        with contextlib.suppress(ObjectNotFound):
            copy, _ = store.get(info.key)
            entry = entry_of(load_json(copy, info.key), info.key)
            if entry.seq == seq:  # a copy that says another seq than its key is not this entry
                entries[seq] = entry
    return [entries[s] for s in sorted(entries)] + [current]


def at_time(entries: list[AliasEntry], when: datetime, what: str) -> int:
    """The version the alias pointed at `when`; NotFound if it did not exist or was removed then."""
    found = None
    for e in entries:
        t = time_or_none(e.at)
        if t is not None and t <= when:
            found = e
    if found is None:
        since = f" (its history starts {entries[0].at})" if entries else ""
        raise NotFound(f"{what} did not exist at {format_time(when)}{since}")
    if found.version is None:
        raise NotFound(f"{what} was removed at {format_time(when)} (since {found.at})")
    return found.version


def steps_back(entries: list[AliasEntry], back: int, what: str) -> int:
    """The version the alias pointed at `back` moves ago."""
    if not entries:
        raise NotFound(f"{what} does not exist")
    if back >= len(entries):
        raise NotFound(f"{what}: its history holds {len(entries) - 1} earlier position"
                       f"{'s' if len(entries) != 2 else ''}, not {back}")
    entry = entries[-1 - back]
    if entry.version is None:
        raise NotFound(f"{what}: the alias was removed then (at {entry.at})")
    return entry.version
