"""The Python API: Artifact objects in the shape users know from W&B Artifacts (docs/PYTHON_API.md).

    art = artifactfs.Artifact("acme/vision/bikes", type="dataset")
    art.add_dir("images")                       # files at the root
    art.add_file("labels.csv", name="meta/labels.csv")
    art.save(aliases=["prod"])                  # -> acme/vision/bikes:v0

    art = artifactfs.artifact("acme/vision/bikes:prod")
    art.get_entry("meta/labels.csv").open().read()

Each object talks to the store named by the usual settings (ARTIFACTFS_STORE, the config file) unless
given a `client=`. Blocking; safe to use from threads with one object per thread.
"""

import io
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

from . import browse, drafts, lifecycle, lineage
from .alias_history import AliasEntry
from .browse import ArtifactSummary
from .client import Client
from .errors import InvalidPath, NotFound, UsageError
from .events import Event, Watcher, parse_kinds, wanted
from .ingest import LocalFile, local_file, walk_tree
from .manifest import Entry
from .names import LATEST
from .paths import normalize_entry_path
from .records import VersionRecord
from .references import MAX_OBJECTS


class ArtifactEntry:
    """One file of a committed version."""

    def __init__(self, artifact: "Artifact", entry: Entry, chunk_size: int):
        self._artifact, self._entry, self._chunk_size = artifact, entry, chunk_size
        self.path, self.size, self.digest = entry.path, entry.size, entry.digest
        self.ref, self.etag, self.version_id = entry.ref, entry.etag, entry.version_id

    def __repr__(self) -> str:
        return f"<ArtifactEntry {self.path} ({self.size} bytes)>"

    def read(self) -> bytes:
        """The verified content (from the cache, the store, or the reference's source)."""
        from .fetch import pieces_of
        from .references import is_unchecked

        fetcher = self._artifact._client.fetcher
        if is_unchecked(self._entry):
            return b"".join(fetcher.references.stream(self.ref))
        return b"".join(fetcher.read_pieces(pieces_of(self._entry, self._chunk_size)))

    def open(self, mode: str = "rb"):
        """A read-only, seekable file object over the content, read (and verified) as it is asked for:
        `"rb"` (default) or `"r"` for text."""
        from .entry_file import open_entry

        if mode not in ("r", "rb"):
            raise UsageError(f"entries open read-only: mode 'r' or 'rb', not {mode!r}")
        data = open_entry(self._artifact._client.fetcher, self._entry, self._chunk_size, self.path)
        return data if mode == "rb" else io.TextIOWrapper(data, encoding="utf-8")

    def download(self, root: str | None = None) -> str:
        """Write the file under `root` (default ./artifacts/NAME-vN); returns its local path."""
        root = root or self._artifact._default_root()
        self._artifact._client.fetcher.download_entry(self._entry, self._chunk_size, root)
        return os.path.join(root, self.path)


