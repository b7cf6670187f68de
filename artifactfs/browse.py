"""Listing and searching a store from Python (the API's `artifacts`, `search`, `types`, `versions`):
what `artifactfs ls` and the web view show, as objects. Blocking; the records of many artifacts are
read side by side."""

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .errors import NotFound, UsageError
from .names import LATEST, ArtifactName, check_name
from .records import VersionRecord
from .repo import Repository

READERS = 16


@dataclass(frozen=True)
class ArtifactSummary:
    """One artifact: its type, how many versions it has, and its latest version's number, size and time."""

    name: str  # entity/project/name
    type: str
    versions: int  # recorded versions (a deleted one counts until gc removes its record)
    latest: int | None
    size: int | None  # of the latest version
    updated: str | None  # when the latest version was committed
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def entity(self) -> str:
        return self.name.split("/")[0]

    @property
    def project(self) -> str:
        return self.name.split("/")[1]


def artifact_names(repo: Repository, path: str = "") -> list[ArtifactName]:
    """Every artifact under `path`: "" (the whole store), "ENTITY" or "ENTITY/PROJECT"."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) > 2:
        raise UsageError(f"{path!r}: give an entity or entity/project (an artifact's versions: versions())")
    entities = [check_name(parts[0], "entity")] if parts else repo.list_entities()
    pairs = [(e, check_name(parts[1], "project")) for e in entities] if len(parts) == 2 else [
        (e, p) for e in entities for p in repo.list_projects(e)]
    return [name for e, p in pairs for name in repo.list_artifacts(e, p)]


def summaries(repo: Repository, names: Iterable[ArtifactName]) -> list[ArtifactSummary]:
    """The summary of each artifact (one that vanished meanwhile is left out), in the order given."""
    def one(name: ArtifactName) -> ArtifactSummary | None:
        try:
            kind = repo.artifact_type(name)
        except NotFound:
            return None
        aliases = repo.aliases(name)
        latest = aliases.get(LATEST)
        record = None
        if latest is not None:
            try:
                record = repo.version(name, latest)
            except NotFound:
                record = None
        return ArtifactSummary(str(name), kind, len(repo.list_versions(name)), latest,
                               record.size if record else None, record.created_at if record else None, aliases)

    with ThreadPoolExecutor(READERS) as pool:
        return [s for s in pool.map(one, list(names)) if s is not None]


def found(query: str, name: str, type: str, aliases: Iterable[str]) -> bool:
    """Whether an artifact's name, type or one of its aliases contains `query`, in any case (what
    search means here and in the web view)."""
    needle = query.strip().lower()
    return not needle or any(needle in text.lower() for text in (name, type, *aliases))


def matches(summary: ArtifactSummary, query: str, type: str | None) -> bool:
    """Of `type` (exactly) if given, and `found` by `query`."""
    if type is not None and summary.type != type:
        return False
    return found(query, summary.name.rsplit("/", 1)[-1], summary.type, summary.aliases)


def version_records(repo: Repository, name: ArtifactName) -> list[VersionRecord]:
    """The live versions of `name`, newest first (deleted ones left out)."""
    repo.artifact_info(name)  # NotFound for an artifact that does not exist

    def one(number: int) -> VersionRecord | None:
        try:
            return repo.version(name, number)
        except NotFound:
            return None

    with ThreadPoolExecutor(READERS) as pool:
        return [r for r in pool.map(one, sorted(repo.list_versions(name), reverse=True)) if r is not None]
