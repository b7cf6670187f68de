"""What the web view shows, as plain JSON-able dicts: each method is one page (the HTML page renders
it, `/api/...` returns it as it is), read from the store on every call so that a version committed
from the CLI shows on the next load.

Reads stay cheap on repeat: a project's page is one listing of the project (Repository.project_objects)
plus the records it names, and each small record read (artifact, version, alias, TTL) is kept by its
key and etag, so a second load reads only what changed. Manifests are kept by digest (immutable).
"""

import functools
import heapq
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import browse, layout, lineage
from ..alias_history import AliasEntry, entry_of
from ..client import Client
from ..errors import CorruptData, NotFound, ObjectNotFound
from ..lifecycle import expiry_of
from ..lru import LRU, MISSING
from ..manifest import DIR, Entry, compare
from ..mount.process import mounts_of
from ..names import LATEST, ArtifactName, Ref, check_name, selector_ref
from ..paths import normalize_entry_path
from ..records import VersionRecord, load_json
from ..repo import alias_version
from ..store import ObjectInfo
from . import usage

log = logging.getLogger(__name__)

ARTIFACTS_PER_PAGE = 50
RECENT = 20  # versions on the home page
HOME_PROJECTS = 50  # projects the home page looks into (listed: the rest are named, not counted)
VERSIONS_PER_PAGE = 100
HISTORY_ROWS = 50  # alias moves the artifact page shows (the newest; `alias log` has them all)
ENTRIES_PER_PAGE = 200
DIFF_PAGE = 500  # changes a diff page shows, in path order; the counts are exact
SMALL_RECORDS = 50_000  # cached record reads: a few hundred bytes each
READERS = 16
DELETED = object()  # a version record that is a tombstone
DAMAGED = object()  # a record that fails its checks (malformed JSON, a record of another version, ...)
UNREAD = object()  # a version record not read yet
LIVE_READS = 4  # unread version records a project page's row reads to count the live ones


def artifact_name(entity: str, project: str, name: str) -> ArtifactName:
    return ArtifactName(check_name(entity, "entity"), check_name(project, "project"), check_name(name))


def ref_of(name: ArtifactName, selector: str) -> Ref:
    return selector_ref(name, selector)  # vN, an alias, or a past position (alias@TIME, alias~N, @TIME)


def entry_json(e: Entry) -> dict:
    obj = e.to_json()
    obj["kind"] = e.kind
    return obj


def _entry_of(key: str, mtime: float, data: bytes, etag: str) -> AliasEntry:
    return entry_of(load_json(data, key), key, mtime)


def _alias_of(key: str, data: bytes, etag: str) -> int | None:
    return alias_version(key, data)