class Artifact:
    """A new artifact version being assembled, or (from `artifact()`) a committed one."""

    def __init__(self, name: str, type: str, description: str | None = None, metadata: dict | None = None,
                 *, client: Client | None = None):
        self._client = client or Client()
        self._artifact = self._client.artifact_name(name)
        self.type = type
        self.description = description
        self.metadata = dict(metadata or {})
        self.aliases: list[str] = []
        self._record: VersionRecord | None = None
        self._files: dict[str, LocalFile] = {}
        self._refs: dict[str, Entry] = {}
        self._tmp: str | None = None
        self._cleanup: Callable[[], object] | None = None

    # ---- identity ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._artifact.name

    @property
    def qualified_name(self) -> str:
        """`entity/project/name`, plus `:vN` once committed."""
        return str(self._artifact) + (f":v{self._record.version}" if self._record else "")

    @property
    def version(self) -> str | None:
        return f"v{self._record.version}" if self._record else None

    @property
    def digest(self) -> str | None:
        return self._record.digest if self._record else None

    @property
    def size(self) -> int | None:
        return self._record.size if self._record else None

    @property
    def committed(self) -> bool:
        return self._record is not None

    @property
    def created_at(self) -> str | None:
        return self._record.created_at if self._record else None

    @property
    def created_by(self) -> str | None:
        return self._record.created_by if self._record else None

    @property
    def file_count(self) -> int | None:
        return self._record.file_count if self._record else None

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name} ({self.type})>"

    # ---- adding content ---------------------------------------------------------------------------
    def _check_new(self, path: str) -> str:
        if self._record is not None:
            raise UsageError(f"{self.qualified_name} is committed and immutable: make a new Artifact to change files")
        if path in self._files or path in self._refs:
            raise InvalidPath(f"{self.name} already has an entry {path!r}")
        return path

    def add_file(self, local_path: str, name: str | None = None) -> str:
        """Add one file, as `name` (default: its base name). Returns the entry path."""
        f = local_file(local_path, name)
        self._files[self._check_new(f.path)] = f
        return f.path

    def add_dir(self, local_path: str, name: str | None = None) -> list[str]:
        """Add a directory (its files, links and empty directories) at the root, or under `name`.
        Returns the entry paths."""
        files, tree = walk_tree(local_path, normalize_entry_path(name) if name else None)
        for f in files:
            self._files[self._check_new(f.path)] = f
        for e in tree:
            self._refs[self._check_new(e.path)] = e  # entries without stored bytes, as references are
        return [f.path for f in files] + [e.path for e in tree]

    @contextmanager
    def new_file(self, name: str, mode: str = "w", encoding: str = "utf-8"):
        """Write a file straight into the artifact: `with art.new_file("a.txt") as f: f.write(...)`."""
        path = self._check_new(normalize_entry_path(name))
        if mode not in ("w", "wb", "x", "xb"):
            raise UsageError(f"new_file mode must be 'w' or 'wb', not {mode!r}")
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="artifactfs-new-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        local = os.path.join(self._tmp, str(len(self._files)), os.path.basename(path))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
        self._files[path] = LocalFile(path, local)

    def add_reference(self, uri: str, name: str | None = None, checksum: bool = True,
                      max_objects: int = MAX_OBJECTS) -> list[str]:
        """Track an external s3://, http(s):// or file:// URI without copying it. Returns the entry paths."""
        if self._record is not None:
            self._check_new("")
        entries = self._client.references.resolve(uri, name, checksum, max_objects)
        for e in entries:
            self._refs[self._check_new(e.path)] = e
        return [e.path for e in entries]

    # ---- committing and editing -------------------------------------------------------------------
    def save(self, aliases: Iterable[str] = (), run: str | None = None, inputs: Iterable = ()) -> "Artifact":
        """Commit a new artifact as the next version (recording `run` and `inputs`), or save edits of
        description, metadata and aliases of a committed one."""
        if self._record is not None:
            return self._save_edits(aliases)
        if not self._files and not self._refs:
            raise UsageError(f"{self.name} has no files to commit")
        wanted = list(dict.fromkeys([*self.aliases, *aliases]))
        result = self._client.commit_files(
            self._artifact, self.type, list(self._files.values()), extra_entries=list(self._refs.values()),
            description=self.description, metadata=self.metadata, aliases=wanted, run=run,
            inputs=[_ref_text(i) for i in inputs])
        self._load(result.record)
        if self._cleanup is not None:
            self._cleanup()
        return self

    def _save_edits(self, aliases: Iterable[str]) -> "Artifact":
        repo, rec = self._client.repo, self._committed()
        rec = repo.update(rec.ref, self.description, self.metadata, replace_metadata=True)
        wanted = {a for a in [*self.aliases, *aliases] if a != LATEST}
        current = {a for a in repo.aliases_of(rec.artifact, rec.version) if a != LATEST}
        for alias in sorted(wanted - current):
            repo.set_alias(rec.artifact, alias, rec.version)
        for alias in sorted(current - wanted):
            repo.remove_alias(rec.artifact, alias)
        self._load(rec)
        return self

    def upsert(self, draft: str, writer: str | None = None) -> list[str]:
        """Add this object's files to a draft that several writers share (see `finish_draft`)."""
        entries = drafts.add_files(self._client.repo, self._artifact, draft, self.type,
                                   list(self._files.values()), list(self._refs.values()), writer)
        return [e.path for e in entries]

    def _load(self, record: VersionRecord) -> None:
        self._record = record
        self.type = record.type or self.type
        self.description = record.description
        self.metadata = dict(record.metadata)
        self.aliases = self._client.repo.aliases_of(record.artifact, record.version)
        self._files, self._refs = {}, {}

    def _committed(self) -> VersionRecord:
        if self._record is None:
            raise UsageError(f"{self.name} is not committed yet: call save() first")
        return self._record

    # ---- reading ----------------------------------------------------------------------------------
    def _manifest(self):
        return self._client.manifest(self._committed())

    def files(self, path_prefix: str | None = None) -> list[ArtifactEntry]:
        m = self._manifest()
        return [ArtifactEntry(self, e, m.chunk_size) for e in m.files_under(path_prefix)]

    def get_entry(self, path: str) -> ArtifactEntry:
        m = self._manifest()
        i = m.find(normalize_entry_path(path))
        if i is None:
            raise NotFound(f"{self.qualified_name} has no entry {path!r}")
        return ArtifactEntry(self, m[i], m.chunk_size)

    def _default_root(self) -> str:
        return os.path.join(".", "artifacts", f"{self.name}-{self.version}")

    def download(self, root: str | None = None, path_prefix: str | None = None) -> str:
        """Download the version (or what lies under `path_prefix`) to `root`; returns the root."""
        _, root, _, _ = self._client.download(self.qualified_name, root or self._default_root(), path_prefix)
        return root

    # ---- lifecycle and lineage --------------------------------------------------------------------
    def delete(self, delete_aliases: bool = False) -> None:
        """Delete this version (refused while custom aliases point at it, unless delete_aliases)."""
        lifecycle.delete_version(self._client.repo, self._committed().ref, force=delete_aliases)

    def set_ttl(self, duration: str | float | None) -> None:
        """Expire this version after `duration` (`"30d"`, seconds, or None to keep it)."""
        seconds = None if duration is None else lifecycle.parse_duration(str(duration))
        lifecycle.set_ttl(self._client.repo, self._committed().ref, seconds)

    def logged_by(self) -> str | None:
        """The id of the run that produced this version."""
        return self._committed().run

    def used_by(self) -> list[str]:
        """Ids of the runs recorded as having used this version."""
        rec = self._committed()
        return lineage.used_by(self._client.repo, rec.artifact, rec.version)

    def use(self, run: str) -> "Artifact":
        """Record that `run` consumed this version."""
        lineage.record_use(self._client.repo, self._committed(), run)
        return self

    def inputs(self) -> list["Artifact"]:
        """The versions the producing run used (as recorded at commit)."""
        return [artifact(r, client=self._client) for r in self._committed().inputs]

    def lineage(self, depth: int = 3) -> lineage.Lineage:
        return lineage.walk(self._client.repo, self._committed(), depth)


