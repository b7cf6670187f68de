"""The exceptions artifactfs raises, each with the CLI exit code that documents it.

Every error a user can cause or meet derives from ArtifactfsError; the CLI prints its message as one
line and exits with its `exit_code`. Anything else is a bug and is reported as such.
"""


class ArtifactfsError(Exception):
    """Base of every expected failure. `str(err)` is a complete one-line message."""

    exit_code = 1


class UsageError(ArtifactfsError):
    """An argument is malformed: a name, a ref, a path, a size, a metadata pair."""

    exit_code = 2


class InvalidName(UsageError):
    """An entity, project, artifact or alias name breaks the naming rule."""


class InvalidPath(UsageError):
    """An entry path is absolute, has `..`, an empty segment, NUL, or is not UTF-8."""


class UnsupportedStore(UsageError):
    """The store lacks something artifactfs's protocol relies on (an S3 server that ignores
    conditional writes): artifactfs refuses to write there rather than race unsafely."""


class NotFound(ArtifactfsError):
    """An artifact, version, alias, entry or stage does not exist."""

    exit_code = 3


class Conflict(ArtifactfsError):
    """The request contradicts the store's state: a type mismatch, an alias that moved, a base that
    is no longer latest (`--require-base`), duplicate paths in a draft."""

    exit_code = 4


class AlreadyExists(Conflict):
    """A write that must create a path found it there (fsspec's open 'xb', pipe_file mode='create')."""


class StoreUnavailable(ArtifactfsError):
    """The store cannot be reached or did not answer within the timeout."""

    exit_code = 5


class PermissionDenied(ArtifactfsError):
    """The store refused the credentials or the action (wrong keys, read-only identity)."""

    exit_code = 6


class CorruptData(ArtifactfsError):
    """Bytes from the store or the cache do not match their recorded digest."""

    exit_code = 7


class LocalIOError(ArtifactfsError):
    """A local file could not be read or written (unreadable input, full disk)."""

    exit_code = 8


# Store-level signals. They are ArtifactfsErrors so that one that escapes still prints cleanly,
# but the repository catches and translates them where they have a meaning.
class ObjectNotFound(NotFound):
    def __init__(self, key: str):
        super().__init__(f"object not found in store: {key}")
        self.key = key


class PreconditionFailed(Conflict):
    """A conditional write lost: the key exists (put_if_absent) or changed (put_if_match)."""

    def __init__(self, key: str):
        super().__init__(f"conditional write lost the race for {key}")
        self.key = key


EXIT_CODES = {
    0: "success",
    1: "other error",
    2: "invalid argument (name, ref, path, size, metadata)",
    3: "not found (artifact, version, alias, entry, stage)",
    4: "conflict (type mismatch, alias moved, base moved with --require-base)",
    5: "store unreachable or timed out",
    6: "permission denied by the store (credentials, read-only identity)",
    7: "corrupt data (checksum mismatch)",
    8: "local I/O error (unreadable file, disk full)",
}
