"""What the web view shows, as plain JSON-able dicts: each method is one page (the HTML page renders
it, `/api/...` returns it as it is), read from the store on every call so that a version committed
from the CLI shows on the next load.

Reads stay cheap on repeat: a project's page is one listing of the project (Repository.project_objects)
plus the records it names, and each small record read (artifact, version, alias, TTL) is kept by its
key and etag, so a second load reads only what changed. Manifests are kept by digest (immutable).
"""

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import layout, lineage
from ..client import Client
from ..errors import CorruptData, NotFound, ObjectNotFound
from ..lifecycle import expiry_of
from ..lru import LRU, MISSING
from ..manifest import DIR, Entry
from ..names import LATEST, ArtifactName, Ref, check_name, parse_selector
from ..paths import normalize_entry_path
from ..records import VersionRecord, load_json
from ..repo import alias_version
from ..store import ObjectInfo

log = logging.getLogger(__name__)

ARTIFACTS_PER_PAGE = 50
VERSIONS_PER_PAGE = 100
ENTRIES_PER_PAGE = 200
DIFF_ROWS = 1000  # rows shown per kind of change; the counts are exact
SMALL_RECORDS = 50_000  # cached record reads: a few hundred bytes each
READERS = 16
DELETED = object()  # a version record that is a tombstone
DAMAGED = object()  # a record that fails its checks (malformed JSON, a record of another version, ...)
UNREAD = object()  # a version record not read yet
LIVE_READS = 4  # unread version records a project page's row reads to count the live ones


def artifact_name(entity: str, project: str, name: str) -> ArtifactName:
    return ArtifactName(check_name(entity, "entity"), check_name(project, "project"), check_name(name))


def ref_of(name: ArtifactName, selector: str) -> Ref:
    version, alias = parse_selector(selector)
    return Ref(name, version=version, alias=alias)


def entry_json(e: Entry) -> dict:
    obj = e.to_json()
    obj["kind"] = e.kind
    return obj


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
    def entities(self) -> dict:
        return {"entities": self.repo.list_entities()}

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
        return {"artifact": str(name), "entity": name.entity, "project": name.project, "name": name.name,
                "type": self._type(objects), "created_at": info.get("created_at"),
                "created_by": info.get("created_by"), "aliases": aliases, "total": len(live),
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
                children.append({"name": name, "path": path, "kind": "dir"})
            else:
                children.append({"name": name, **entry_json(manifest[index]), "size": size})
        lo, hi = manifest.dir_range(directory)
        return {**self.version_head(record), "dir": directory, "below": hi - lo, "entries": children,
                "start": start or 0, "next": rows[-1][3] if more else None}

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

    def diff(self, name: ArtifactName, old: str, new: str) -> dict:
        a, b = self.record(ref_of(name, old)), self.record(ref_of(name, new))
        result = self.client.diff_records(a, b)

        def rows(entries):
            return [{"path": e.path, "kind": e.kind, "size": e.size} for e in entries[:DIFF_ROWS]]

        return {"artifact": str(name), "old": f"v{a.version}", "new": f"v{b.version}",
                "counts": {"added": len(result.added), "removed": len(result.removed),
                           "changed": len(result.changed)},
                "added": rows(result.added), "removed": rows(result.removed),
                "changed": [{"path": n.path, "kind": n.kind, "old_size": o.size, "size": n.size}
                            for o, n in result.changed[:DIFF_ROWS]],
                "added_size": sum(e.size for e in result.added),
                "removed_size": sum(e.size for e in result.removed)}

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
                if needle in n.lower() or needle in kind.lower() or any(needle in a.lower() for a in aliases):
                    hits.append({"artifact": str(name), "entity": entity, "project": project, "name": n,
                                 "type": kind, "aliases": aliases})
                    if len(hits) >= limit:
                        return {"query": query, "results": hits, "truncated": True}
        return {"query": query, "results": hits, "truncated": False}

