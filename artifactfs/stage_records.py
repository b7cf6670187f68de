"""Stage records in the store: what keeps the base of an open stage from being collected.

A stage lives on one machine, but its unchanged files are the objects of its base version in the
store. If that version is deleted while the stage is open, a gc anywhere would collect them, and the
stage's next commit would publish a version naming objects that are gone. So each stage writes
`stages/<id>.json` (`{"artifact", "base_version", "base_manifest", "host"}`) when it is made, mounted
and rebased, and deletes it when it is discarded; gc keeps what the manifests these records name hold
(gc.mark), as it does for live versions. A record not refreshed for STALE seconds (a stage abandoned on
a machine that is gone) protects nothing any more, and neither does one gc cannot read (garbage is
logged and skipped).

Writing a record is best effort: with read-only credentials a stage still works (it can never be
committed either), and a store that refuses the write only loses this protection. The commit itself
does not rely on it: a commit whose base is no longer live checks that every object it keeps from the
base still exists (stage/commit.py).
"""

import json
import logging
import socket
import time

from .errors import ArtifactfsError, ObjectNotFound
from .hashing import is_digest
from .manifest import canonical_json
from .store import ObjectStore

log = logging.getLogger(__name__)

PREFIX = "stages/"
STALE = 30 * 86400.0


def key_of(stage_id: str) -> str:
    return f"{PREFIX}{stage_id}.json"


def write(store: ObjectStore, stage_id: str, artifact: str, base_version: int | None,
          base_manifest: str | None) -> None:
    """Record (or refresh) the stage's base in the store; logged, never raised, if the store refuses."""
    record = {"artifact": artifact, "base_version": base_version, "base_manifest": base_manifest,
              "host": socket.gethostname()}
    try:
        store.put(key_of(stage_id), canonical_json(record))
    except ArtifactfsError as exc:
        log.info("stage %s: cannot record its base in the store (%s); a gc may collect the base's "
                 "objects if that version is deleted while the stage is open", stage_id, exc)


def remove(store: ObjectStore, stage_id: str) -> None:
    try:
        store.delete(key_of(stage_id))
    except ArtifactfsError as exc:
        log.info("stage %s: cannot remove its record from the store (%s)", stage_id, exc)


def protected_manifests(store: ObjectStore, now: float | None = None) -> set[str]:
    """The manifest digests that records of open stages protect (fresh and readable ones only)."""
    now = time.time() if now is None else now
    digests = set()
    for info in store.list(PREFIX):
        if info.mtime < now - STALE:
            continue
        try:
            digest = json.loads(store.get(info.key)[0]).get("base_manifest")
        except ObjectNotFound:
            continue  # discarded meanwhile
        except (ValueError, AttributeError):
            log.warning("gc: %s is not a stage record; ignoring it", info.key)
            continue
        if digest is None:
            continue  # a stage from an empty tree
        if not isinstance(digest, str) or not is_digest(digest):
            log.warning("gc: %s names no manifest digest; ignoring it", info.key)
            continue
        digests.add(digest)
    return digests