class Catalog:
    def __init__(self, client: Client):
        self.client = client
        self.repo = client.repo
        self._records = LRU(SMALL_RECORDS)  # (key, etag) -> parsed record
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="catalog")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- small records, kept by (key, etag) ---------------------------------------------------
    def _read(self, info: ObjectInfo, parse: Callable[[bytes, str], Any]) -> Any:
        """`parse(data, etag)` of the object `info` lists, from memory when its etag is unchanged; None
        when it went away since the listing."""
        with self._lock:
            held = self._records.get((info.key, info.etag), MISSING)
        if held is not MISSING:
            return held
        try:
            data, etag = self.repo.store.get(info.key)
        except ObjectNotFound:
            return None
        try:
            value = parse(data, etag)
        except CorruptData as exc:  # one damaged record hides that record, not the page around it
            log.warning("%s", exc)
            value = DAMAGED
        with self._lock:
            self._records.put((info.key, etag), value)
        return value

    def _version(self, name: ArtifactName, number: int, info: ObjectInfo) -> Any:
        def parse(data: bytes, etag: str):
            try:
                return self.repo.version_from(name, number, data, etag)
            except NotFound:
                return DELETED
        return self._read(info, parse)

    def _info(self, objects: dict[str, ObjectInfo]) -> dict:
        """The artifact's own record (type, created_at, created_by)."""
        info = objects.get("artifact.json")
        found = None if info is None else self._read(info, lambda data, _: load_json(data, info.key))
        return found if isinstance(found, dict) else {}

    def _type(self, objects: dict[str, ObjectInfo]) -> str:
        kind = self._info(objects).get("type", "")
        return kind if isinstance(kind, str) else ""

    def _aliases(self, objects: dict[str, ObjectInfo]) -> dict[str, int]:
        out = {}
        for rest, info in objects.items():
            if rest.startswith("aliases/") and rest.endswith(".json"):
                version = self._read(info, functools.partial(_alias_of, info.key))
                if type(version) is int:
                    out[rest[len("aliases/"):-len(".json")]] = version
        return dict(sorted(out.items()))

    def _alias_moves(self, objects: dict[str, ObjectInfo]) -> list[dict]:
        """The newest moves of every alias (alias_history.py), newest first: each alias's record and
        the last HISTORY_ROWS copies its history holds, from the listing the page made anyway."""
        moves: list[dict] = []
        for rest in objects:
            if not (rest.startswith("aliases/") and rest.endswith(".json")):
                continue
            alias = rest[len("aliases/"):-len(".json")]
            kept = sorted(k for k in objects if k.startswith(f"alias-history/{alias}/"))[-HISTORY_ROWS:]
            entries = {}
            for key in [*kept, rest]:
                item = objects[key]
                entry = self._read(item, functools.partial(_entry_of, item.key, item.mtime))
                if isinstance(entry, AliasEntry):
                    entries[entry.seq] = entry
            moves += [{"alias": alias, **e.to_json()} for e in entries.values()]
        moves.sort(key=lambda m: m["at"], reverse=True)
        return moves[:HISTORY_ROWS]

    @staticmethod
    def _version_infos(objects: dict[str, ObjectInfo]) -> dict[int, ObjectInfo]:
        out = {}
        for rest, info in objects.items():
            stem = rest[len("versions/"):-len(".json")] if rest.startswith("versions/") else ""
            if stem.isdigit() and rest.endswith(".json"):
                out[int(stem)] = info
        return out

    def _project(self, entity: str, project: str) -> dict[str, dict[str, ObjectInfo]]:
        """Every artifact of a project with its objects, from one listing (search looks at them all)."""
        return {n: o for n, o in self.repo.project_objects(entity, project).items() if "artifact.json" in o}

    def _artifact_objects(self, name: ArtifactName) -> dict[str, ObjectInfo]:
        objects = self.repo.artifact_objects(name)
        if "artifact.json" not in objects:
            raise NotFound(f"artifact {name} does not exist")
        return objects

    # ---- pages ---------------------------------------------------------------------------------
    def home(self) -> dict:
        """The store at a glance: its entities and their projects, how many artifacts of each type, and
        the RECENT newest versions across every artifact (by the time their records were written). One
        listing per project (side by side, at most HOME_PROJECTS of them) finds every version record;
        only the newest are read, and each artifact's type once per etag."""
        entities = self.repo.list_entities()
        projects = dict(zip(entities, self._pool.map(self.repo.list_projects, entities), strict=True))
        pairs = [(e, p) for e in entities for p in projects[e]]
        scanned = pairs[:HOME_PROJECTS]
        artifacts = [(ArtifactName(e, p, n), objects) for (e, p), listing in
                     zip(scanned, self._pool.map(lambda ep: self._project(*ep), scanned), strict=True)
                     for n, objects in sorted(listing.items())]
        types = dict(zip((str(name) for name, _ in artifacts), self._pool.map(self._type, (o for _, o in artifacts)),
                         strict=True))
        counts: dict[str, int] = {}
        for kind in types.values():
            counts[kind or "-"] = counts.get(kind or "-", 0) + 1
        candidates = heapq.nlargest(2 * RECENT, ((info.mtime, name, number, info, objects)
                                                 for name, objects in artifacts
                                                 for number, info in self._version_infos(objects).items()),
                                    key=lambda c: c[0])
        records = self._pool.map(lambda c: self._version(c[1], c[2], c[3]), candidates)
        recent: list[dict[str, Any]] = []
        for (_, name, number, _, objects), record in zip(candidates, records, strict=True):
            if isinstance(record, VersionRecord):
                recent.append({"artifact": str(name), "version": number, "type": types[str(name)],
                               "aliases": [a for a, v in self._aliases(objects).items() if v == number],
                               "size": record.size, "file_count": record.file_count,
                               "created_at": record.created_at, "created_by": record.created_by,
                               "description": record.description})
        recent.sort(key=lambda r: r["created_at"], reverse=True)  # a listing's times may be to the second
        return {"entities": entities, "projects": projects, "artifacts": len(artifacts), "types": counts,
                "recent": recent[:RECENT], "projects_scanned": len(scanned), "projects_total": len(pairs)}

    def projects(self, entity: str) -> dict:
        projects = self.repo.list_projects(check_name(entity, "entity"))
        if not projects:
            raise NotFound(f"entity {entity} does not exist")
        return {"entity": entity, "projects": projects}

    def artifacts(self, entity: str, project: str, page: int = 1) -> dict:
        """A project's artifacts, ARTIFACTS_PER_PAGE a page in name order, each with its type, number of
        versions, latest version, its size and when it was made. One delimiter listing names them; only
        the artifacts shown are listed and read (side by side), so a page costs the same in a project of
        10 or 100,000 artifacts (a whole-project listing of 1,000 artifacts takes 0.8 s on SeaweedFS)."""
        names = [a.name for a in self.repo.list_artifacts(entity, project)]
        if not names and project not in self.repo.list_projects(entity):
            raise NotFound(f"project {entity}/{project} does not exist")
        pages = max(1, -(-len(names) // ARTIFACTS_PER_PAGE))
        page = min(max(page, 1), pages)
        first = (page - 1) * ARTIFACTS_PER_PAGE
        shown = [ArtifactName(entity, project, n) for n in names[first:first + ARTIFACTS_PER_PAGE]]
        summaries = self._pool.map(lambda name: self._summary(name, self.repo.artifact_objects(name)), shown)
        rows = [row for row in summaries if row is not None]
        return {"entity": entity, "project": project, "total": len(names), "page": page, "pages": pages,
                "artifacts": rows}

    def _summary(self, name: ArtifactName, objects: dict[str, ObjectInfo]) -> dict | None:
        """None for what is not (or no longer) an artifact: a prefix without its artifact.json."""
        if "artifact.json" not in objects:
            return None
        aliases = self._aliases(objects)
        infos = self._version_infos(objects)
        latest_info = infos.get(aliases.get(LATEST, -1))
        latest = None if latest_info is None else self._version(name, aliases[LATEST], latest_info)
        row: dict = {"name": name.name, "artifact": str(name), "type": self._type(objects),
                     "versions": self._live_count(name, infos), "aliases": aliases, "latest": None, "size": None,
                     "updated": None}
        if isinstance(latest, VersionRecord):
            row.update(latest=f"v{latest.version}", size=latest.size, updated=latest.created_at)
        return row

    def _live_count(self, name: ArtifactName, infos: dict[int, ObjectInfo]) -> int:
        """How many of the listed versions are not deleted, as far as known: a tombstone looks like any
        record in a listing, so telling it apart takes a read. Each call reads at most LIVE_READS records
        not read before (smallest first: a tombstone is small), the rest count as live until a later load
        reads them; so a row costs a few requests whatever the number of versions, and converges."""
        with self._lock:
            state = {n: self._records.get((info.key, info.etag), UNREAD) for n, info in infos.items()}
        unread = sorted((n for n, r in state.items() if r is UNREAD), key=lambda n: infos[n].size)[:LIVE_READS]
        for n in unread:
            state[n] = self._version(name, n, infos[n])
        return sum(1 for r in state.values() if r is UNREAD or isinstance(r, VersionRecord))

    def artifact(self, name: ArtifactName, page: int = 1) -> dict:
        """An artifact: its versions newest first (VERSIONS_PER_PAGE a page), each with its aliases, TTL,
        size, file count, created, description and metadata."""
        objects = self._artifact_objects(name)
        aliases = self._aliases(objects)
        infos = self._version_infos(objects)
        numbers = sorted(infos, reverse=True)
        records = dict(zip(numbers, self._pool.map(lambda n: self._version(name, n, infos[n]), numbers),
                           strict=True))
        live = [n for n in numbers if isinstance(records[n], VersionRecord)]
        pages = max(1, -(-len(live) // VERSIONS_PER_PAGE))
        page = min(max(page, 1), pages)
        rows = []
        for n in live[(page - 1) * VERSIONS_PER_PAGE:page * VERSIONS_PER_PAGE]:
            record = records[n]
            row = record.to_json()
            row["aliases"] = [a for a, v in aliases.items() if v == n]
            row["expires_at"] = self._expiry(n, objects)
            rows.append(row)
        info = self._info(objects)
        moved = self._alias_moves(objects)
        return {"artifact": str(name), "entity": name.entity, "project": name.project, "name": name.name,
                "type": self._type(objects), "created_at": info.get("created_at"),
                "created_by": info.get("created_by"), "aliases": aliases, "alias_moves": moved, "total": len(live),
                "page": page, "pages": pages, "versions": rows}

    def _expiry(self, number: int, objects: dict[str, ObjectInfo]) -> float | None:
        info = objects.get(f"ttl/{number}.json")
        return None if info is None else self._read(info, lambda data, _: expiry_of(data, info.key))

    def record(self, ref: Ref) -> VersionRecord:
        return self.repo.resolve(ref)

    def version(self, ref: Ref, directory: str = "", start: int | None = None) -> dict:
        """A directory of a version: its children in path order, ENTRIES_PER_PAGE a page; `start` is
        the entry index a page starts at (`next` gives the following page's), so a page of a
        million-entry version costs what a page of a small one does."""
        record = self.record(ref)
        manifest = self.client.manifest(record)
        directory = normalize_entry_path(directory) if directory.strip("/") else ""
        if directory and not manifest.is_dir(directory):
            raise NotFound(f"{record.ref} has no directory {directory!r}")
        rows = manifest.child_rows(directory, start, ENTRIES_PER_PAGE + 1)
        more = len(rows) > ENTRIES_PER_PAGE
        rows = rows[:ENTRIES_PER_PAGE]
        children = []
        for raw, is_dir, index, _, size, _ in rows:
            name = raw.decode("utf-8")
            path = f"{directory}/{name}" if directory else name
            if is_dir:
                first, end = manifest.dir_range(path)
                children.append({"name": name, "path": path, "kind": "dir", "entries": end - first,
                                 "size": manifest.size_between(first, end)})
            else:
                children.append({"name": name, **entry_json(manifest[index]), "size": size})
        lo, hi = manifest.dir_range(directory)
        head = self.version_head(record)
        return {**head, "dir": directory, "below": hi - lo, "below_size": manifest.size_between(lo, hi),
                "entries": children, "start": start or 0, "next": rows[-1][3] if more else None,
                "use": usage.snippets(str(record.artifact), record.version, directory,
                                      mounts_of(self.client.store.url))}

    def version_head(self, record: VersionRecord) -> dict:
        """The record of a version and its aliases (one listing; alias records read once per etag)."""
        listed = self.repo.artifact_objects(record.artifact, layout.aliases_prefix(record.artifact))
        head = record.to_json()
        head["aliases"] = [a for a, v in self._aliases(listed).items() if v == record.version]
        return head

    def file(self, ref: Ref, path: str) -> tuple[VersionRecord, Entry, int]:
        """The entry at `path` of a version (NotFound if it names no file), with the chunk size its
        pieces use: what a preview or a download reads."""
        record = self.record(ref)
        manifest = self.client.manifest(record)
        index = manifest.find(normalize_entry_path(path))
        if index is None or manifest.kind_of(index) == DIR:
            raise NotFound(f"{record.ref} has no file {path!r}")
        return record, manifest[index], manifest.chunk_size

    def diff(self, name: ArtifactName, old: str, new: str, after: str = "") -> dict:
        """What changed from `old` to `new`: exact counts and sizes, and a page of DIFF_PAGE changes in
        path order after the path `after` (`next` gives the following page's). The two manifests are
        merged as a stream (manifest/compare.py): memory and time in proportion to what changed, so a
        page of a diff of two million-entry versions costs what the loads of their manifests cost."""
        a, b = self.record(ref_of(name, old)), self.record(ref_of(name, new))
        ma, mb = self._pool.map(self.client.manifest, (a, b))  # side by side: each may be a first load
        counts = dict.fromkeys((compare.ADDED, compare.REMOVED, compare.CHANGED), 0)
        added_size = removed_size = 0
        rows: list[dict] = []
        for change, i, j in compare.changes(ma, mb):
            counts[change] += 1
            if change == compare.ADDED:
                added_size += mb.size_of(j)
            elif change == compare.REMOVED:
                removed_size += ma.size_of(i)
            if len(rows) <= DIFF_PAGE:
                m, k = (ma, i) if j < 0 else (mb, j)
                path = m.path_of(k)  # str order is UTF-8 byte order: the manifests' order
                if path > after:
                    row = {"change": change, "path": path, "kind": m.kind_of(k), "size": m.size_of(k)}
                    if change == compare.CHANGED:
                        row["old_size"] = ma.size_of(i)
                    rows.append(row)
        more = len(rows) > DIFF_PAGE
        rows = rows[:DIFF_PAGE]
        return {"artifact": str(name), "old": f"v{a.version}", "new": f"v{b.version}", "counts": counts,
                "added_size": added_size, "removed_size": removed_size, "after": after, "rows": rows,
                "next": rows[-1]["path"] if more else None}

    def lineage(self, ref: Ref, depth: int) -> dict:
        record = self.record(ref)
        return {**self.version_head(record), "depth": depth,
                "lineage": lineage.walk(self.repo, record, depth).to_json()}

    def search(self, query: str, limit: int = 200) -> dict:
        """Artifacts across the store whose name, type or one of whose aliases contains `query`
        (case-insensitive): one listing per project, the types read once per artifact."""
        needle = query.strip().lower()
        hits: list[dict] = []
        if not needle:
            return {"query": query, "results": hits, "truncated": False}
        projects = [(e, p) for e in self.repo.list_entities() for p in self.repo.list_projects(e)]
        for (entity, project), objects in zip(projects, self._pool.map(lambda ep: self._project(*ep), projects),
                                              strict=True):
            for n in sorted(objects):
                name = ArtifactName(entity, project, n)
                aliases = list(self._aliases(objects[n]))
                kind = self._type(objects[n])
                if browse.found(needle, n, kind, aliases):
                    hits.append({"artifact": str(name), "entity": entity, "project": project, "name": n,
                                 "type": kind, "aliases": aliases})
                    if len(hits) >= limit:
                        return {"query": query, "results": hits, "truncated": True}
        return {"query": query, "results": hits, "truncated": False}