def _ref_text(value) -> str:
    return value.qualified_name if isinstance(value, Artifact) else str(value)


def artifact(ref: str, *, client: Client | None = None) -> Artifact:
    """The committed version `ref` names: `entity/project/name:alias` or `:vN` (default `latest`)."""
    client = client or Client()
    record = client.resolve(ref)
    art = Artifact(str(record.artifact), record.type, client=client)
    art._load(record)
    return art


def finish_draft(name: str, draft: str, *, aliases: Iterable[str] = (), description: str | None = None,
                 metadata: dict | None = None, run: str | None = None, inputs: Iterable = (),
                 client: Client | None = None) -> Artifact:
    """Commit everything the writers added to `draft` as one version."""
    client = client or Client()
    result = drafts.finish(client.repo, client.artifact_name(name), draft, aliases=list(aliases),
                           description=description, metadata=metadata, run=run,
                           inputs=[_ref_text(i) for i in inputs])
    return artifact(str(result.record.ref), client=client)


def use_artifact(ref: str, run: str, *, client: Client | None = None) -> Artifact:
    """Resolve `ref` and record that `run` used it (what `artifactfs use REF --run ID` does)."""
    return artifact(ref, client=client).use(run)


# ---- listing and searching (browse.py) ------------------------------------------------------------
def artifacts(path: str = "", type: str | None = None, *, client: Client | None = None) -> list[ArtifactSummary]:
    """The artifacts under `path` ("" the whole store, "ENTITY", "ENTITY/PROJECT"), of `type` if given,
    in name order: each with its type, number of versions, latest version, size, time and aliases."""
    return search("", type, path, client=client)


