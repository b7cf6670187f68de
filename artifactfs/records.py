"""The JSON records a repository keeps in the store: version records and commit results, how they
are read (`load_json`), what a record from the store must hold before it is trusted, and who and
when wrote one."""

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

from .errors import CorruptData, InvalidPath, UsageError
from .hashing import is_digest
from .manifest import MAX_SIZE, Manifest, canonical_json
from .names import ArtifactName, Ref

MAX_METADATA_BYTES = 1024 * 1024


@dataclass
class VersionRecord:
    artifact: ArtifactName
    version: int
    manifest: str  # digest of the canonical manifest: the version's content digest
    size: int
    file_count: int  # regular files (links and empty directories are counted apart)
    type: str
    description: str | None = None
    metadata: dict = field(default_factory=dict)
    created_at: str = ""
    created_by: str = ""
    run: str | None = None
    inputs: list[str] = field(default_factory=list)
    link_count: int = 0  # symbolic links; stored only when there are some (records without read as before)
    dir_count: int = 0  # empty directories; likewise
    etag: str = ""

    @property
    def digest(self) -> str:
        return self.manifest

    @property
    def ref(self) -> Ref:
        return Ref(self.artifact, version=self.version)

    def to_store(self) -> bytes:
        obj = asdict(self)
        for k in ("artifact", "etag", "type"):
            obj.pop(k)
        for k in ("link_count", "dir_count"):
            if not obj[k]:
                obj.pop(k)
        return canonical_json(obj)

    def counts(self) -> str:
        """'3 files', and the links and empty directories when there are some."""
        parts = [f"{self.file_count} file{'s' if self.file_count != 1 else ''}"]
        if self.link_count:
            parts.append(f"{self.link_count} link{'s' if self.link_count != 1 else ''}")
        if self.dir_count:
            parts.append(f"{self.dir_count} empty director{'ies' if self.dir_count != 1 else 'y'}")
        return ", ".join(parts)

    def to_json(self) -> dict:
        obj = asdict(self)
        obj.pop("etag")
        obj["artifact"] = str(self.artifact)
        obj["ref"] = str(self.ref)
        return obj


# what a version record in the store may hold; other fields (a newer writer's) are ignored
STORED_FIELDS = frozenset(f.name for f in fields(VersionRecord)) - {"artifact", "etag", "type"}


@dataclass
class CommitResult:
    record: VersionRecord
    created: bool  # False: the content equals an existing version, which `record` is
    aliases: list[str]
    latest_was: int | None = None  # not created: where latest pointed before it moved to `record`


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def check_metadata(metadata: dict | None) -> dict:
    metadata = dict(metadata or {})
    try:
        encoded = canonical_json(metadata)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metadata is not JSON-serializable: {exc}") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise UsageError(f"metadata is {len(encoded)} bytes; the limit is {MAX_METADATA_BYTES}")
    return metadata


def load_json(data: bytes, key: str) -> dict:
    try:
        obj = json.loads(data)
    except ValueError:
        raise CorruptData(f"store object {key} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise CorruptData(f"store object {key} is not a JSON object")
    return obj


def record_problem(record: VersionRecord, number: int) -> str | None:
    """What makes a version record read from the store unfit to trust, if anything."""
    def count(value) -> bool:
        return type(value) is int and 0 <= value <= MAX_SIZE

    if record.version != number:
        return f"says it is version {record.version!r}"
    if not isinstance(record.manifest, str) or not is_digest(record.manifest):
        return f"names no valid manifest digest ({record.manifest!r:.80})"
    if not all(count(n) for n in (record.size, record.file_count, record.link_count, record.dir_count)):
        return "has a size or a file, link or directory count that is not a count"
    if not isinstance(record.metadata, dict) or not isinstance(record.inputs, list):
        return "has metadata or inputs of the wrong type"
    if not all(isinstance(v, (str, type(None))) for v in (record.description, record.created_at,
                                                          record.created_by, record.run)):
        return "has a text field that is not text"
    return None


def parse_stored_manifest(data: bytes, digest: str) -> Manifest:
    """Parse a manifest read from the store. A path it must not hold (traversal, duplicates) means the
    store holds a manifest no commit writes: corrupt data (exit 7), not a usage error."""
    try:
        return Manifest.parse(data)
    except InvalidPath as exc:
        raise CorruptData(f"manifest {digest} in the store is invalid: {exc}") from None
