"""The top of the read-only tree: MOUNT/<entity>/<project>/<name>:<vN|alias> (or, without the colon,
<name>/<vN|alias>), resolved through the
Repository on worker threads, with short TTL caches so a busy mount does not hammer the store.

- Versions are immutable: a loaded VersionView (record + compact manifest) is kept in a small LRU and
  by every inode and open file that refers to it.
- An alias is re-resolved after `alias_ttl` seconds; listings (entities, projects, a project's
  `name:vN`/`name:alias` names) are cached for `listing_ttl`.
- A name absent from a cached listing is still looked up directly, so new versions and aliases
  appear without a remount; the kernel caches the "not found" for the short negative timeout.

Concurrency: every cache fill runs in a worker thread; concurrent misses for one key share one fill
(`_SingleFlight`). Dict updates happen on the trio thread with no await between check and set.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

import trio

from ...errors import InvalidName, NotFound, StoreUnavailable
from ...lru import LRU
from ...manifest_store import VersionView
from ...names import ArtifactName, Ref, check_name, selector_ref, valid_name
from ...repo import Repository
from ..daemon import Workers

log = logging.getLogger(__name__)

VERSION_LRU = 16


class _SingleFlight:
    """Cache values for a TTL; concurrent misses of one key wait for one loader call."""

    def __init__(self):
        self._values: dict = {}
        self._inflight: dict = {}

    def peek(self, key):
        hit = self._values.get(key)
        if hit is not None and (hit[0] is None or hit[0] > trio.current_time()):
            return hit[1]
        return None

    async def get(self, key, ttl: float | None, load):
        hit = self._values.get(key)
        if hit is not None and (hit[0] is None or hit[0] > trio.current_time()):
            return hit[1]
        waiter = self._inflight.get(key)
        if waiter is not None:
            await waiter.wait()
            return await self.get(key, ttl, load)
        event = self._inflight[key] = trio.Event()
        try:
            try:
                value = await load()
            except StoreUnavailable as exc:
                if hit is None:
                    raise
                # stale-if-error: during an outage, paths to versions already loaded keep working;
                # the stale value is kept one more TTL so each lookup does not wait out the timeout
                log.warning("store unavailable (%s): serving %s as last seen", exc, key)
                value = hit[1]
            self._values[key] = (None if ttl is None else trio.current_time() + ttl, value)
            return value
        finally:
            del self._inflight[key]
            event.set()

    def drop(self, key) -> None:
        self._values.pop(key, None)


class Namespace:
    def __init__(self, repo: Repository, workers: Workers, alias_ttl: float = 2.0, listing_ttl: float = 2.0,
                 timeout: float | None = None):
        self.repo = repo
        self.workers = workers
        self.alias_ttl = alias_ttl
        self.listing_ttl = listing_ttl
        self.timeout = timeout
        self._cache = _SingleFlight()
        self._versions = LRU(VERSION_LRU)  # (artifact, number) -> VersionView
        self._records_read: dict = {}  # (version key, etag) -> live: deleted versions are not listed

    async def _call(self, fn, *args):
        return await self.workers.net(fn, *args, timeout=self.timeout)

    # ---- listings ------------------------------------------------------------------------------
    async def entities(self) -> list[str]:
        return await self._cache.get(("entities",), self.listing_ttl, lambda: self._call(self.repo.list_entities))

    async def projects(self, entity: str) -> list[str]:
        return await self._cache.get(("projects", entity), self.listing_ttl,
                                     lambda: self._call(self.repo.list_projects, entity))

    async def selectors(self, entity: str, project: str) -> list[str]:
        """What a project directory lists, sorted: every `name:vN` and `name:alias`, and the colon-free
        `name` of each artifact that has any."""
        return await self._cache.get(("selectors", entity, project), self.listing_ttl,
                                     lambda: self._call(self._list_selectors, entity, project))

    def _list_selectors(self, entity: str, project: str) -> list[str]:
        artifacts = self.repo.list_artifacts(entity, project)

        def one(artifact: ArtifactName) -> list[str]:
            selectors = self._artifact_selectors(artifact)
            return [f"{artifact.name}:{s}" for s in selectors] + ([artifact.name] if selectors else [])

        with ThreadPoolExecutor(8) as pool:
            return sorted(n for names in pool.map(one, artifacts) for n in names)

    async def artifact_selectors(self, artifact: ArtifactName) -> list[str]:
        """What the colon-free `name/` directory lists: `vN` of each live version, then the aliases;
        empty for an artifact that does not exist."""
        return await self._cache.get(("artifact", artifact), self.listing_ttl,
                                     lambda: self._call(self._artifact_selectors, artifact))

    def _artifact_selectors(self, artifact: ArtifactName) -> list[str]:
        versions = self.repo.live_version_numbers(artifact, self._records_read)
        return [f"v{v}" for v in versions] + sorted(self.repo.aliases(artifact))

    # ---- existence of the upper levels -----------------------------------------------------------
    async def has_entity(self, entity: str) -> bool:
        if not valid_name(entity):
            return False
        listed = self._cache.peek(("entities",))
        if listed is not None and entity in listed:
            return True
        # Its projects, not the listing of every entity: a narrower listing, and what the lookup of a
        # project in it (the next step of any path) needs anyway.
        return bool(await self.projects(entity))

    async def has_project(self, entity: str, project: str) -> bool:
        if not valid_name(project):
            return False
        return project in await self.projects(entity)

    async def has_artifact(self, artifact: ArtifactName) -> bool:
        listed = self._cache.peek(("selectors", artifact.entity, artifact.project))
        if listed is not None and artifact.name in listed:
            return True
        return bool(await self.artifact_selectors(artifact))

    # ---- versions and aliases ------------------------------------------------------------------
    def parse(self, entity: str, project: str, text: str) -> Ref:
        """`name:vN`, `name:alias`, `name:alias@TIME`, `name:alias~N`, `name:@TIME` -> its Ref; NotFound
        for anything else."""
        name, sep, selector = text.partition(":")
        if not sep:
            raise NotFound(f"{text!r} is not name:vN or name:alias")
        try:
            return selector_ref(ArtifactName(entity, project, check_name(name, "artifact name")), selector)
        except InvalidName as exc:
            raise NotFound(str(exc)) from None

    async def travel_version(self, ref: Ref) -> VersionView:
        """The version a past position names (an alias's history, the versions' times). A time long
        enough ago names one version for good: kept as a version is; `alias~N` moves with the alias."""
        number = await self._cache.get(("travel", ref), None if ref.fixed else self.alias_ttl,
                                       lambda: self._call(self.repo.travel, ref))
        return await self.version(ref.artifact, number)

    async def version(self, artifact: ArtifactName, number: int) -> VersionView:
        key = (artifact, number)
        view = self._versions.get(key)
        if view is not None:
            return view
        view = await self._cache.get(("version", artifact, number), 0.0,
                                     lambda: self._call(self._load_version, artifact, number))
        self._cache.drop(("version", artifact, number))  # held by the LRU below, not by the TTL cache
        return self._versions.put(key, view)

    def _load_version(self, artifact: ArtifactName, number: int) -> VersionView:
        # The artifact's type is not read here: only the xattrs show it (artifact_type), and a read
        # beside these two, in a thread of its own, slowed them down by contending for the GIL.
        record = self.repo.version(artifact, number, type="")
        manifest = self.repo.manifest(record.manifest)
        manifest.drop_canonical()  # the mount only reads the columns
        return VersionView(record, manifest)

    async def artifact_type(self, artifact: ArtifactName) -> str:
        """Fixed when the artifact was created: read once, when first asked for."""
        return await self._cache.get(("type", artifact), None, lambda: self._call(self.repo.artifact_type, artifact))

    async def alias_version(self, artifact: ArtifactName, alias: str) -> VersionView:
        """The version `alias` points at now (re-read from the store after alias_ttl)."""
        number = await self._cache.get(("alias", artifact, alias), self.alias_ttl,
                                       lambda: self._call(self._alias_target, artifact, alias))
        return await self.version(artifact, number)

    async def current_size(self, uri: str, references) -> int:
        """The size of an unchecked reference's source now (checksum=False recorded none); asked again
        after alias_ttl, since the source may change."""
        return await self._cache.get(("current size", uri), self.alias_ttl,
                                     lambda: self._call(references.current_size, uri))

    def _alias_target(self, artifact: ArtifactName, alias: str) -> int:
        return self.repo.alias_target(artifact, alias)[0]

    async def aliases_of(self, view: VersionView) -> list[str]:
        aliases = await self._cache.get(("aliases", view.record.artifact), self.alias_ttl,
                                        lambda: self._call(self.repo.aliases, view.record.artifact))
        return [a for a, v in aliases.items() if v == view.record.version]

