"""One object that wires settings, store, repository, cache and fetcher: what the CLI and the Python
API call. Each method is one user-level operation."""

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import commit, lifecycle
from .cache import LOW_WATERMARK, PieceCache
from .cache_dir import manifests_dir
from .config import Settings, format_size, load_settings
from .errors import CorruptData, LocalIOError, NotFound, UsageError
from .fetch import Fetcher, WarmResult, cacheable
from .ingest import LocalFile, walk_tree
from .manifest import Entry, Manifest, compare
from .names import ArtifactName, Ref, parse_artifact_name, parse_ref
from .records import CommitResult, VersionRecord
from .repo import Repository
from .store import ObjectStore, open_store

Progress = Callable[[int], None] | None


@dataclass
class DiffResult:
    added: list[Entry]
    removed: list[Entry]
    changed: list[tuple[Entry, Entry]]


class Client:
    def __init__(self, settings: Settings | None = None, **overrides):
        self.settings = settings or load_settings(**overrides)
        self._store: ObjectStore | None = None
        self._repo: Repository | None = None
        self._cache: PieceCache | None = None
        self._fetcher: Fetcher | None = None
        self._references = None

    # ---- wiring (lazy, so `--help` and name errors never touch the store) ----------------------
    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(self.settings.store, self.settings.endpoint_url, self.settings.timeout)
        return self._store

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = Repository(self.store, manifests_dir(self.settings.cache_dir))
            self._repo.manifests.on_cached = self._manifest_cached
        return self._repo

    def _manifest_cached(self, size: int) -> None:
        """A local manifest copy counts against the cache bound (a process without a piece cache
        leaves it to the next one's scan)."""
        if self._cache is not None:
            self._cache.account(size)

    @property
    def cache(self) -> PieceCache:
        if self._cache is None:
            self._cache = PieceCache(self.settings.cache_dir, self.settings.cache_size)
        return self._cache

    @property
    def references(self):
        """Resolves and reads external references (s3://, http(s)://, file://) with the store's S3 settings."""
        if self._references is None:
            from .references import References

            self._references = References(self.settings.endpoint_url, self.settings.timeout,
                                          self.settings.references)
        return self._references

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            self._fetcher = Fetcher(self.store, self.cache, self.references)
        return self._fetcher

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._references is not None:
            self._references.close()

    # ---- names ---------------------------------------------------------------------------------
    def ref(self, text: str) -> Ref:
        return parse_ref(text, self.settings.entity, self.settings.project)

    def artifact_name(self, text: str) -> ArtifactName:
        if ":" in text:  # `name:selector` names the artifact too, but a malformed selector is an error
            return self.ref(text).artifact
        return parse_artifact_name(text, self.settings.entity, self.settings.project)

    # ---- reading -------------------------------------------------------------------------------
    def resolve(self, ref: str | Ref) -> VersionRecord:
        return self.repo.resolve(self.ref(ref) if isinstance(ref, str) else ref)

    def manifest(self, record: VersionRecord) -> Manifest:
        return self.repo.manifest(record.manifest)

    def ls(self, path: str | None, damaged: list[str] | None = None) -> list:
        """Entities; an entity's projects (as ENTITY/PROJECT); a project's artifacts; an artifact's
        versions as (record, aliases, expires_at or None), newest last (a version whose record is
        damaged is left out and named in `damaged`)."""
        parts = [p for p in (path or "").split("/") if p]
        if not parts:
            return self.repo.list_entities()
        if len(parts) == 1:
            return [f"{parts[0]}/{p}" for p in self.repo.list_projects(parts[0])]
        if len(parts) == 2:
            return self.repo.list_artifacts(parts[0], parts[1])
        name = parse_artifact_name("/".join(parts))
        self.repo.artifact_info(name)
        aliases = self.repo.aliases(name)

        def record(v: int) -> VersionRecord | None:
            try:
                return self.repo.version(name, v)
            except NotFound:
                return None  # deleted
            except CorruptData as exc:
                if damaged is None:
                    raise
                damaged.append(str(exc))
                return None

        with ThreadPoolExecutor(8) as pool:
            records = [r for r in pool.map(record, self.repo.list_versions(name)) if r is not None]
        expires = lifecycle.expiries(self.repo, name)
        return [(r, [a for a, t in aliases.items() if t == r.version], expires.get(r.version)) for r in records]

    def download(self, ref: str, root: str | None = None, prefix: str | None = None,
                 progress: Progress = None) -> tuple[VersionRecord, str, int, int]:
        record = self.resolve(ref)
        manifest = self.manifest(record)
        entries = list(manifest.files_under(prefix))
        if prefix and not entries:
            raise NotFound(f"{record.ref} has no entry or directory {prefix!r}")
        root = root or os.path.join(".", "artifacts", f"{record.artifact.name}-v{record.version}")
        try:
            os.makedirs(root, exist_ok=True)  # there even when the version holds nothing
        except OSError as exc:
            raise LocalIOError(f"cannot make {root}: {exc.strerror}") from None
        wrote, kept = self.fetcher.download_all(entries, manifest.chunk_size, root, progress)
        return record, root, wrote, kept

    def warm(self, ref: str, prefix: str | None = None, progress: Progress = None) -> tuple[VersionRecord, WarmResult]:
        """Fetch a version (or its entry or directory `prefix`) into the local cache, verified, so that
        mounts and `get` read it without the store. Refused (UsageError) when it would not fit in the
        cache's bound: its own later pieces would evict its earlier ones."""
        record = self.resolve(ref)
        manifest = self.manifest(record)
        entries = list(manifest.files_under(prefix))
        if prefix and not entries:
            raise NotFound(f"{record.ref} has no entry or directory {prefix!r}")
        need = sum(e.size for e in entries if cacheable(e))
        room = int(self.cache.max_bytes * LOW_WATERMARK)
        if need > room:
            what = f"{record.ref} {prefix}" if prefix else str(record.ref)
            raise UsageError(f"{what} holds {format_size(need)}, more than the cache keeps ({format_size(room)} "
                             f"under --cache-size {format_size(self.cache.max_bytes)}): warm a directory of it "
                             "(--prefix) or raise --cache-size")
        return record, self.fetcher.warm(entries, manifest.chunk_size, progress)

    def diff(self, a: str, b: str) -> DiffResult:
        return self.diff_records(self.resolve(a), self.resolve(b))

    def diff_records(self, a: VersionRecord, b: VersionRecord) -> DiffResult:
        """What changed from version `a` to version `b`, both already resolved (a merge of the two
        manifests: memory in proportion to the changes, not the entries)."""
        ma, mb = self.manifest(a), self.manifest(b)
        out = DiffResult([], [], [])
        for change, i, j in compare.changes(ma, mb):
            if change == compare.ADDED:
                out.added.append(mb[j])
            elif change == compare.REMOVED:
                out.removed.append(ma[i])
            else:
                out.changed.append((ma[i], mb[j]))
        return out

    # ---- writing -------------------------------------------------------------------------------
    def commit_files(self, name: ArtifactName, type: str, files: Iterable[LocalFile],
                     extra_entries: Iterable[Entry] = (), progress: Progress = None, **commit_args) -> CommitResult:
        return commit.commit_files(self.repo, name, type, files, extra_entries, progress,
                                   entity=self.settings.entity, project=self.settings.project, **commit_args)

    def commit_dir(self, directory: str | None, name: str, type: str, prefix: str | None = None,
                   progress: Callable[[int], Callable[[int], None]] | None = None,
                   references: Iterable[str] = (), **commit_args) -> CommitResult:
        """Commit a directory's files (under `prefix`) and `references` ("URI" or "URI=NAME") as the next
        version of `name`. `progress(total_bytes)` returns the callback that receives uploaded bytes."""
        artifact = self.artifact_name(name)
        if not directory and not references:
            raise UsageError("nothing to commit: give a directory and/or references")
        # the directory's links and empty directories, then references
        files, ref_entries = walk_tree(directory, prefix) if directory else ([], [])
        ref_entries += self.references.resolve_specs(references)
        bar = progress(sum(os.path.getsize(f.source) for f in files)) if progress else None
        return self.commit_files(artifact, type, files, extra_entries=ref_entries, progress=bar, **commit_args)