def search(query: str, type: str | None = None, path: str = "", *,
           client: Client | None = None) -> list[ArtifactSummary]:
    """The artifacts (under `path`, of `type` if given) whose name, type or one of whose aliases
    contains `query`, any case."""
    client = client or Client()
    rows = browse.summaries(client.repo, browse.artifact_names(client.repo, path))
    return [r for r in rows if browse.matches(r, query, type)]


def types(path: str = "", *, client: Client | None = None) -> dict[str, int]:
    """How many artifacts of each type lie under `path`."""
    counts: dict[str, int] = {}
    for row in artifacts(path, client=client):
        counts[row.type] = counts.get(row.type, 0) + 1
    return dict(sorted(counts.items()))


def versions(name: str, *, client: Client | None = None) -> list[Artifact]:
    """Every live version of the artifact `name`, newest first, as committed Artifacts (version,
    aliases, size, file_count, created_at, created_by, description, metadata, files...)."""
    client = client or Client()
    out = []
    for record in browse.version_records(client.repo, client.artifact_name(name)):
        art = Artifact(str(record.artifact), record.type, client=client)
        art._load(record)
        out.append(art)
    return out


def alias_log(ref: str, *, client: Client | None = None) -> list[AliasEntry]:
    """Every position the alias of `ref` (`NAME:ALIAS`) has had, oldest first: `seq`, `version` (None:
    removed), `at`, `by`, `previous` (docs/FORMAT.md, "Alias history")."""
    client = client or Client()
    name, sep, alias = ref.rpartition(":")
    if not sep or not alias:
        raise UsageError(f"give NAME:ALIAS, not {ref!r}")
    return client.repo.alias_history(client.artifact_name(name), alias)


def watch(*patterns: str, on: Iterable[str] = (), cursor: str = "default", interval: float = 1.0,
          client: Client | None = None) -> Iterator[Event]:
    """The events of the artifacts `patterns` name (ENTITY/PROJECT/NAME globs; all when none), in
    order and forever: `for event in artifactfs.watch("acme/vision/*", on=["alias:prod"]): ...`. The
    cursor `cursor`, kept in the store, moves past an event when the next one is asked for, so a
    loop that stops and starts again goes on where it was (docs/GUIDE.md, "Automations")."""
    client = client or Client()
    kinds = parse_kinds(on)
    for event in Watcher(client.repo, patterns, cursor, interval).events():
        if wanted(event, kinds):
            yield event


def run_versions(run: str, *, client: Client | None = None) -> dict[str, list[Artifact]]:
    """What the run `run` used and produced: {"used": [...], "produced": [...]}, as committed Artifacts
    (a version deleted since is left out)."""
    client = client or Client()

    def load(refs: list[str]) -> list[Artifact]:
        out = []
        for ref in refs:
            with suppress(NotFound):
                out.append(artifact(ref, client=client))
        return out

    return {"used": load(lineage.run_inputs(client.repo, run)),
            "produced": load(lineage.run_outputs(client.repo, run))}
