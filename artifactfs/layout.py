"""Store keys: the one place that knows where each kind of object lives (docs/FORMAT.md)."""

from .names import ArtifactName


def blob_key(digest: str) -> str:
    return f"blobs/{digest[:2]}/{digest}"


def pack_key(digest: str) -> str:
    return f"packs/{digest[:2]}/{digest}"


def blocks_key(digest: str) -> str:
    """A blob's block list (blocks.py), named by its own digest."""
    return f"blocks/{digest[:2]}/{digest}"


def pack_of_key(key: str) -> str | None:
    """The pack digest named by a pack key, None for any other key."""
    return key.rsplit("/", 1)[1] if key.startswith("packs/") else None


def content_key(entry) -> str:
    """The object holding a stored entry's bytes: its pack, or its own blob."""
    return pack_key(entry.pack) if entry.pack else blob_key(entry.digest)


MANIFEST_SUFFIX = ".jsonl.gz"


def manifest_key(digest: str) -> str:
    return f"manifests/{digest[:2]}/{digest}{MANIFEST_SUFFIX}"


def manifest_columns_key(digest: str) -> str:
    """The columnar form of a manifest (manifest/columnar.py): derived from it, loads without parsing."""
    return f"manifests/{digest[:2]}/{digest}.columns"


def manifest_keys(digest: str) -> set[str]:
    """Every object a manifest is stored as."""
    return {manifest_key(digest), manifest_columns_key(digest)}


def artifact_key(name: ArtifactName) -> str:
    return name.prefix + "artifact.json"


def version_key(name: ArtifactName, version: int) -> str:
    return f"{name.prefix}versions/{version}.json"


def versions_prefix(name: ArtifactName) -> str:
    return name.prefix + "versions/"


def alias_key(name: ArtifactName, alias: str) -> str:
    return f"{name.prefix}aliases/{alias}.json"


def alias_history_prefix(name: ArtifactName, alias: str) -> str:
    return f"{name.prefix}alias-history/{alias}/"


def alias_history_key(name: ArtifactName, alias: str, seq: int) -> str:
    """An earlier position of an alias (alias_history.py); zero-padded so listings come in order."""
    return f"{alias_history_prefix(name, alias)}{seq:012d}.json"


def deletions_prefix(name: ArtifactName) -> str:
    return f"{name.prefix}deletions/"


def deletion_key(name: ArtifactName, at: str, version: int) -> str:
    """A deletion of version `version`, said before its tombstone (events.py reads these in order): `at`
    is the time as 20261206T112619.123456Z, so keys list in time order."""
    return f"{deletions_prefix(name)}{at}-{version}.json"


def watch_cursor_key(cursor: str) -> str:
    return f"watch/{cursor}/cursor.json"


def watch_lease_key(cursor: str) -> str:
    return f"watch/{cursor}/lease.json"


def aliases_prefix(name: ArtifactName) -> str:
    return name.prefix + "aliases/"


def digest_index_key(name: ArtifactName, digest: str) -> str:
    return f"{name.prefix}digests/{digest}.json"


def probe_key(token: str) -> str:
    """A short-lived object a store check writes and deletes (store/s3.py: conditional writes)."""
    return f"probes/{token}"
